package pooling

import (
	"math"
	"testing"
)

func TestPool(t *testing.T) {
	// 3 positions x 2 dims; mask variants cover both padding sides.
	hidden := []float32{1, 2, 3, 4, 5, 6}
	tests := []struct {
		name string
		mask []int64
		m    Method
		want []float32
	}{
		{"cls", []int64{1, 1, 1}, CLS, []float32{1, 2}},
		{"cls left padded", []int64{0, 1, 1}, CLS, []float32{3, 4}},
		{"mean all", []int64{1, 1, 1}, Mean, []float32{3, 4}},
		{"mean right padded", []int64{1, 1, 0}, Mean, []float32{2, 3}},
		{"last right padded", []int64{1, 1, 0}, LastToken, []float32{3, 4}},
		{"last full", []int64{1, 1, 1}, LastToken, []float32{5, 6}},
		{"all masked", []int64{0, 0, 0}, Mean, []float32{0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := []float32{9, 9}
			Pool(got, hidden, tt.mask, 3, 2, tt.m)
			if got[0] != tt.want[0] || got[1] != tt.want[1] {
				t.Errorf("Pool(%v, %v) = %v, want %v", tt.mask, tt.m, got, tt.want)
			}
		})
	}
}

func TestShape(t *testing.T) {
	v := []float32{3, 4, 12}
	got := Shape(v, 2, true)
	if len(got) != 2 || math.Abs(float64(got[0])-0.6) > 1e-7 || math.Abs(float64(got[1])-0.8) > 1e-7 {
		t.Errorf("Shape(%v, 2, true) = %v, want [0.6 0.8]", v, got)
	}
	if v[0] != 3 {
		t.Errorf("Shape modified its input: %v", v)
	}
	if got := Shape(v, 0, false); len(got) != 3 || got[2] != 12 {
		t.Errorf("Shape(%v, 0, false) = %v, want a copy", v, got)
	}
	zero := Shape([]float32{0, 0}, 0, true)
	if zero[0] != 0 || zero[1] != 0 {
		t.Errorf("Shape(zero) = %v, want zeros", zero)
	}
}

func TestParseMethod(t *testing.T) {
	for in, want := range map[string]Method{"cls": CLS, "MEAN": Mean, "last-token": LastToken, "last_token": LastToken, "lasttoken": LastToken} {
		got, err := ParseMethod(in)
		if err != nil || got != want {
			t.Errorf("ParseMethod(%q) = %v, %v, want %v", in, got, err, want)
		}
	}
	if _, err := ParseMethod("max"); err == nil {
		t.Error("ParseMethod(max) succeeded, want an error")
	}
}
