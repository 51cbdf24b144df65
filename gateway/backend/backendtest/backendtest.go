// Package backendtest provides the conformance suite every gateway backend
// (onnx, triton) must pass, for embedding models and cross-encoders alike:
// Run checks the model description, output shapes,
// padding invariance, determinism under concurrency, cancellation and the
// handling of malformed batches. It imports gateway only.
package backendtest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"

	"github.com/embedgate/embedgate/gateway"
)

// Backend is the interface under test, identical to infer.Backend; declared
// here so that backends' tests need not import infer.
type Backend interface {
	Spec() gateway.ModelSpec
	Embed(ctx context.Context, b *gateway.Batch) (*gateway.Output, error)
	Health(ctx context.Context) error
}

// Tolerance for padding invariance: the same row computed in batches of
// different shapes may differ in the last bits, never more.
const tolerance = 1e-5

// Run runs the conformance suite against b, which must stay open until Run
// returns.
func Run(t *testing.T, b Backend) {
	t.Helper()
	t.Run("Spec", func(t *testing.T) { testSpec(t, b) })
	t.Run("Health", func(t *testing.T) {
		if err := b.Health(context.Background()); err != nil {
			t.Fatalf("Health() = %v, want nil", err)
		}
	})
	t.Run("Shape", func(t *testing.T) { testShape(t, b) })
	t.Run("PaddingInvariance", func(t *testing.T) { testPadding(t, b) })
	t.Run("ConcurrentDeterminism", func(t *testing.T) { testConcurrent(t, b) })
	t.Run("CancelledContext", func(t *testing.T) { testCancelled(t, b) })
	t.Run("MalformedBatch", func(t *testing.T) { testMalformed(t, b) })
}

func testSpec(t *testing.T, b Backend) {
	s := b.Spec()
	if s.Hidden <= 0 {
		t.Errorf("Spec().Hidden = %d, want > 0", s.Hidden)
	}
	if s.Output != gateway.Hidden && s.Output != gateway.Pooled && s.Output != gateway.Logits {
		t.Errorf("Spec().Output = %d, want Hidden, Pooled or Logits", s.Output)
	}
	if s.InputDType != gateway.Int64 && s.InputDType != gateway.Int32 {
		t.Errorf("Spec().InputDType = %d, want Int64 or Int32", s.InputDType)
	}
	if s.MaxBatch < 0 {
		t.Errorf("Spec().MaxBatch = %d, want >= 0", s.MaxBatch)
	}
}

// seq returns a [CLS] x.. [SEP]-shaped row of n ids below 1000, valid for
// any real vocabulary, varied by salt.
func seq(n, salt int) []int64 {
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = int64(100 + (i*37+salt*101)%900)
	}
	ids[0], ids[n-1] = 101, 102
	return ids
}

// pad builds a right-padded batch of rows (pad id 0, mask 0, type 0).
func pad(rows ...[]int64) *gateway.Batch {
	l := 0
	for _, r := range rows {
		l = max(l, len(r))
	}
	b := &gateway.Batch{ID: "backendtest", Rows: len(rows), Len: l,
		InputIDs: make([]int64, len(rows)*l), AttentionMask: make([]int64, len(rows)*l), TokenTypeIDs: make([]int64, len(rows)*l)}
	for i, r := range rows {
		copy(b.InputIDs[i*l:], r)
		for j := range r {
			b.AttentionMask[i*l+j] = 1
		}
	}
	return b
}

func embed(t *testing.T, be Backend, b *gateway.Batch) *gateway.Output {
	t.Helper()
	out, err := be.Embed(context.Background(), b)
	if err != nil {
		t.Fatalf("Embed([%d,%d]) error: %v", b.Rows, b.Len, err)
	}
	if err := checkOutput(be.Spec(), b, out); err != nil {
		t.Fatalf("Embed([%d,%d]): %v", b.Rows, b.Len, err)
	}
	return out
}

func checkOutput(s gateway.ModelSpec, b *gateway.Batch, o *gateway.Output) error {
	if o == nil {
		return errors.New("nil output")
	}
	want := b.Rows * s.Hidden
	if o.Kind != s.Output {
		return fmt.Errorf("Kind = %d, want %d", o.Kind, s.Output)
	}
	if o.Rows != b.Rows || o.Hidden != s.Hidden {
		return fmt.Errorf("Rows, Hidden = %d, %d, want %d, %d", o.Rows, o.Hidden, b.Rows, s.Hidden)
	}
	if o.Kind == gateway.Hidden {
		if o.Len != b.Len {
			return fmt.Errorf("Len = %d, want %d", o.Len, b.Len)
		}
		want *= b.Len
	}
	if len(o.Data) != want {
		return fmt.Errorf("len(Data) = %d, want %d", len(o.Data), want)
	}
	for i, v := range o.Data {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("Data[%d] = %v, want finite", i, v)
		}
	}
	return nil
}

