package onnxproto

// AxesInput reports whether op, in a graph importing the given
// default-domain opset, takes its axes as a second input (a 1-D INT64
// tensor) rather than as the ints attribute "axes". Both writers of graphs
// (testmodel and onnxpool) ask here, so the rule has one place.
//
// ONNX moved the axes of these ops from an attribute to an input in two
// steps (onnx/docs/Changelog.md): ReduceSum-13, Squeeze-13 and
// Unsqueeze-13; the other reductions at 18 (ReduceMean-18, ReduceMax-18,
// ...). Their later versions (Squeeze and Unsqueeze 21 to 25) only add
// element types. Any other op has no axes input.
func AxesInput(op string, opset int64) bool {
	switch op {
	case "ReduceSum", "Squeeze", "Unsqueeze":
		return opset >= 13
	case "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax",
		"ReduceMean", "ReduceMin", "ReduceProd", "ReduceSumSquare":
		return opset >= 18
	}
	return false
}
