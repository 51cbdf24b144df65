//go:build !cgo

package onnx

import (
	"context"
	"errors"
	"log/slog"

	"github.com/embedgate/embedgate/gateway"
)

// Options configure Open; see the cgo build for their meaning.
type Options struct {
	LibraryPath     string
	ModelPath       string
	IntraOpThreads  int
	MaxRunAttention int
	Logger          *slog.Logger
}

// DefaultMaxRunAttention is Options.MaxRunAttention's default.
const DefaultMaxRunAttention = 4 * 512 * 512

// Backend is unusable without cgo; Open never returns one.
type Backend struct{}

var errNoCgo = errors.New("onnx: backend unavailable: embedgate was built without cgo (CGO_ENABLED=0); rebuild with cgo or use the triton backend")

// Open always fails: ONNX Runtime is reached through cgo.
func Open(opts Options) (*Backend, error) { return nil, errNoCgo }

// Spec returns the zero ModelSpec.
func (b *Backend) Spec() gateway.ModelSpec { return gateway.ModelSpec{} }

// Embed always fails.
func (b *Backend) Embed(ctx context.Context, batch *gateway.Batch) (*gateway.Output, error) {
	return nil, &gateway.Error{Kind: gateway.Unhealthy, Msg: "onnx backend unavailable", Err: errNoCgo}
}

// Health always fails.
func (b *Backend) Health(ctx context.Context) error {
	return &gateway.Error{Kind: gateway.Unhealthy, Msg: "onnx backend unavailable", Err: errNoCgo}
}

// Close does nothing.
func (b *Backend) Close() error { return nil }
