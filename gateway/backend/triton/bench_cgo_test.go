//go:build cgo

package triton_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/backend/backendtest"
	"github.com/embedgate/embedgate/gateway/backend/triton/tritontest"
)

// BenchmarkEmbedInProcess runs batches of the tiny model through the
// in-process Triton stand-in (loopback gRPC), next to the same model called
// directly, so the difference is the Triton path's overhead.
func BenchmarkEmbedInProcess(b *testing.B) {
	direct := openONNX(b)
	srv := tritontest.Start(b, direct)
	opts := options(b, srv)
	opts.Logger = nil
	be := openTriton(b, opts)
	for _, shape := range []struct{ rows, size int }{{1, 16}, {8, 64}, {32, 128}} {
		lens := make([]int, shape.rows)
		for i := range lens {
			lens[i] = shape.size
		}
		in := batch(lens...)
		for _, target := range []struct {
			name string
			b    backendtest.Backend
		}{{"onnx", direct}, {"triton", be}} {
			b.Run(fmt.Sprintf("%s/%dx%d", target.name, shape.rows, shape.size), func(b *testing.B) {
				ctx := context.Background()
				out, err := target.b.Embed(ctx, in)
				if err != nil {
					b.Fatal(err)
				}
				out.Free()
				b.ReportAllocs()
				for b.Loop() {
					out, err := target.b.Embed(ctx, in)
					if err != nil {
						b.Fatal(err)
					}
					out.Free() // as the engine does once it has pooled the rows
				}
				b.ReportMetric(float64(shape.rows*shape.size)*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
			})
		}
	}
}

// cannedModel answers every batch with the same [B,L,H] output, so that a
// benchmark through the stand-in measures the gRPC path and not a model.
type cannedModel struct {
	spec gateway.ModelSpec
	data []float32
}

func (m *cannedModel) Spec() gateway.ModelSpec          { return m.spec }
func (m *cannedModel) Health(ctx context.Context) error { return nil }
func (m *cannedModel) Embed(ctx context.Context, b *gateway.Batch) (*gateway.Output, error) {
	return &gateway.Output{Kind: gateway.Hidden, Rows: b.Rows, Len: b.Len, Hidden: m.spec.Hidden,
		Data: m.data[:b.Rows*b.Len*m.spec.Hidden]}, nil
}

// BenchmarkEmbedLoopback sends a 32×128 batch through the stand-in, whose
// model answers a canned last_hidden_state of 32×128×384 FP32 (6 MiB), and
// frees each output as the engine does. B/op counts both ends of the call
// (the stand-in's response copy and marshalling are about 12 MiB of it).
func BenchmarkEmbedLoopback(b *testing.B) {
	const rows, size, hidden = 32, 128, 384
	m := &cannedModel{spec: gateway.ModelSpec{HasTokenTypeIDs: true, Output: gateway.Hidden, Hidden: hidden, MaxBatch: 64},
		data: make([]float32, rows*size*hidden)}
	for i := range m.data {
		m.data[i] = float32(i%997) / 997
	}
	srv := tritontest.Start(b, m)
	opts := options(b, srv)
	opts.Logger = nil
	be := openTriton(b, opts)
	lens := make([]int, rows)
	for i := range lens {
		lens[i] = size
	}
	in := batch(lens...)
	ctx := context.Background()
	b.SetBytes(int64(4 * len(m.data)))
	b.ReportAllocs()
	for b.Loop() {
		out, err := be.Embed(ctx, in)
		if err != nil {
			b.Fatal(err)
		}
		out.Free()
	}
	b.ReportMetric(float64(rows*size)*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}
