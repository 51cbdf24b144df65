package tritontest

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/embedgate/embedgate/tritonstubs"
)

// outputDType is the datatype the server answers outputs in, as a
// TensorRT engine built with FP16 or BF16 outputs would.
type outputDType struct {
	wire string // the KServe v2 name: FP32, FP16 or BF16
	cfg  tritonstubs.DataType
	size int // bytes per value
}

// parseOutputDType reads WithOutputDType's argument.
func parseOutputDType(name string) (outputDType, error) {
	switch name {
	case "", "FP32":
		return outputDType{"FP32", tritonstubs.DataType_TYPE_FP32, 4}, nil
	case "FP16":
		return outputDType{"FP16", tritonstubs.DataType_TYPE_FP16, 2}, nil
	case "BF16":
		return outputDType{"BF16", tritonstubs.DataType_TYPE_BF16, 2}, nil
	}
	return outputDType{}, fmt.Errorf("tritontest: output datatype %q: want FP32, FP16 or BF16", name)
}

// encode returns data as little-endian values of d, rounded to nearest,
// ties to even, as a half-precision engine's output is.
func (d outputDType) encode(data []float32) []byte {
	b := make([]byte, d.size*len(data))
	for i, f := range data {
		switch d.wire {
		case "FP16":
			binary.LittleEndian.PutUint16(b[2*i:], float32ToHalf(f))
		case "BF16":
			binary.LittleEndian.PutUint16(b[2*i:], float32ToBF16(f))
		default:
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
		}
	}
	return b
}

// roundShift is m >> shift rounded to nearest, ties to even (0 < shift < 32).
func roundShift(m uint32, shift uint) uint32 {
	q := m >> shift
	rem := m & (1<<shift - 1)
	half := uint32(1) << (shift - 1)
	if rem > half || rem == half && q&1 == 1 {
		q++
	}
	return q
}

// float32ToHalf rounds f to IEEE 754 binary16: overflow to infinity,
// underflow through subnormals to zero, NaN to a quiet NaN of the same sign.
func float32ToHalf(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	frac := b & 0x7fffff
	if exp == 0xff {
		if frac == 0 {
			return sign | 0x7c00
		}
		return sign | 0x7e00 | uint16(frac>>13)
	}
	e := exp - 127 + 15 // the half's biased exponent
	switch {
	case e >= 0x1f:
		return sign | 0x7c00
	case e < -10: // below half the smallest subnormal, 2^-25 (FP32 subnormals too)
		return sign
	case e <= 0: // a subnormal half, units of 2^-24; rounding up may make it normal
		return sign | uint16(roundShift(frac|0x800000, uint(14-e)))
	}
	// A carry out of the significand moves into the exponent, from e = 30
	// to infinity (0x7c00).
	return sign | uint16(uint32(e)<<10+roundShift(frac|0x800000, 13)-0x400)
}

// float32ToBF16 rounds f to bfloat16, the upper half of its bits: overflow
// to infinity, NaN to a quiet NaN of the same sign.
func float32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40
	}
	return uint16(roundShift(b, 16))
}
