//go:build cgo

package onnx_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/backend/backendtest"
	"github.com/embedgate/embedgate/gateway/backend/onnx"
	"github.com/embedgate/embedgate/gateway/internal/testenv"
	"github.com/embedgate/embedgate/gateway/testmodel"
)

// openTiny opens the tiny test model built with opts; it closes with the test.
func openTiny(t testing.TB, opts ...testmodel.Option) *onnx.Backend {
	t.Helper()
	lib := testenv.ORTLib(t)
	dir := testenv.TinyModel(t, opts...)
	b, err := onnx.Open(onnx.Options{LibraryPath: lib, ModelPath: filepath.Join(dir, "onnx", "model.onnx"), IntraOpThreads: 2})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

func TestConformance(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts []testmodel.Option
		want gateway.ModelSpec
	}{
		{"Hidden", nil, gateway.ModelSpec{HasTokenTypeIDs: true, Output: gateway.Hidden, Hidden: 32}},
		{"Pooled", []testmodel.Option{testmodel.WithPooled()}, gateway.ModelSpec{HasTokenTypeIDs: true, Output: gateway.Pooled, Hidden: 32}},
		{"NoTokenTypeIDs", []testmodel.Option{testmodel.WithoutTokenTypeIDs()}, gateway.ModelSpec{Output: gateway.Hidden, Hidden: 32}},
		{"PooledNoTokenTypeIDs", []testmodel.Option{testmodel.WithPooled(), testmodel.WithoutTokenTypeIDs()}, gateway.ModelSpec{Output: gateway.Pooled, Hidden: 32}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := openTiny(t, tt.opts...)
			got := b.Spec()
			got.Name = ""
			if got != tt.want {
				t.Errorf("Spec() = %+v, want %+v", got, tt.want)
			}
			backendtest.Run(t, b)
		})
	}
}

func TestOpenErrors(t *testing.T) {
	lib := testenv.ORTLib(t)
	for _, tt := range []struct {
		name string
		opts onnx.Options
	}{
		{"NoLibrary", onnx.Options{ModelPath: "x.onnx"}},
		{"NoModel", onnx.Options{LibraryPath: lib}},
		{"MissingModel", onnx.Options{LibraryPath: lib, ModelPath: filepath.Join(t.TempDir(), "missing.onnx")}},
		{"NegativeThreads", onnx.Options{LibraryPath: lib, ModelPath: "x.onnx", IntraOpThreads: -1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if b, err := onnx.Open(tt.opts); err == nil {
				b.Close()
				t.Fatalf("Open(%+v) = nil error, want one", tt.opts)
			}
		})
	}
}

// TestOpenErrorsLoadRuntime: a library that does not load is
// ErrLoadRuntime, so a caller can try the next; a model that does not
// load, with a good library, is not.
func TestOpenErrorsLoadRuntime(t *testing.T) {
	lib := testenv.ORTLib(t)
	_, err := onnx.Open(onnx.Options{LibraryPath: filepath.Join(t.TempDir(), "libonnxruntime.so.1"), ModelPath: "x.onnx"})
	if !errors.Is(err, onnx.ErrLoadRuntime) {
		t.Errorf("Open with a missing library = %v, want ErrLoadRuntime", err)
	}
	_, err = onnx.Open(onnx.Options{LibraryPath: lib, ModelPath: filepath.Join(t.TempDir(), "missing.onnx")})
	if err == nil || errors.Is(err, onnx.ErrLoadRuntime) {
		t.Errorf("Open with a missing model = %v, want an error that is not ErrLoadRuntime", err)
	}
}

