//go:build cgo

package triton_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/backend/onnx"
	"github.com/embedgate/embedgate/gateway/backend/triton"
	"github.com/embedgate/embedgate/gateway/backend/triton/tritontest"
	"github.com/embedgate/embedgate/gateway/internal/testenv"
	"github.com/embedgate/embedgate/gateway/testmodel"
)

// openONNX opens the tiny test model built with opts; it closes with the test.
func openONNX(t testing.TB, opts ...testmodel.Option) *onnx.Backend {
	t.Helper()
	return openONNXDir(t, testenv.TinyModel(t, opts...))
}

// openQwen3 opens the tiny Qwen3 decoder, which takes position_ids; it
// closes with the test.
func openQwen3(t testing.TB) *onnx.Backend {
	t.Helper()
	return openONNXDir(t, testenv.TinyQwen3(t))
}

// openONNXDir opens the model of a model directory on one thread; it
// closes with the test.
func openONNXDir(t testing.TB, dir string) *onnx.Backend {
	t.Helper()
	b, err := onnx.Open(onnx.Options{LibraryPath: testenv.ORTLib(t), ModelPath: filepath.Join(dir, "onnx", "model.onnx"), IntraOpThreads: 1})
	if err != nil {
		t.Fatalf("onnx.Open: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("onnx Close: %v", err)
		}
	})
	return b
}

// testLogger writes the backend's log into the test's.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// options are the test defaults for a backend talking to srv: short
// timeouts keep the fault tests fast. Tests with their own stand-in and no
// tight deadline call t.Parallel; the fault tests, timing calls in
// milliseconds, stay serial (and so run first, while the others wait).
func options(t testing.TB, srv *tritontest.Server) triton.Options {
	return triton.Options{URL: srv.Addr(), Model: srv.Name(), Timeout: 2 * time.Second,
		ReadyTimeout: 2 * time.Second, Logger: testLogger(t)}
}

// openTriton opens a backend on srv with opts; it closes with the test.
func openTriton(t testing.TB, opts triton.Options) *triton.Backend {
	t.Helper()
	b, err := triton.Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("triton.Open: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("triton Close: %v", err)
		}
	})
	return b
}

// batch is a right-padded batch of rows of the given lengths.
func batch(lens ...int) *gateway.Batch {
	l := 0
	for _, n := range lens {
		l = max(l, n)
	}
	b := &gateway.Batch{ID: "test-batch", Rows: len(lens), Len: l, InputIDs: make([]int64, len(lens)*l),
		AttentionMask: make([]int64, len(lens)*l), TokenTypeIDs: make([]int64, len(lens)*l)}
	for r, n := range lens {
		for j := range n {
			b.InputIDs[r*l+j] = int64(100 + (r*131+j*37)%900)
			b.AttentionMask[r*l+j] = 1
		}
		b.InputIDs[r*l], b.InputIDs[r*l+n-1] = 101, 102
	}
	return b
}
