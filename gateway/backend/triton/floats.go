package triton

import (
	"encoding/binary"
	"fmt"
	"math"
)

// wireFloat is the element type of the output Triton sends: FP32, or the
// FP16 and BF16 of TensorRT engines and half-precision exports. Whatever
// it is, the gateway decodes it into FP32 buffers: both halves convert to
// FP32 exactly, so nothing is lost beyond what the model's own precision
// lost. The zero value is FP32.
type wireFloat int

const (
	wireFP32 wireFloat = iota
	wireFP16
	wireBF16
)

// parseWireFloat reads a datatype of Triton's model metadata and
// responses (the KServe v2 names).
func parseWireFloat(datatype string) (wireFloat, error) {
	switch datatype {
	case "FP32":
		return wireFP32, nil
	case "FP16":
		return wireFP16, nil
	case "BF16":
		return wireBF16, nil
	}
	return 0, fmt.Errorf("datatype %s is not FP32, FP16 or BF16", datatype)
}

func (w wireFloat) String() string {
	switch w {
	case wireFP16:
		return "FP16"
	case wireBF16:
		return "BF16"
	}
	return "FP32"
}

// size is the bytes of one value on the wire.
func (w wireFloat) size() int {
	if w == wireFP32 {
		return 4
	}
	return 2
}

// widen converts src, len(dst) little-endian values of type w, into dst.
// src may end where dst's own memory ends (the codec reads the wire bytes
// there and widens in place): for FP32 value i is read from and written to
// the same bytes; for the halves (n = len(dst)) it is read from bytes
// 2n+2i and 2n+2i+1, after every earlier one, and written to bytes 4i to
// 4i+3, below the 2n+2i+2 where the next one starts, so no value is
// overwritten before it is read.
func (w wireFloat) widen(dst []float32, src []byte) {
	switch w {
	case wireFP16:
		for i := range dst {
			dst[i] = halfToFloat32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	case wireBF16:
		for i := range dst {
			dst[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(src[2*i:])) << 16)
		}
	default:
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
	}
}

// halfToFloat32 converts an IEEE 754 binary16 value exactly: normals and
// subnormals to the same number, infinities to infinities, and a NaN to a
// NaN of the same sign and payload.
func halfToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	frac := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // infinity or NaN
		return math.Float32frombits(sign | 0xff<<23 | frac<<13)
	case exp != 0: // normal: rebias 15 -> 127
		return math.Float32frombits(sign | (exp+127-15)<<23 | frac<<13)
	case frac == 0: // signed zero
		return math.Float32frombits(sign)
	}
	// Subnormal: frac × 2^-24, a normal number in FP32. Shift frac's
	// leading one into the implicit bit, lowering the exponent as we go.
	e := uint32(127 - 15 + 1)
	for frac&0x400 == 0 {
		frac <<= 1
		e--
	}
	return math.Float32frombits(sign | e<<23 | (frac&0x3ff)<<13)
}
