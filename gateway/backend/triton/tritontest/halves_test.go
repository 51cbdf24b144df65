package tritontest

import (
	"math"
	"testing"
)

// halfValue is the value of a finite binary16 pattern, from its fields.
func halfValue(h uint16) float32 {
	exp, frac := int(h>>10)&0x1f, float64(h&0x3ff)
	v := math.Ldexp(frac, -24) // subnormal
	if exp != 0 {
		v = math.Ldexp(frac+1024, exp-25)
	}
	if h&0x8000 != 0 {
		v = -v
	}
	return float32(v)
}

// TestFloat32ToHalf: every finite half maps to itself; the midpoint
// between two neighbours goes to the even one and the nearest FP32 values
// on either side to the nearer one; overflow is infinity, NaN stays NaN.
func TestFloat32ToHalf(t *testing.T) {
	for h := range 1 << 16 {
		if h&0x7c00 == 0x7c00 {
			continue // infinities and NaNs, below
		}
		v := halfValue(uint16(h))
		if got := float32ToHalf(v); got != uint16(h) {
			t.Fatalf("float32ToHalf(%g) = %#04x, want %#04x", v, got, h)
		}
		next := uint16(h + 1)
		if next&0x7fff == 0x7c00 {
			continue // the largest finite: its neighbour is infinity, below
		}
		mid := (v + halfValue(next)) / 2 // exact: 12 significant bits
		even := uint16(h)
		if even&1 == 1 {
			even = next
		}
		if got := float32ToHalf(mid); got != even {
			t.Fatalf("float32ToHalf(%g, between %#04x and %#04x) = %#04x, want the even %#04x", mid, h, next, got, even)
		}
		toward := float32(math.Inf(1))
		if h&0x8000 != 0 {
			toward = float32(math.Inf(-1)) // away from zero, like next
		}
		if got := float32ToHalf(math.Nextafter32(mid, toward)); got != next {
			t.Fatalf("float32ToHalf(just past %g) = %#04x, want %#04x", mid, got, next)
		}
		if got := float32ToHalf(math.Nextafter32(mid, -toward)); got != uint16(h) {
			t.Fatalf("float32ToHalf(just before %g) = %#04x, want %#04x", mid, got, h)
		}
	}
	for _, tt := range []struct {
		f    float32
		want uint16
	}{
		{65519.996, 0x7bff}, // below the midpoint to 65536
		{65520, 0x7c00},     // the midpoint: ties to even, which is infinity
		{1e10, 0x7c00}, {-1e10, 0xfc00},
		{float32(math.Inf(1)), 0x7c00}, {float32(math.Inf(-1)), 0xfc00},
		{0x1p-25, 0}, {-0x1p-25, 0x8000}, // ties to even zero
		{math.Nextafter32(0x1p-25, 1), 1},
		{1e-40, 0}, {float32(math.Copysign(0, -1)), 0x8000},
	} {
		if got := float32ToHalf(tt.f); got != tt.want {
			t.Errorf("float32ToHalf(%g) = %#04x, want %#04x", tt.f, got, tt.want)
		}
	}
	for _, bits := range []uint32{0x7fc00000, 0xffc00001, 0x7f800001} {
		got := float32ToHalf(math.Float32frombits(bits))
		if got&0x7c00 != 0x7c00 || got&0x3ff == 0 || got>>15 != uint16(bits>>31) {
			t.Errorf("float32ToHalf(NaN %#08x) = %#04x, want a NaN of the same sign", bits, got)
		}
	}
}

// TestFloat32ToBF16: every bfloat16 maps to itself; a midpoint goes to the
// even neighbour, anything past it to the nearer one; NaN stays NaN.
func TestFloat32ToBF16(t *testing.T) {
	for h := range 1 << 16 {
		bits := uint32(h) << 16
		if h&0x7f80 == 0x7f80 {
			continue
		}
		if got := float32ToBF16(math.Float32frombits(bits)); got != uint16(h) {
			t.Fatalf("float32ToBF16(%#08x) = %#04x, want %#04x", bits, got, h)
		}
		next := uint16(h + 1) // away from zero; 0x7f80 is infinity, as rounding gives
		even := uint16(h)
		if even&1 == 1 {
			even = next
		}
		for _, tt := range []struct {
			bits uint32
			want uint16
		}{
			{bits | 0x8000, even},
			{bits | 0x8001, next},
			{bits | 0x7fff, uint16(h)},
		} {
			if got := float32ToBF16(math.Float32frombits(tt.bits)); got != tt.want {
				t.Fatalf("float32ToBF16(%#08x) = %#04x, want %#04x", tt.bits, got, tt.want)
			}
		}
	}
	for _, bits := range []uint32{0x7fc00000, 0xff800001, 0x7f800001} {
		got := float32ToBF16(math.Float32frombits(bits))
		if got&0x7f80 != 0x7f80 || got&0x7f == 0 || got>>15 != uint16(bits>>31) {
			t.Errorf("float32ToBF16(NaN %#08x) = %#04x, want a NaN of the same sign", bits, got)
		}
	}
	if got := float32ToBF16(float32(math.Inf(-1))); got != 0xff80 {
		t.Errorf("float32ToBF16(-Inf) = %#04x, want 0xff80", got)
	}
}
