package main

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/backend/onnx"
	"github.com/embedgate/embedgate/gateway/pooling"
	"github.com/embedgate/embedgate/gateway/tokenizer"
)

type nativeResponse struct {
	Data []struct {
		Embedding []float32 `json:"embedding"`
		Index     int       `json:"index"`
	} `json:"data"`
	Usage struct {
		PromptTokens int `json:"prompt_tokens"`
		TotalTokens  int `json:"total_tokens"`
	} `json:"usage"`
	Timings map[string]any `json:"timings"`
}

type openaiResponse struct {
	Object string `json:"object"`
	Model  string `json:"model"`
	Data   []struct {
		Object    string          `json:"object"`
		Embedding json.RawMessage `json:"embedding"`
		Index     int             `json:"index"`
	} `json:"data"`
	Usage struct {
		PromptTokens int `json:"prompt_tokens"`
		TotalTokens  int `json:"total_tokens"`
	} `json:"usage"`
}

// golden holds embeddings of the tiny model computed by an independent
// float64 re-implementation (scripts/reference_model.py).
type golden struct {
	Cases []struct {
		IDs               []int32   `json:"ids"`
		TypeIDs           []int32   `json:"type_ids"`
		SentenceEmbedding []float32 `json:"sentence_embedding"`
	} `json:"cases"`
}

func loadGolden(t *testing.T) golden {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	data, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "backend", "onnx", "testdata", "golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	return g
}

func assertClose(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d dims, want %d", what, len(got), len(want))
	}
	for i := range got {
		if d := math.Abs(float64(got[i] - want[i])); d > tol {
			t.Fatalf("%s: dim %d = %v, want %v (diff %g > %g)", what, i, got[i], want[i], d, tol)
		}
	}
}

