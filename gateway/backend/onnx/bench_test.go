//go:build cgo

package onnx_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/backend/onnx"
	"github.com/embedgate/embedgate/gateway/internal/testenv"
)

// BenchmarkRaw measures raw ONNX Runtime throughput on the MiniLM-size model
// (last_hidden_state, all intra-op threads): the ceiling the gateway's
// end-to-end throughput is judged against. Rows in a batch have equal length,
// as the batcher's length-sorted batches nearly do; tokens/s counts B×L.
func BenchmarkRaw(b *testing.B) {
	lib := testenv.ORTLib(b)
	dir := testenv.MiniLMModel(b)
	be, err := onnx.Open(onnx.Options{LibraryPath: lib, ModelPath: filepath.Join(dir, "onnx", "model.onnx")})
	if err != nil {
		b.Fatal(err)
	}
	defer be.Close()
	for _, shape := range []struct{ rows, size int }{{1, 16}, {8, 64}, {32, 64}, {8, 128}, {32, 128}} {
		b.Run(fmt.Sprintf("%dx%d", shape.rows, shape.size), func(b *testing.B) {
			n := shape.rows * shape.size
			batch := &gateway.Batch{Rows: shape.rows, Len: shape.size, InputIDs: make([]int64, n),
				AttentionMask: make([]int64, n), TokenTypeIDs: make([]int64, n)}
			for i := range n {
				batch.InputIDs[i] = int64(1000 + (i*7919)%29000)
				batch.AttentionMask[i] = 1
			}
			ctx := context.Background()
			if _, err := be.Embed(ctx, batch); err != nil { // warm-up: first run allocates
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := be.Embed(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}
