//go:build cgo

package onnx_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/internal/testenv"
	"github.com/embedgate/embedgate/gateway/testmodel"
)

// golden holds testdata/golden.json, written by scripts/reference_model.py
// (a numpy float64 re-implementation of the model, independent of ONNX
// Runtime; see the script for how to regenerate it).
type golden struct {
	ModelSHA256 string `json:"model_sha256"`
	Cases       []struct {
		IDs               []int64     `json:"ids"`
		TypeIDs           []int64     `json:"type_ids"`
		LastHiddenState   [][]float64 `json:"last_hidden_state"`
		SentenceEmbedding []float64   `json:"sentence_embedding"`
	} `json:"cases"`
}

// Tolerances: float32 inference against a float64 oracle.
const (
	hiddenTolerance    = 1e-4
	embeddingTolerance = 1e-5
)

func TestGolden(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatalf("golden.json: %v", err)
	}
	// The oracle read the pooled model; the hidden-only model has the same
	// weights (the pooled head adds nodes, not parameters).
	model, err := os.ReadFile(filepath.Join(testenv.TinyModel(t, testmodel.WithPooled()), "onnx", "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(model); hex.EncodeToString(sum[:]) != g.ModelSHA256 {
		t.Fatalf("pooled tiny model sha256 = %x, golden.json was made from %s: regenerate it (scripts/reference_model.py)", sum, g.ModelSHA256)
	}

	// All cases in one right-padded batch: the oracle ran each alone, so this
	// also checks that padding changes nothing.
	l := 0
	for _, c := range g.Cases {
		l = max(l, len(c.IDs))
	}
	batch := &gateway.Batch{Rows: len(g.Cases), Len: l, InputIDs: make([]int64, len(g.Cases)*l),
		AttentionMask: make([]int64, len(g.Cases)*l), TokenTypeIDs: make([]int64, len(g.Cases)*l)}
	for i, c := range g.Cases {
		copy(batch.InputIDs[i*l:], c.IDs)
		copy(batch.TokenTypeIDs[i*l:], c.TypeIDs)
		for j := range c.IDs {
			batch.AttentionMask[i*l+j] = 1
		}
	}

	t.Run("LastHiddenState", func(t *testing.T) {
		out, err := openTiny(t).Embed(context.Background(), batch)
		if err != nil {
			t.Fatal(err)
		}
		worst := 0.0
		for i, c := range g.Cases {
			for p, want := range c.LastHiddenState {
				got := out.Data[(i*l+p)*out.Hidden : (i*l+p+1)*out.Hidden]
				worst = max(worst, diff(got, want))
			}
		}
		t.Logf("max |ORT - numpy| on last_hidden_state: %.3g", worst)
		if worst > hiddenTolerance {
			t.Errorf("last_hidden_state differs from the oracle by %g, want <= %g", worst, hiddenTolerance)
		}
	})
	t.Run("NoTokenTypeIDs", func(t *testing.T) {
		// Same weights; the graph adds type row 0 everywhere, which matches
		// the cases whose type ids are all 0.
		out, err := openTiny(t, testmodel.WithoutTokenTypeIDs()).Embed(context.Background(), batch)
		if err != nil {
			t.Fatal(err)
		}
		worst, checked := 0.0, 0
		for i, c := range g.Cases {
			if slices.ContainsFunc(c.TypeIDs, func(v int64) bool { return v != 0 }) {
				continue
			}
			checked++
			for p, want := range c.LastHiddenState {
				worst = max(worst, diff(out.Data[(i*l+p)*out.Hidden:(i*l+p+1)*out.Hidden], want))
			}
		}
		t.Logf("max |ORT - numpy| on last_hidden_state without token_type_ids (%d cases): %.3g", checked, worst)
		if checked == 0 || worst > hiddenTolerance {
			t.Errorf("last_hidden_state differs from the oracle by %g over %d cases, want <= %g", worst, checked, hiddenTolerance)
		}
	})
	t.Run("SentenceEmbedding", func(t *testing.T) {
		out, err := openTiny(t, testmodel.WithPooled()).Embed(context.Background(), batch)
		if err != nil {
			t.Fatal(err)
		}
		worst := 0.0
		for i, c := range g.Cases {
			worst = max(worst, diff(out.Data[i*out.Hidden:(i+1)*out.Hidden], c.SentenceEmbedding))
		}
		t.Logf("max |ORT - numpy| on sentence_embedding: %.3g", worst)
		if worst > embeddingTolerance {
			t.Errorf("sentence_embedding differs from the oracle by %g, want <= %g", worst, embeddingTolerance)
		}
	})
}

func diff(got []float32, want []float64) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	d := 0.0
	for i := range got {
		d = max(d, math.Abs(float64(got[i])-want[i]))
	}
	return d
}
