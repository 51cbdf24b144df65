package triton

import (
	"encoding/binary"
	"fmt"
	"math"
	"testing"
	"unsafe"

	"google.golang.org/protobuf/proto"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/tritonstubs"
)

// refHalf is the value of a binary16 or bfloat16 pattern from its fields,
// computed in float64 as the format defines it, independently of the
// bit-shifting conversion: expBits and fracBits are the field widths.
func refHalf(h uint16, expBits, fracBits uint) (v float64, nan bool) {
	bias := 1<<(expBits-1) - 1
	sign := 1.0
	if h>>15 != 0 {
		sign = -1
	}
	exp := int(h>>fracBits) & (1<<expBits - 1)
	frac := float64(h & (1<<fracBits - 1))
	switch {
	case exp == 1<<expBits-1 && frac == 0:
		return math.Inf(int(sign)), false
	case exp == 1<<expBits-1:
		return 0, true
	case exp == 0: // zero or subnormal: frac × 2^(1-bias-fracBits)
		return sign * math.Ldexp(frac, 1-bias-int(fracBits)), false
	}
	return sign * math.Ldexp(frac+float64(uint(1)<<fracBits), exp-bias-int(fracBits)), false
}

// TestWidenExact converts every FP16 and BF16 pattern: normals,
// subnormals, both zeros and infinities equal the value the format
// defines, and NaNs stay NaNs of the same sign and payload.
func TestWidenExact(t *testing.T) {
	for _, tt := range []struct {
		wire               wireFloat
		expBits, fracBits  uint
		subnormal, largest float64 // spot checks of the reference itself
	}{
		{wireFP16, 5, 10, math.Ldexp(1, -24), 65504},
		{wireBF16, 8, 7, math.Ldexp(1, -133), math.Ldexp(255, 120)},
	} {
		t.Run(tt.wire.String(), func(t *testing.T) {
			if v, _ := refHalf(0x0001, tt.expBits, tt.fracBits); v != tt.subnormal {
				t.Fatalf("reference: smallest subnormal = %g, want %g", v, tt.subnormal)
			}
			if v, _ := refHalf(0x7fff>>tt.fracBits<<tt.fracBits-1, tt.expBits, tt.fracBits); v != tt.largest {
				t.Fatalf("reference: largest finite = %g, want %g", v, tt.largest)
			}
			src := make([]byte, 2<<16)
			for h := range 1 << 16 {
				binary.LittleEndian.PutUint16(src[2*h:], uint16(h))
			}
			dst := make([]float32, 1<<16)
			tt.wire.widen(dst, src)
			for h, got := range dst {
				want, nan := refHalf(uint16(h), tt.expBits, tt.fracBits)
				bits := math.Float32bits(got)
				switch {
				case nan:
					payload := bits & (1<<23 - 1) >> (23 - tt.fracBits)
					if !math.IsNaN(float64(got)) || bits>>31 != uint32(h>>15) || payload != uint32(h)&(1<<tt.fracBits-1) {
						t.Fatalf("%s %#04x = %#08x, want a NaN of sign %d and payload %#x", tt.wire, h, bits, h>>15, h&(1<<tt.fracBits-1))
					}
				case float64(got) != want || math.Signbit(float64(got)) != math.Signbit(want):
					t.Fatalf("%s %#04x = %g (%#08x), want %g", tt.wire, h, got, bits, want)
				}
			}
		})
	}
}

// TestWidenInPlace widens values read into the end of the buffer they are
// widened into, as the codec does, for every length up to a few values.
func TestWidenInPlace(t *testing.T) {
	for _, w := range []wireFloat{wireFP32, wireFP16, wireBF16} {
		for n := range 9 {
			src := make([]byte, n*w.size())
			for i := range src {
				src[i] = byte(0x3c + 7*i) // normal numbers, no NaN
			}
			want := make([]float32, n)
			w.widen(want, src)
			f := make([]float32, n)
			all := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(f))), 4*n)
			copy(all[4*n-len(src):], src)
			w.widen(f, all[4*n-len(src):])
			if fmt.Sprint(f) != fmt.Sprint(want) {
				t.Errorf("%s in place, %d values = %v, want %v", w, n, f, want)
			}
		}
	}
}

func TestParseWireFloat(t *testing.T) {
	for _, dt := range []string{"FP32", "FP16", "BF16"} {
		w, err := parseWireFloat(dt)
		if err != nil || w.String() != dt {
			t.Errorf("parseWireFloat(%s) = %v, %v", dt, w, err)
		}
	}
	for _, dt := range []string{"FP64", "INT8", "fp16", ""} {
		if _, err := parseWireFloat(dt); err == nil {
			t.Errorf("parseWireFloat(%q) = nil error, want one", dt)
		}
	}
}