func norm(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

func TestEmbedMatchesGolden(t *testing.T) {
	t.Parallel()
	g := startGateway(t, baseEnv(t))
	gold := loadGolden(t)
	checked := 0
	for i, c := range gold.Cases {
		zeros := true
		for _, ty := range c.TypeIDs {
			zeros = zeros && ty == 0
		}
		if !zeros {
			continue // token-id inputs carry no type ids
		}
		ids, _ := json.Marshal(c.IDs)
		r := g.post(t, "/embed", `{"inputs":`+string(ids)+`}`)
		if r.status != 200 {
			t.Fatalf("case %d: status %d: %s", i, r.status, r.body)
		}
		got := decode[[][]float32](t, r)
		assertClose(t, fmt.Sprintf("case %d", i), got[0], c.SentenceEmbedding, 1e-5)
		checked++
	}
	if checked < 2 {
		t.Fatalf("checked %d golden cases, want at least 2", checked)
	}
	// "Hello world!" tokenizes to the first golden case's ids.
	r := g.post(t, "/embed", `{"inputs":"Hello world!"}`)
	got := decode[[][]float32](t, r)
	assertClose(t, "Hello world!", got[0], gold.Cases[0].SentenceEmbedding, 1e-5)
}

// TestEmbedMatchesDirectBackend checks the whole pipeline against running
// the backend by hand on the same tokens.
func TestEmbedMatchesDirectBackend(t *testing.T) {
	t.Parallel()
	env := baseEnv(t)
	g := startGateway(t, env)
	tok, err := tokenizer.LoadFile(filepath.Join(env["MODEL_ID"], "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	be, err := onnx.Open(onnx.Options{LibraryPath: env["ORT_LIB"], ModelPath: filepath.Join(env["MODEL_ID"], "onnx", "model.onnx"), IntraOpThreads: 1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	texts := []string{"The quick brown fox jumps over the lazy dog.", "short", "Embeddings à la carte: naïve café"}
	body, _ := json.Marshal(map[string]any{"inputs": texts})
	res := decode[nativeResponse](t, g.post(t, "/api/v1/embed", string(body)))
	for i, text := range texts {
		enc := tok.Encode(text, tokenizer.EncodeOptions{AddSpecialTokens: true})
		b := &gateway.Batch{Rows: 1, Len: len(enc.IDs)}
		for j, id := range enc.IDs {
			b.InputIDs = append(b.InputIDs, int64(id))
			b.AttentionMask = append(b.AttentionMask, 1)
			b.TokenTypeIDs = append(b.TokenTypeIDs, int64(enc.TypeIDs[j]))
		}
		out, err := be.Embed(context.Background(), b)
		if err != nil {
			t.Fatal(err)
		}
		want := make([]float32, out.Hidden)
		pooling.Pool(want, out.Data, b.AttentionMask, b.Len, out.Hidden, pooling.Mean)
		pooling.Normalize(want)
		if res.Data[i].Index != i {
			t.Errorf("data[%d].index = %d", i, res.Data[i].Index)
		}
		assertClose(t, text, res.Data[i].Embedding, want, 1e-5)
	}
}

func TestNativeRoute(t *testing.T) {
	t.Parallel()
	g := startGateway(t, baseEnv(t))
	long := strings.Repeat("word ", 600)

	r := g.post(t, "/api/v1/embed", `{"inputs":["a b c","hello there","x"]}`)
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	res := decode[nativeResponse](t, r)
	if len(res.Data) != 3 {
		t.Fatalf("got %d items", len(res.Data))
	}
	for i, d := range res.Data {
		if d.Index != i || len(d.Embedding) != 32 || math.Abs(norm(d.Embedding)-1) > 1e-5 {
			t.Errorf("data[%d]: index %d, %d dims, norm %v", i, d.Index, len(d.Embedding), norm(d.Embedding))
		}
	}
	// [CLS] a b c [SEP] + [CLS] hello there [SEP] + [CLS] x [SEP]
	if res.Usage.PromptTokens != 12 || res.Usage.TotalTokens != 12 {
		t.Errorf("usage = %+v, want 12 tokens", res.Usage)
	}
	for _, k := range []string{"tokenization", "queue", "inference"} {
		if s, _ := res.Timings[k].(string); s == "" {
			t.Errorf("timings lack %q: %v", k, res.Timings)
		}
	}
	for _, h := range []string{"x-compute-tokens", "x-compute-characters", "x-total-time", "x-tokenization-time", "x-queue-time", "x-inference-time", "x-request-id"} {
		if r.header.Get(h) == "" {
			t.Errorf("missing header %s", h)
		}
	}
	if got := r.header.Get("x-compute-tokens"); got != "12" {
		t.Errorf("x-compute-tokens = %q, want 12", got)
	}

	t.Run("dimensions and normalize", func(t *testing.T) {
		full := decode[nativeResponse](t, g.post(t, "/api/v1/embed", `{"inputs":"hello there","normalize":false}`))
		cut := decode[nativeResponse](t, g.post(t, "/api/v1/embed", `{"inputs":"hello there","dimensions":8}`))
		raw := full.Data[0].Embedding
		if math.Abs(norm(raw)-1) < 1e-3 {
			t.Errorf("normalize false gave a unit vector (norm %v)", norm(raw))
		}
		want := pooling.Shape(raw, 8, true)
		assertClose(t, "dimensions 8", cut.Data[0].Embedding, want, 1e-6)
	})
	t.Run("truncation both sides", func(t *testing.T) {
		right := decode[nativeResponse](t, g.post(t, "/api/v1/embed", `{"inputs":"`+long+`","truncate":true}`))
		left := decode[nativeResponse](t, g.post(t, "/api/v1/embed", `{"inputs":"`+long+`","truncate":true,"truncation_direction":"left"}`))
		if right.Usage.PromptTokens != 512 || left.Usage.PromptTokens != 512 {
			t.Errorf("truncated usage right %d left %d, want 512", right.Usage.PromptTokens, left.Usage.PromptTokens)
		}
		r := g.post(t, "/api/v1/embed", `{"inputs":["ok","`+long+`"],"truncate":false}`)
		if r.status != 422 || !strings.Contains(string(r.body), "inputs[1]") || !strings.Contains(string(r.body), "602") || !strings.Contains(string(r.body), "512") {
			t.Errorf("too long without truncate: %d %s; want 422 naming inputs[1], 602 and 512", r.status, r.body)
		}
	})
	t.Run("prompt name", func(t *testing.T) {
		plain := decode[nativeResponse](t, g.post(t, "/api/v1/embed", `{"inputs":"hello"}`))
		withPrompt := decode[nativeResponse](t, g.post(t, "/api/v1/embed", `{"inputs":"hello","prompt_name":"query"}`))
		manual := decode[nativeResponse](t, g.post(t, "/api/v1/embed", `{"inputs":"query: hello"}`))
		if withPrompt.Usage.PromptTokens != plain.Usage.PromptTokens+2 {
			t.Errorf("prompt tokens %d vs %d, want 2 more", withPrompt.Usage.PromptTokens, plain.Usage.PromptTokens)
		}
		assertClose(t, "prompt", withPrompt.Data[0].Embedding, manual.Data[0].Embedding, 1e-6)
	})
}

func TestPaddingInvariance(t *testing.T) {
	t.Parallel()
	g := startGateway(t, baseEnv(t))
	alone := decode[[][]float32](t, g.post(t, "/embed", `{"inputs":"a short one"}`))
	batched := decode[[][]float32](t, g.post(t, "/embed", `{"inputs":["a short one","`+strings.Repeat("a much longer neighbour ", 40)+`"]}`))
	assertClose(t, "padded", batched[0], alone[0], 1e-5)
}

func TestOpenAIRoute(t *testing.T) {
	t.Parallel()
	g := startGateway(t, baseEnv(t))
	floats := decode[openaiResponse](t, g.post(t, "/v1/embeddings", `{"input":["first","second"],"model":"tiny","encoding_format":"float"}`))
	b64 := decode[openaiResponse](t, g.post(t, "/embeddings", `{"input":["first","second"],"model":"tiny","encoding_format":"base64"}`))
	if floats.Object != "list" || len(floats.Data) != 2 || floats.Data[1].Index != 1 || floats.Data[0].Object != "embedding" {
		t.Fatalf("response %+v", floats)
	}
	if floats.Usage.PromptTokens != 6 || floats.Usage.TotalTokens != 6 {
		t.Errorf("usage = %+v, want 6", floats.Usage)
	}
	for i := range floats.Data {
		var want []float32
		if err := json.Unmarshal(floats.Data[i].Embedding, &want); err != nil {
			t.Fatal(err)
		}
		var s string
		if err := json.Unmarshal(b64.Data[i].Embedding, &s); err != nil {
			t.Fatalf("base64 embedding is not a string: %s", b64.Data[i].Embedding)
		}
		raw, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(raw) != 4*len(want) {
			t.Fatalf("base64 %d bytes, err %v; want %d", len(raw), err, 4*len(want))
		}
		got := make([]float32, len(want))
		for k := range got {
			got[k] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*k:]))
		}
		assertClose(t, "base64", got, want, 0)
	}
	// Token ids and the dimensions field.
	ids := decode[openaiResponse](t, g.post(t, "/v1/embeddings", `{"input":[[101,7592,2088,999,102]],"model":"tiny","dimensions":4}`))
	var v []float32
	if err := json.Unmarshal(ids.Data[0].Embedding, &v); err != nil || len(v) != 4 || ids.Usage.PromptTokens != 5 {
		t.Errorf("ids with dimensions 4: %s, usage %+v", ids.Data[0].Embedding, ids.Usage)
	}
	models := decode[struct {
		Object string `json:"object"`
		Data   []struct {
			ID     string `json:"id"`
			Object string `json:"object"`
		} `json:"data"`
	}](t, g.get(t, "/v1/models"))
	if models.Object != "list" || len(models.Data) != 1 || models.Data[0].Object != "model" {
		t.Errorf("/v1/models = %+v", models)
	}
}

