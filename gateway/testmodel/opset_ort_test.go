//go:build cgo

package testmodel_test

import (
	"math"
	"path/filepath"
	"slices"
	"testing"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/internal/testenv"
	"github.com/embedgate/embedgate/gateway/testmodel"
)

// opsetTolerance: LayerNormalization as separate nodes rounds differently
// from ONNX Runtime's fused kernel, by a few float32 steps on values of a
// few units.
const opsetTolerance = 1e-5

// TestOpsetOutputs runs each model at every older opset in ONNX Runtime and
// compares its outputs with the opset-17 model's: the same weights must
// compute the same function whatever ops the opset writes it with.
func TestOpsetOutputs(t *testing.T) {
	ort.SetSharedLibraryPath(testenv.ORTLib(t))
	if err := ort.InitializeEnvironment(); err != nil {
		t.Fatal(err)
	}
	defer ort.DestroyEnvironment()

	// Three right-padded rows of 6, one of them with token type 1.
	const rows, l = 3, 6
	ids := []int64{101, 7592, 2088, 102, 0, 0, 101, 2023, 2003, 1037, 3231, 102, 101, 102, 0, 0, 0, 0}
	mask := []int64{1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0}
	types := []int64{0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0}
	inputs := []string{gateway.TensorInputIDs, gateway.TensorAttentionMask, gateway.TensorTokenTypeIDs}

	for _, tt := range []struct {
		name    string
		opts    []testmodel.Option
		outputs []string
	}{
		{"Pooled", []testmodel.Option{testmodel.WithPooled()}, []string{gateway.TensorLastHiddenState, gateway.TensorSentenceEmbedding}},
		{"Reranker", []testmodel.Option{testmodel.WithNumLabels(1)}, []string{gateway.TensorLogits}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			run := func(opset int) [][]float32 {
				path := filepath.Join(testenv.TinyModel(t, append(tt.opts, testmodel.WithOpset(opset))...), "onnx", "model.onnx")
				outs, _ := runOutputs(t, path, inputs, [][]int64{ids, mask, types}, rows, l, tt.outputs)
				return outs
			}
			want := run(testmodel.DefaultOpset)
			for _, opset := range []int{11, 13, 15, 16} {
				got := run(opset)
				for k, name := range tt.outputs {
					worst := 0.0
					for i, v := range want[k] {
						d := math.Abs(float64(got[k][i] - v))
						if math.IsNaN(d) || d > opsetTolerance {
							t.Fatalf("opset %d: %s[%d] = %v, opset 17's %v", opset, name, i, got[k][i], v)
						}
						worst = max(worst, d)
					}
					t.Logf("opset %d: %s within %.3g of opset 17's", opset, name, worst)
				}
			}
		})
	}
}

// runOutputs runs the model at path on one [rows, l] batch of the named
// INT64 inputs and returns the named float outputs and their shapes.
func runOutputs(t *testing.T, path string, names []string, data [][]int64, rows, l int, outputs []string) ([][]float32, [][]int64) {
	t.Helper()
	session, err := ort.NewDynamicAdvancedSession(path, names, outputs, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Destroy()
	var in []ort.Value
	for _, d := range data {
		v, err := ort.NewTensor(ort.NewShape(int64(rows), int64(l)), d)
		if err != nil {
			t.Fatal(err)
		}
		defer v.Destroy()
		in = append(in, v)
	}
	out := make([]ort.Value, len(outputs))
	if err := session.Run(in, out); err != nil {
		t.Fatalf("run: %v", err)
	}
	var res [][]float32
	var shapes [][]int64
	for i, o := range out {
		defer o.Destroy()
		f, ok := o.(*ort.Tensor[float32])
		if !ok {
			t.Fatalf("%s is %T, want float32", outputs[i], o)
		}
		res, shapes = append(res, slices.Clone(f.GetData())), append(shapes, f.GetShape())
	}
	return res, shapes
}