// halves are FP16 patterns of every class, and the values they are.
var halves = []struct {
	h uint16
	v float32
}{
	{0x3c00, 1}, {0xc000, -2}, {0x3800, 0.5}, {0x7bff, 65504}, {0x0001, 0x1p-24}, {0x83ff, -0x3ffp-24},
	{0x8000, float32(math.Copysign(0, -1))}, {0x7c00, float32(math.Inf(1))}, {0xfc00, float32(math.Inf(-1))},
}

// TestCodecHalves decodes FP16 and BF16 raw_output_contents cut at every
// byte, on both paths, and refuses an odd number of bytes.
func TestCodecHalves(t *testing.T) {
	fp16 := make([]byte, 2*len(halves))
	bf16 := make([]byte, 2*len(halves))
	var want []float32
	for i, x := range halves {
		binary.LittleEndian.PutUint16(fp16[2*i:], x.h)
		// The BF16 pattern of each value, truncated: bf16Want holds what
		// these patterns are.
		binary.LittleEndian.PutUint16(bf16[2*i:], uint16(math.Float32bits(x.v)>>16))
		want = append(want, x.v)
	}
	bf16Want := make([]float32, len(want))
	for i, v := range want {
		bf16Want[i] = math.Float32frombits(math.Float32bits(v) &^ 0xffff)
	}
	pool := newFloatPool(4, 1<<20)
	for _, tt := range []struct {
		wire wireFloat
		raw  []byte
		want []float32
	}{
		{wireFP16, fp16, want},
		{wireBF16, bf16, bf16Want},
	} {
		wire, err := proto.Marshal(&tritonstubs.ModelInferResponse{Id: "x", RawOutputContents: [][]byte{tt.raw}})
		if err != nil {
			t.Fatal(err)
		}
		for i := range len(wire) + 1 {
			for _, native := range []bool{true, false} {
				r := &inferResponse{pool: pool, wire: tt.wire}
				if err := r.unmarshal(cut(wire, i), native); err != nil {
					t.Fatalf("%s cut at %d: %v", tt.wire, i, err)
				}
				if len(r.raw) != 1 || fmt.Sprint(r.raw[0]) != fmt.Sprint(tt.want) {
					t.Fatalf("%s cut at %d, native %v = %v, want %v", tt.wire, i, native, r.raw, tt.want)
				}
				r.release()
			}
		}
		odd, _ := proto.Marshal(&tritonstubs.ModelInferResponse{RawOutputContents: [][]byte{tt.raw[:3]}})
		r := &inferResponse{pool: pool, wire: tt.wire}
		if err := r.unmarshal(cut(odd), true); err == nil {
			t.Errorf("%s: 3 bytes decoded, want errNotWhole", tt.wire)
		}
	}
}

// TestDecodeHalves: an FP16 model's output arrives as FP32 values, and a
// response whose datatype differs from the metadata's is refused.
func TestDecodeHalves(t *testing.T) {
	p := plan{spec: gateway.ModelSpec{Output: gateway.Pooled, Hidden: 2}, output: gateway.TensorSentenceEmbedding, wire: wireFP16}
	b := &gateway.Batch{ID: "b", Rows: 2, Len: 3}
	raw := []byte{0x00, 0x3c, 0x00, 0xc0, 0x01, 0x00, 0x00, 0x7c} // 1 -2 2^-24 +Inf
	for _, tt := range []struct {
		dtype string
		raw   []byte
		want  string
	}{
		{"FP16", raw, fmt.Sprint([]float32{1, -2, 0x1p-24, float32(math.Inf(1))})},
		{"FP32", raw, "error"},     // read as FP16: the response contradicts itself
		{"BF16", raw, "error"},     // not what the metadata said
		{"FP16", raw[:6], "error"}, // 3 values for [2,2]
	} {
		pool := newFloatPool(4, 1<<20)
		m := &tritonstubs.ModelInferResponse{Outputs: []*tritonstubs.ModelInferResponse_InferOutputTensor{
			{Name: gateway.TensorSentenceEmbedding, Datatype: tt.dtype, Shape: []int64{2, 2}}}, RawOutputContents: [][]byte{tt.raw}}
		wire, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		r := &inferResponse{pool: pool, wire: p.wire}
		if err := r.unmarshal(cut(wire), true); err != nil {
			t.Fatal(err)
		}
		out, err := p.decode(b, r)
		r.release()
		got := "error"
		if err == nil {
			got = fmt.Sprint(out.Data)
			out.Free()
		}
		if got != tt.want {
			t.Errorf("decode(%s, %d bytes) = %s (%v), want %s", tt.dtype, len(tt.raw), got, err, tt.want)
		}
	}
}
