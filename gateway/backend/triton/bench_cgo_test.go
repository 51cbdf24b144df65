//go:build cgo

package triton_test

import (
	"context"
	"fmt"
	"testing"

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
				if _, err := target.b.Embed(ctx, in); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				for b.Loop() {
					if _, err := target.b.Embed(ctx, in); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(shape.rows*shape.size)*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
			})
		}
	}
}
