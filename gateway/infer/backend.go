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

// elasticBackend is a Backend whose capacity changes as it runs, such as
// Triton replicas joining, leaving and failing: MaxInflight is how many
// batches it takes at once now, in place of Options.MaxInflight. A Backend
// that is also a prometheus.Collector has its series registered with the
// engine's, labelled alike, and given back at Close.
type elasticBackend interface {
	MaxInflight() int
}
