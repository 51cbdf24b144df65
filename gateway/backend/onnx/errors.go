package onnx

import "errors"

// ErrLoadRuntime is in Open's errors when the ONNX Runtime library could
// not be loaded (not found, or not a usable runtime), as opposed to a
// failure of the model: a caller may try another library.
var ErrLoadRuntime = errors.New("onnx: load runtime")