func TestClose(t *testing.T) {
	lib := testenv.ORTLib(t)
	path := filepath.Join(testenv.TinyModel(t), "onnx", "model.onnx")
	// Two backends share the runtime; closing one leaves the other working,
	// and the runtime can be loaded again after both closed.
	for round := range 2 {
		a, err := onnx.Open(onnx.Options{LibraryPath: lib, ModelPath: path})
		if err != nil {
			t.Fatalf("round %d: Open a: %v", round, err)
		}
		b, err := onnx.Open(onnx.Options{LibraryPath: lib, ModelPath: path})
		if err != nil {
			t.Fatalf("round %d: Open b: %v", round, err)
		}
		if err := a.Close(); err != nil {
			t.Fatalf("round %d: Close a: %v", round, err)
		}
		if err := a.Close(); err != nil {
			t.Errorf("round %d: second Close a: %v", round, err)
		}
		batch := &gateway.Batch{Rows: 1, Len: 3, InputIDs: []int64{101, 2000, 102}, AttentionMask: []int64{1, 1, 1}}
		if _, err := a.Embed(context.Background(), batch); gateway.KindOf(err) != gateway.Unhealthy {
			t.Errorf("round %d: Embed after Close = %v, want Unhealthy", round, err)
		}
		if err := a.Health(context.Background()); gateway.KindOf(err) != gateway.Unhealthy {
			t.Errorf("round %d: Health after Close = %v, want Unhealthy", round, err)
		}
		if _, err := b.Embed(context.Background(), batch); err != nil {
			t.Errorf("round %d: Embed on b after closing a: %v", round, err)
		}
		if err := b.Close(); err != nil {
			t.Fatalf("round %d: Close b: %v", round, err)
		}
	}
}

func TestDeadline(t *testing.T) {
	b := openTiny(t)
	ctx, cancel := context.WithTimeout(context.Background(), 0)
	defer cancel()
	batch := &gateway.Batch{Rows: 1, Len: 3, InputIDs: []int64{101, 2000, 102}, AttentionMask: []int64{1, 1, 1}}
	_, err := b.Embed(ctx, batch)
	if gateway.KindOf(err) != gateway.Timeout || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Embed(expired ctx) = %v, want Timeout wrapping DeadlineExceeded", err)
	}
}

func TestOutOfVocabulary(t *testing.T) {
	b := openTiny(t)
	batch := &gateway.Batch{Rows: 1, Len: 3, InputIDs: []int64{101, 1 << 40, 102}, AttentionMask: []int64{1, 1, 1}}
	if _, err := b.Embed(context.Background(), batch); gateway.KindOf(err) != gateway.Backend {
		t.Errorf("Embed(id out of vocabulary) = %v, want a Backend error", err)
	}
}

func TestNegativeTokenID(t *testing.T) {
	b := openTiny(t)
	batch := &gateway.Batch{Rows: 1, Len: 3, InputIDs: []int64{101, -1, 102}, AttentionMask: []int64{1, 1, 1}}
	if _, err := b.Embed(context.Background(), batch); gateway.KindOf(err) != gateway.Internal {
		t.Errorf("Embed(negative id) = %v, want an Internal error", err)
	}
}

// TestCancelDuringRun cancels while the runtime executes a large batch: the
// run is terminated (or finishes first); either way no panic, and an error
// says why.
func TestCancelDuringRun(t *testing.T) {
	b := openTiny(t)
	const rows, size = 64, 512
	batch := &gateway.Batch{Rows: rows, Len: size, InputIDs: make([]int64, rows*size), AttentionMask: make([]int64, rows*size)}
	for i := range batch.InputIDs {
		batch.InputIDs[i], batch.AttentionMask[i] = int64(1000+i%5000), 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	stop := time.AfterFunc(2*time.Millisecond, cancel)
	defer stop.Stop()
	start := time.Now()
	out, err := b.Embed(ctx, batch)
	t.Logf("Embed returned after %v: err %v", time.Since(start), err)
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("Embed(cancelled mid-run) = %v, want an error wrapping context.Canceled", err)
	}
	if err == nil && len(out.Data) != rows*size*out.Hidden {
		t.Errorf("len(Data) = %d, want %d", len(out.Data), rows*size*out.Hidden)
	}
	// The session stays usable after a terminated run.
	if _, err := b.Embed(context.Background(), &gateway.Batch{Rows: 1, Len: 2, InputIDs: []int64{101, 102}, AttentionMask: []int64{1, 1}}); err != nil {
		t.Errorf("Embed after a terminated run: %v", err)
	}
}
