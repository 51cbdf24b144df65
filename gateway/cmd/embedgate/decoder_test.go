package main

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"testing"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/backend/triton/tritontest"
	"github.com/embedgate/embedgate/gateway/internal/testenv"
)

// TestDecoderModel serves the tiny Qwen3 decoder (position_ids, last-token
// pooling, Qwen3-Embedding's prompts) in process and through the Triton
// stand-in, and checks every vector against a direct ONNX Runtime run of
// the same graph on the same ids, one unpadded row at a time: a batch
// padded on the right must still pool each row's last real token.
func TestDecoderModel(t *testing.T) {
	t.Parallel()
	dir := testenv.TinyQwen3(t)
	reference := runner(t, dir)
	srv := tritontest.StartMulti(t, tritontest.WithModel("qwen3-on-triton", runner(t, dir)))
	file := filepath.Join(t.TempDir(), "models.yaml")
	writeFile(t, file, fmt.Sprintf(`models:
  - {name: local, model_id: %[1]s, backend: onnx}
  - {name: remote, model_id: %[1]s, backend: triton, triton_model: qwen3-on-triton, triton_url: %[2]s}
`, dir, srv.Addr()))
	env := catalogueEnv(t)
	env["MODELS_FILE"], env["CACHE"] = file, "false"
	g := startGateway(t, env)

	// ids is what the gateway feeds the model for text (prompt included).
	ids := func(model, text, prompt string) []int64 {
		body := fmt.Sprintf(`{"inputs":%q,"model":%q}`, text, model)
		if prompt != "" {
			body = fmt.Sprintf(`{"inputs":%q,"model":%q,"prompt_name":%q}`, text, model, prompt)
		}
		toks := decode[[][]struct {
			ID int64 `json:"id"`
		}](t, g.post(t, "/tokenize", body))
		out := make([]int64, len(toks[0]))
		for i, tok := range toks[0] {
			out[i] = tok.ID
		}
		return out
	}
	// want is the last real token's hidden state of ids run alone, L2
	// normalized: what last-token pooling with Normalize gives.
	want := func(ids []int64) []float32 {
		b := &gateway.Batch{Rows: 1, Len: len(ids), InputIDs: ids, AttentionMask: make([]int64, len(ids))}
		for i := range b.AttentionMask {
			b.AttentionMask[i] = 1
		}
		out, err := reference.Embed(context.Background(), b)
		if err != nil {
			t.Fatal(err)
		}
		defer out.Free()
		h := out.Hidden
		vec := append([]float32(nil), out.Data[(len(ids)-1)*h:len(ids)*h]...)
		var sum float64
		for _, x := range vec {
			sum += float64(x) * float64(x)
		}
		for i := range vec {
			vec[i] = float32(float64(vec[i]) / math.Sqrt(sum))
		}
		return vec
	}
	texts := []string{"short", "a much longer text, so that the first row is padded on the right", "中文 text"}
	for _, model := range []string{"local", "remote"} {
		for _, prompt := range []string{"", "query"} {
			body := fmt.Sprintf(`{"inputs":["%s","%s","%s"],"model":%q}`, texts[0], texts[1], texts[2], model)
			if prompt != "" {
				body = fmt.Sprintf(`{"inputs":["%s","%s","%s"],"model":%q,"prompt_name":%q}`, texts[0], texts[1], texts[2], model, prompt)
			}
			r := g.post(t, "/api/v1/embed", body)
			if r.status != 200 {
				t.Fatalf("%s: %d %s", model, r.status, r.body)
			}
			got := decode[embedding](t, r).Data
			for i, text := range texts {
				fed := ids(model, text, prompt)
				if prompt == "query" && len(fed) <= len(ids(model, text, "")) {
					t.Fatalf("prompt %q did not lengthen %q", prompt, text)
				}
				assertClose(t, fmt.Sprintf("%s, prompt %q, %q", model, prompt, text), got[i].Embedding, want(fed), 1e-5)
			}
		}
	}
}