func TestTEIRoutes(t *testing.T) {
	t.Parallel()
	g := startGateway(t, baseEnv(t))
	text := decode[[][]float32](t, g.post(t, "/embed", `{"inputs":["Hello world!","x"]}`))
	ids := decode[[][]float32](t, g.post(t, "/embed", `{"inputs":[[101,7592,2088,999,102],[101,1060,102]]}`))
	single := decode[[][]float32](t, g.post(t, "/embed", `{"inputs":[101,7592,2088,999,102]}`))
	assertClose(t, "ids vs text", ids[0], text[0], 1e-6)
	assertClose(t, "ids vs text 2", ids[1], text[1], 1e-6)
	assertClose(t, "single ids", single[0], text[0], 1e-6)

	toks := decode[[][]struct {
		ID      int    `json:"id"`
		Text    string `json:"text"`
		Special bool   `json:"special"`
		Start   int    `json:"start"`
		Stop    int    `json:"stop"`
	}](t, g.post(t, "/tokenize", `{"inputs":"Hello world!"}`))
	if len(toks) != 1 || len(toks[0]) != 5 {
		t.Fatalf("/tokenize = %+v", toks)
	}
	want := []struct {
		id          int
		text        string
		special     bool
		start, stop int
	}{{101, "[CLS]", true, 0, 0}, {7592, "Hello", false, 0, 5}, {2088, "world", false, 6, 11}, {999, "!", false, 11, 12}, {102, "[SEP]", true, 0, 0}}
	for i, w := range want {
		got := toks[0][i]
		if got.ID != w.id || got.Text != w.text || got.Special != w.special || got.Start != w.start || got.Stop != w.stop {
			t.Errorf("token %d = %+v, want %+v", i, got, w)
		}
	}
	info := decode[map[string]any](t, g.get(t, "/info"))
	for _, k := range []string{"model_id", "max_input_length", "max_batch_tokens", "max_client_batch_size", "version"} {
		if _, ok := info[k]; !ok {
			t.Errorf("/info lacks %q: %v", k, info)
		}
	}
	if r := g.get(t, "/health"); r.status != 200 {
		t.Errorf("/health = %d %s", r.status, r.body)
	}
	if r := g.get(t, "/metrics"); r.status != 200 || !strings.Contains(string(r.body), "embedgate_batch_size") || !strings.Contains(string(r.body), "go_goroutines") {
		t.Errorf("/metrics = %d, want pipeline and Go metrics", r.status)
	}
}