func testShape(t *testing.T, b Backend) {
	for _, tt := range []struct {
		name       string
		rows, size int
	}{{"1x1", 1, 1}, {"1x8", 1, 8}, {"3x16", 3, 16}} {
		t.Run(tt.name, func(t *testing.T) {
			rows := make([][]int64, tt.rows)
			for i := range rows {
				rows[i] = seq(tt.size, i)
			}
			embed(t, b, pad(rows...))
		})
	}
	t.Run("NilTokenTypeIDs", func(t *testing.T) {
		batch := pad(seq(6, 1), seq(4, 2))
		batch.TokenTypeIDs = nil
		embed(t, b, batch)
	})
}

// row returns row i's real values: its H-vector (Pooled), its logits
// (Logits) or its first n positions (Hidden).
func row(o *gateway.Output, i, n int) []float32 {
	if o.Kind != gateway.Hidden {
		return o.Data[i*o.Hidden : (i+1)*o.Hidden]
	}
	start := i * o.Len * o.Hidden
	return o.Data[start : start+n*o.Hidden]
}

func testPadding(t *testing.T, b Backend) {
	short, long := seq(5, 3), seq(13, 4)
	alone := embed(t, b, pad(short))
	for _, tt := range []struct {
		name  string
		batch *gateway.Batch
		idx   int
	}{
		{"BeforeLonger", pad(short, long), 0},
		{"AfterLonger", pad(long, short), 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := row(embed(t, b, tt.batch), tt.idx, len(short))
			want := row(alone, 0, len(short))
			if d := maxDiff(got, want); d > tolerance {
				t.Errorf("row padded to %d differs from row alone by %g, want <= %g", tt.batch.Len, d, tolerance)
			}
		})
	}
}

func maxDiff(a, b []float32) float64 {
	d := 0.0
	for i := range a {
		d = max(d, math.Abs(float64(a[i])-float64(b[i])))
	}
	return d
}

func testConcurrent(t *testing.T, b Backend) {
	batch := pad(seq(9, 5), seq(7, 6), seq(3, 7))
	want := embed(t, b, batch).Data
	const workers, calls = 4, 5
	var wg sync.WaitGroup
	errs := make(chan error, workers*calls)
	for range workers {
		wg.Go(func() {
			for range calls {
				out, err := b.Embed(context.Background(), batch)
				if err != nil {
					errs <- err
					return
				}
				for i, v := range out.Data {
					if v != want[i] {
						errs <- fmt.Errorf("Data[%d] = %v, want %v (serial run)", i, v, want[i])
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func testCancelled(t *testing.T, b Backend) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	out, err := call(b, ctx, pad(seq(8, 8)))
	if err == nil {
		t.Fatalf("Embed(cancelled ctx) = %v, nil; want an error", out)
	}
}

// call runs Embed, turning a panic into an error so one bad case does not
// end the suite.
func call(b Backend, ctx context.Context, batch *gateway.Batch) (out *gateway.Output, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return b.Embed(ctx, batch)
}

func testMalformed(t *testing.T, b Backend) {
	valid := func(mod func(*gateway.Batch)) *gateway.Batch {
		batch := pad(seq(4, 9), seq(4, 10))
		mod(batch)
		return batch
	}
	for _, tt := range []struct {
		name  string
		batch *gateway.Batch
	}{
		{"Nil", nil},
		{"ZeroRows", valid(func(b *gateway.Batch) { b.Rows = 0 })},
		{"ZeroLen", valid(func(b *gateway.Batch) { b.Len = 0 })},
		{"NegativeRows", valid(func(b *gateway.Batch) { b.Rows = -2 })},
		{"ShortInputIDs", valid(func(b *gateway.Batch) { b.InputIDs = b.InputIDs[:5] })},
		{"ShortMask", valid(func(b *gateway.Batch) { b.AttentionMask = b.AttentionMask[:7] })},
		{"NilMask", valid(func(b *gateway.Batch) { b.AttentionMask = nil })},
		{"LongTokenTypeIDs", valid(func(b *gateway.Batch) { b.TokenTypeIDs = append(b.TokenTypeIDs, 0) })},
		{"RowsDisagree", valid(func(b *gateway.Batch) { b.Rows = 4 })},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, err := call(b, context.Background(), tt.batch)
			var gerr *gateway.Error
			if !errors.As(err, &gerr) {
				t.Fatalf("Embed(%s) = %v, %v; want a *gateway.Error", tt.name, out, err)
			}
		})
	}
}
