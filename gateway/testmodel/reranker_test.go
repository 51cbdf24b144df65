//go:build cgo

package testmodel_test

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/internal/testenv"
	"github.com/embedgate/embedgate/gateway/testmodel"
)

// goldenCases are backend/onnx's golden cases: token ids and the numpy
// oracle's last_hidden_state of the pooled tiny model (seed 0), whose
// encoder a seed-0 reranker shares.
type goldenCases struct {
	ModelSHA256 string `json:"model_sha256"`
	Cases       []struct {
		IDs             []int64     `json:"ids"`
		TypeIDs         []int64     `json:"type_ids"`
		LastHiddenState [][]float64 `json:"last_hidden_state"`
	} `json:"cases"`
}

// logitsTolerance: float32 ONNX Runtime against float64 by hand, on
// logits of a few units (float32's step there is 5e-7).
const logitsTolerance = 1e-5

// minLogitGap is how far apart the golden cases' logits must be: a hundred
// times the tolerance.
const minLogitGap = 1e-3

// TestRerankerLogits runs the reranker graph on ONNX Runtime and checks its
// logits against the head computed by hand in float64 (pooler dense, tanh,
// classifier) from the oracle's [CLS] states and the head weights read
// from the model file. The cases go in one right-padded batch, so padding
// must change nothing; with 2 labels each column must be its own label's.
func TestRerankerLogits(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "backend", "onnx", "testdata", "golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g goldenCases
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatalf("golden.json: %v", err)
	}
	if g.ModelSHA256 != tinyPooledSHA256 {
		t.Fatalf("golden.json was made from %s, not the pooled tiny model %s", g.ModelSHA256, tinyPooledSHA256)
	}
	ort.SetSharedLibraryPath(testenv.ORTLib(t))
	if err := ort.InitializeEnvironment(); err != nil {
		t.Fatal(err)
	}
	defer ort.DestroyEnvironment()

	rows, l := len(g.Cases), 0
	for _, c := range g.Cases {
		l = max(l, len(c.IDs))
	}
	ids, mask, types := make([]int64, rows*l), make([]int64, rows*l), make([]int64, rows*l)
	for i, c := range g.Cases {
		copy(ids[i*l:], c.IDs)
		copy(types[i*l:], c.TypeIDs)
		for j := range c.IDs {
			mask[i*l+j] = 1
		}
	}

	for _, tt := range []struct {
		name   string
		opts   []testmodel.Option
		labels int
	}{
		{"OneLabel", nil, 1},
		{"TwoLabels", []testmodel.Option{testmodel.WithNumLabels(2)}, 2},
		{"NoTokenTypeIDs", []testmodel.Option{testmodel.WithoutTokenTypeIDs()}, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := testenv.TinyReranker(t, tt.opts...)
			path := filepath.Join(dir, "onnx", "model.onnx")
			model, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			w := floatInits(t, model)
			inputs := []string{gateway.TensorInputIDs, gateway.TensorAttentionMask, gateway.TensorTokenTypeIDs}
			data := [][]int64{ids, mask, types}
			noTypes := tt.name == "NoTokenTypeIDs"
			if noTypes {
				inputs, data = inputs[:2], data[:2]
			}
			got, shape := runLogits(t, path, inputs, data, rows, l)
			if want := []int64{int64(rows), int64(tt.labels)}; !slices.Equal(shape, want) {
				t.Fatalf("logits shape = %v, want %v", shape, want)
			}
			// Without the input the graph adds type 0 everywhere, which
			// matches only the cases whose type ids are all 0.
			skip := func(i int) bool {
				return noTypes && slices.ContainsFunc(g.Cases[i].TypeIDs, func(v int64) bool { return v != 0 })
			}
			worst, checked := 0.0, 0
			for i, c := range g.Cases {
				if skip(i) {
					continue
				}
				checked++
				want := head(t, w, c.LastHiddenState[0], tt.labels)
				for k := range want {
					v := float64(got[i*tt.labels+k])
					if math.IsNaN(v) || math.IsInf(v, 0) {
						t.Fatalf("case %d label %d: logit %v", i, k, v)
					}
					worst = max(worst, math.Abs(v-want[k]))
				}
				t.Logf("case %d: logits %v, by hand %v", i, got[i*tt.labels:(i+1)*tt.labels], want)
			}
			if checked < 3 || worst > logitsTolerance {
				t.Errorf("logits differ from the hand computation by %g over %d cases, want <= %g", worst, checked, logitsTolerance)
			}
			// Logits must tell inputs apart, well above float32 rounding, or
			// tests that compare or sort scores check nothing.
			for i := range rows {
				for j := range i {
					if skip(i) || skip(j) {
						continue
					}
					if d := math.Abs(float64(got[i*tt.labels] - got[j*tt.labels])); d < minLogitGap {
						t.Errorf("cases %d and %d: logits %g apart, want >= %g", j, i, d, minLogitGap)
					}
				}
			}
		})
	}
}

// head is BertForSequenceClassification's head on one [CLS] state, in
// float64: tanh(cls·Wp + bp)·Wc + bc, with W stored [in, out].
func head(t *testing.T, w map[string][]float32, cls []float64, labels int) []float64 {
	t.Helper()
	h := len(cls)
	wp, bp, wc, bc := w["pooler.dense.weight"], w["pooler.dense.bias"], w["classifier.weight"], w["classifier.bias"]
	if len(wp) != h*h || len(bp) != h || len(wc) != h*labels || len(bc) != labels {
		t.Fatalf("head weights of sizes %d %d %d %d, want %d %d %d %d", len(wp), len(bp), len(wc), len(bc), h*h, h, h*labels, labels)
	}
	pooled := make([]float64, h)
	for j := range h {
		s := float64(bp[j])
		for i := range h {
			s += cls[i] * float64(wp[i*h+j])
		}
		pooled[j] = math.Tanh(s)
	}
	out := make([]float64, labels)
	for k := range labels {
		s := float64(bc[k])
		for j := range h {
			s += pooled[j] * float64(wc[j*labels+k])
		}
		out[k] = s
	}
	return out
}

// runLogits runs the model at path on one [rows, l] batch and returns the
// logits and their shape.
func runLogits(t *testing.T, path string, names []string, data [][]int64, rows, l int) ([]float32, []int64) {
	t.Helper()
	outs, shapes := runOutputs(t, path, names, data, rows, l, []string{gateway.TensorLogits})
	return outs[0], shapes[0]
}
