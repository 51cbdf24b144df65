//go:build cgo

package onnx_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

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

// BenchmarkRandomShapes runs a seeded sequence of the batch shapes the
// batcher builds from a search/RAG mix (queries, passages, whole
// documents; full and partial batches under the 16384-token budget) and
// reports the process's peak (VmHWM) and final resident memory besides
// tokens per second and per CPU-second: ONNX Runtime's memory follows the
// largest runs it has seen, which a fixed-shape benchmark never shows.
// "default" runs batches as Open's defaults do, "whole" each batch in one
// run (the runtime's memory before runs were bounded). Run one at a time
// with a fixed count, e.g. -bench RandomShapes/default -benchtime 30x.
func BenchmarkRandomShapes(b *testing.B) {
	b.Run("default", func(b *testing.B) { benchmarkRandomShapes(b, 0) })
	b.Run("whole", func(b *testing.B) { benchmarkRandomShapes(b, 32*512*512) })
}

func benchmarkRandomShapes(b *testing.B, maxAttn int) {
	lib := testenv.ORTLib(b)
	dir := testenv.MiniLMModel(b)
	be, err := onnx.Open(onnx.Options{LibraryPath: lib, ModelPath: filepath.Join(dir, "onnx", "model.onnx"), MaxRunAttention: maxAttn})
	if err != nil {
		b.Fatal(err)
	}
	defer be.Close()
	// Count the peak from here: generating the model took Go heap that
	// the runtime does not hold.
	debug.FreeOSMemory()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Logf("cannot reset the peak RSS: %v", err)
	}
	start := procStatus(b, "VmRSS")
	rng := rand.New(rand.NewPCG(1, 2))
	const budget, maxRows = 16384, 32
	ctx := context.Background()
	var tokens int
	cpu0 := cpuTime(b)
	b.ResetTimer()
	for b.Loop() {
		var size int
		switch p := rng.Float64(); {
		case p < 0.4:
			size = 7 + rng.IntN(16)
		case p < 0.8:
			size = 102 + rng.IntN(201)
		default:
			size = 512
		}
		rows := min(maxRows, budget/size)
		if rng.IntN(2) == 0 {
			rows = 1 + rng.IntN(rows)
		}
		n := rows * size
		batch := &gateway.Batch{Rows: rows, Len: size, InputIDs: make([]int64, n), AttentionMask: make([]int64, n)}
		for i := range n {
			batch.InputIDs[i] = int64(1000 + (i*7919)%29000)
			batch.AttentionMask[i] = 1
		}
		if _, err := be.Embed(ctx, batch); err != nil {
			b.Fatal(err)
		}
		tokens += n
	}
	b.ReportMetric(float64(tokens)/b.Elapsed().Seconds(), "tokens/s")
	// CPU time too: on a shared machine it varies less than wall time.
	b.ReportMetric(float64(tokens)/(cpuTime(b)-cpu0).Seconds(), "tokens/CPU-s")
	b.ReportMetric(float64(start)/(1<<20), "start-MB")
	for _, k := range []string{"VmHWM", "VmRSS"} {
		b.ReportMetric(float64(procStatus(b, k))/(1<<20), k+"-MB")
	}
}

// procStatus reads one kB field of /proc/self/status, in bytes.
func procStatus(b *testing.B, key string) int64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(raw)) {
		k, v, ok := strings.Cut(line, ":")
		if !ok || k != key {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		return kb << 10
	}
	b.Fatalf("/proc/self/status has no %s", key)
	return 0
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
