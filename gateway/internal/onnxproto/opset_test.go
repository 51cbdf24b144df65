package onnxproto

import "testing"

func TestAxesInput(t *testing.T) {
	for _, tt := range []struct {
		op    string
		opset int64
		want  bool
	}{
		{"ReduceSum", 11, false}, {"ReduceSum", 12, false}, {"ReduceSum", 13, true}, {"ReduceSum", 17, true},
		{"Unsqueeze", 11, false}, {"Unsqueeze", 13, true}, {"Squeeze", 12, false}, {"Squeeze", 13, true},
		{"ReduceMean", 13, false}, {"ReduceMean", 17, false}, {"ReduceMean", 18, true},
		{"ReduceMax", 17, false}, {"ReduceMax", 18, true},
		{"Add", 17, false}, {"CumSum", 17, false},
	} {
		if got := AxesInput(tt.op, tt.opset); got != tt.want {
			t.Errorf("AxesInput(%s, %d) = %v, want %v", tt.op, tt.opset, got, tt.want)
		}
	}
}
