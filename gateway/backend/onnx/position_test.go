//go:build cgo

package onnx_test

import (
	"context"
	"math"
	"path/filepath"
	"slices"
	"testing"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/backend/backendtest"
	"github.com/embedgate/embedgate/gateway/backend/onnx"
	"github.com/embedgate/embedgate/gateway/internal/testenv"
)

// qwen3Path is the tiny Qwen3 decoder's graph: inputs input_ids,
// attention_mask and position_ids, output last_hidden_state.
func qwen3Path(t testing.TB) string {
	t.Helper()
	return filepath.Join(testenv.TinyQwen3(t), "onnx", "model.onnx")
}

// TestConformanceQwen3: a decoder that takes position_ids says so in its
// spec and passes the backend conformance suite (padding rows and columns
// change no real token's state), in one run or row by row.
func TestConformanceQwen3(t *testing.T) {
	for _, tt := range []struct {
		name    string
		maxAttn int
	}{
		{"OneRun", 0},
		{"RowByRow", 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := openPath(t, onnx.Options{LibraryPath: testenv.ORTLib(t), ModelPath: qwen3Path(t), MaxRunAttention: tt.maxAttn})
			got := b.Spec()
			got.Name = ""
			if want := (gateway.ModelSpec{HasPositionIDs: true, Output: gateway.Hidden, Hidden: 32}); got != want {
				t.Errorf("Spec() = %+v, want %+v", got, want)
			}
			backendtest.Run(t, b)
		})
	}
}

// qwen3Batch is a right-padded batch of Qwen3 token ids, pad id
// <|endoftext|>, no token_type_ids.
func qwen3Batch(rows ...[]int64) *gateway.Batch {
	l := 0
	for _, r := range rows {
		l = max(l, len(r))
	}
	b := &gateway.Batch{ID: "qwen3", Rows: len(rows), Len: l, InputIDs: make([]int64, len(rows)*l), AttentionMask: make([]int64, len(rows)*l)}
	for i, r := range rows {
		for j := range l {
			b.InputIDs[i*l+j] = 151643
			if j < len(r) {
				b.InputIDs[i*l+j], b.AttentionMask[i*l+j] = r[j], 1
			}
		}
	}
	return b
}

// runDirect runs the graph at path on b with the given position_ids, in a
// session of its own, as a caller of ONNX Runtime would without the
// backend; the runtime is loaded (an open Backend holds it).
func runDirect(t *testing.T, path string, b *gateway.Batch, pos []int64) []float32 {
	t.Helper()
	names := []string{gateway.TensorInputIDs, gateway.TensorAttentionMask, gateway.TensorPositionIDs}
	session, err := ort.NewDynamicAdvancedSession(path, names, []string{gateway.TensorLastHiddenState}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Destroy()
	var in []ort.Value
	for _, d := range [][]int64{b.InputIDs, b.AttentionMask, pos} {
		v, err := ort.NewTensor(ort.NewShape(int64(b.Rows), int64(b.Len)), d)
		if err != nil {
			t.Fatal(err)
		}
		defer v.Destroy()
		in = append(in, v)
	}
	out := []ort.Value{nil}
	if err := session.Run(in, out); err != nil {
		t.Fatalf("direct run: %v", err)
	}
	defer out[0].Destroy()
	return slices.Clone(out[0].(*ort.Tensor[float32]).GetData())
}

// realDiff is the largest difference between a and b, [rows, l, hidden]
// states, at the batch's real tokens.
func realDiff(b *gateway.Batch, hidden int, a, c []float32) float64 {
	d := 0.0
	for i, m := range b.AttentionMask {
		if m == 0 {
			continue
		}
		for k := range hidden {
			d = max(d, math.Abs(float64(a[i*hidden+k]-c[i*hidden+k])))
		}
	}
	return d
}

// TestPositionIDs: the backend feeds a decoder position_ids 0..L-1 on
// every row, so its states equal a direct run of the graph with those
// positions; the positions matter (all zeros, RoPE's identity, gives other
// states), so a backend that sent none or zeros would fail here.
func TestPositionIDs(t *testing.T) {
	path := qwen3Path(t)
	for _, maxAttn := range []int{0, 1} {
		b := openPath(t, onnx.Options{LibraryPath: testenv.ORTLib(t), ModelPath: path, MaxRunAttention: maxAttn})
		in := qwen3Batch([]int64{9707, 11, 1879, 0}, []int64{40, 1079, 264}, []int64{13, 9707, 11, 1879, 0, 7, 12})
		out, err := b.Embed(context.Background(), in)
		if err != nil {
			t.Fatalf("Embed: %v", err)
		}
		if d := realDiff(in, out.Hidden, out.Data, runDirect(t, path, in, gateway.PositionIDs(in.Rows, in.Len))); d > 1e-5 {
			t.Errorf("max attention %d: states differ from a direct run with positions 0..L-1 by %g", maxAttn, d)
		}
		zeros := make([]int64, in.Rows*in.Len)
		if d := realDiff(in, out.Hidden, out.Data, runDirect(t, path, in, zeros)); d < 1e-3 {
			t.Errorf("max attention %d: states differ from a direct run with positions all 0 by only %g: the test cannot tell positions apart", maxAttn, d)
		}
	}
}
