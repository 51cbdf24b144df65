//go:build !cgo

package onnx_test

import (
	"testing"

	"github.com/embedgate/embedgate/gateway/backend/onnx"
)

func TestOpenWithoutCgo(t *testing.T) {
	if b, err := onnx.Open(onnx.Options{LibraryPath: "lib", ModelPath: "model.onnx"}); err == nil || b != nil {
		t.Errorf("Open() = %v, %v; want nil and an error naming cgo", b, err)
	}
}
