//go:build cgo

package onnx_test

import (
	"context"
	"errors"
	"math"
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
	return openTinyWith(t, onnx.Options{}, opts...)
}

// openTinyWith is openTiny with o's runtime options.
func openTinyWith(t testing.TB, o onnx.Options, opts ...testmodel.Option) *onnx.Backend {
	t.Helper()
	o.LibraryPath = testenv.ORTLib(t)
	o.ModelPath = filepath.Join(testenv.TinyModel(t, opts...), "onnx", "model.onnx")
	return openPath(t, o)
}

// openPath opens o.ModelPath with o; it closes with the test.
func openPath(t testing.TB, o onnx.Options) *onnx.Backend {
	t.Helper()
	o.IntraOpThreads = 2
	b, err := onnx.Open(o)
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
		name    string
		opts    []testmodel.Option
		maxAttn int // Options.MaxRunAttention
		want    gateway.ModelSpec
	}{
		{"Hidden", nil, 0, gateway.ModelSpec{HasTokenTypeIDs: true, Output: gateway.Hidden, Hidden: 32}},
		{"Pooled", []testmodel.Option{testmodel.WithPooled()}, 0, gateway.ModelSpec{HasTokenTypeIDs: true, Output: gateway.Pooled, Hidden: 32}},
		{"NoTokenTypeIDs", []testmodel.Option{testmodel.WithoutTokenTypeIDs()}, 0, gateway.ModelSpec{Output: gateway.Hidden, Hidden: 32}},
		{"PooledNoTokenTypeIDs", []testmodel.Option{testmodel.WithPooled(), testmodel.WithoutTokenTypeIDs()}, 0, gateway.ModelSpec{Output: gateway.Pooled, Hidden: 32}},
		// One row per run: every multi-row batch is split.
		{"HiddenRowByRow", nil, 1, gateway.ModelSpec{HasTokenTypeIDs: true, Output: gateway.Hidden, Hidden: 32}},
		{"PooledRowByRow", []testmodel.Option{testmodel.WithPooled()}, 1, gateway.ModelSpec{HasTokenTypeIDs: true, Output: gateway.Pooled, Hidden: 32}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := openTinyWith(t, onnx.Options{MaxRunAttention: tt.maxAttn}, tt.opts...)
			got := b.Spec()
			got.Name = ""
			if got != tt.want {
				t.Errorf("Spec() = %+v, want %+v", got, tt.want)
			}
			backendtest.Run(t, b)
		})
	}
}

// TestConformanceReranker: a cross-encoder's logits [B, num_labels] are
// its output, num_labels its Hidden, on one run or split runs alike.
func TestConformanceReranker(t *testing.T) {
	for _, tt := range []struct {
		name    string
		labels  int
		maxAttn int
	}{{"OneLabel", 1, 0}, {"TwoLabels", 2, 0}, {"OneLabelRowByRow", 1, 1}} {
		t.Run(tt.name, func(t *testing.T) {
			b := openPath(t, onnx.Options{LibraryPath: testenv.ORTLib(t), MaxRunAttention: tt.maxAttn,
				ModelPath: filepath.Join(testenv.TinyReranker(t, testmodel.WithNumLabels(tt.labels)), "onnx", "model.onnx")})
			want := gateway.ModelSpec{HasTokenTypeIDs: true, Output: gateway.Logits, Hidden: tt.labels}
			got := b.Spec()
			got.Name = ""
			if got != want {
				t.Errorf("Spec() = %+v, want %+v", got, want)
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
		{"NegativeMaxRunAttention", onnx.Options{LibraryPath: lib, ModelPath: "x.onnx", MaxRunAttention: -1}},
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

// TestRunsOfRows checks that a batch run a few rows at a time answers as
// the whole batch in one run does: rows of several lengths, and a last run
// with fewer rows than the others.
func TestRunsOfRows(t *testing.T) {
	const rows, size = 7, 24
	batch := &gateway.Batch{Rows: rows, Len: size, InputIDs: make([]int64, rows*size),
		AttentionMask: make([]int64, rows*size), TokenTypeIDs: make([]int64, rows*size)}
	for r := range rows {
		for p := range size - 3*r {
			i := r*size + p
			batch.InputIDs[i], batch.AttentionMask[i], batch.TokenTypeIDs[i] = int64(1000+(i*7919)%5000), 1, int64(p%2)
		}
	}
	for _, tt := range []struct {
		name string
		opts []testmodel.Option
	}{{"Hidden", nil}, {"Pooled", []testmodel.Option{testmodel.WithPooled()}}} {
		t.Run(tt.name, func(t *testing.T) {
			whole, err := openTinyWith(t, onnx.Options{MaxRunAttention: rows * size * size}, tt.opts...).Embed(context.Background(), batch)
			if err != nil {
				t.Fatal(err)
			}
			for _, per := range []int{1, 2, 3} {
				b := openTinyWith(t, onnx.Options{MaxRunAttention: per * size * size}, tt.opts...)
				got, err := b.Embed(context.Background(), batch)
				if err != nil {
					t.Fatalf("%d rows per run: %v", per, err)
				}
				if got.Kind != whole.Kind || got.Rows != whole.Rows || got.Len != whole.Len || got.Hidden != whole.Hidden || len(got.Data) != len(whole.Data) {
					t.Fatalf("%d rows per run: output %d [%d,%d,%d] with %d values, want %d [%d,%d,%d] with %d", per,
						got.Kind, got.Rows, got.Len, got.Hidden, len(got.Data), whole.Kind, whole.Rows, whole.Len, whole.Hidden, len(whole.Data))
				}
				worst := 0.0
				for i := range got.Data {
					worst = max(worst, math.Abs(float64(got.Data[i]-whole.Data[i])))
				}
				if worst > 1e-5 {
					t.Errorf("%d rows per run: output differs from the whole batch's by %g, want <= 1e-5", per, worst)
				}
			}
		})
	}
}
