// Package infer runs the embedding pipeline: tokenize → admit → batch →
// Backend → pool. It owns the batch loop and defines the Backend interface
// that the onnx and triton packages satisfy.
package infer

import (
	"context"

	"github.com/embedgate/embedgate/gateway"
)

// Backend runs one padded batch through a model.
type Backend interface {
	// Spec describes the model: inputs, dtype, output kind, hidden size, max batch.
	Spec() gateway.ModelSpec
	// Embed runs one padded [B,L] batch.
	Embed(ctx context.Context, b *gateway.Batch) (*gateway.Output, error)
	// Health reports whether the backend can serve now.
	Health(ctx context.Context) error
}
