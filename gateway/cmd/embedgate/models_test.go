package main

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/embedgate/embedgate/gateway/backend/onnx"
	"github.com/embedgate/embedgate/gateway/backend/triton/tritontest"
	"github.com/embedgate/embedgate/gateway/internal/testenv"
	"github.com/embedgate/embedgate/gateway/testmodel"
)

// twoModels writes the two models of the multi-model tests: bert (hidden
// 32, MiniLM's WordPiece tokenizer) and xlmr (hidden 16, XLM-R's unigram
// tokenizer), so a vector's length and a token id say which one served.
func twoModels(t *testing.T) (bert, xlmr string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "tokenizer", "testdata", "xlmr-unigram.json"))
	if err != nil {
		t.Fatal(err)
	}
	return testenv.TinyModel(t), testenv.TinyModel(t, testmodel.WithHidden(16), testmodel.WithTokenizer(data, 8005))
}

// runner opens dir's model on ONNX Runtime, for the Triton stand-in to run.
func runner(t *testing.T, dir string) *onnx.Backend {
	t.Helper()
	be, err := onnx.Open(onnx.Options{LibraryPath: testenv.ORTLib(t), ModelPath: filepath.Join(dir, "onnx", "model.onnx"),
		IntraOpThreads: 1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = be.Close() })
	return be
}

// catalogueEnv is baseEnv without the one-model flags.
func catalogueEnv(t *testing.T) map[string]string {
	env := baseEnv(t)
	delete(env, "MODEL_ID")
	return env
}

type embedding struct {
	Model string `json:"model"`
	Data  []struct {
		Embedding []float32 `json:"embedding"`
	} `json:"data"`
}

// dims embeds one text with model through the OpenAI route: the vector's
// length, or the status when it is not 200.
func (g *instance) dims(t *testing.T, model string, headers ...string) (int, response) {
	t.Helper()
	r := g.post(t, "/v1/embeddings", `{"input":"hello world","model":"`+model+`"}`, headers...)
	if r.status != 200 {
		return 0, r
	}
	return len(decode[embedding](t, r).Data[0].Embedding), r
}

func (g *instance) modelIDs(t *testing.T, headers ...string) []string {
	t.Helper()
	type modelList struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	list := decode[modelList](t, g.get(t, "/v1/models", headers...))
	var ids []string
	for _, m := range list.Data {
		ids = append(ids, m.ID)
	}
	slices.Sort(ids)
	return ids
}

// TestDiscovery: the gateway serves the models Triton's repository lists
// with hf_model_id, each with its own tokenizer and size; a model loaded
// later appears and one unloaded leaves, without a restart and without a
// failed request for the others.
func TestDiscovery(t *testing.T) {
	t.Parallel()
	bertDir, xlmrDir := twoModels(t)
	bert, xlmr := runner(t, bertDir), runner(t, xlmrDir)
	srv := tritontest.StartMulti(t,
		tritontest.WithModel("bert", bert, tritontest.ModelParameters(map[string]string{"hf_model_id": bertDir, "aliases": "text-embedding-3-small"})),
		tritontest.WithModel("xlmr", xlmr, tritontest.ModelParameters(map[string]string{"hf_model_id": xlmrDir})),
		tritontest.WithModel("late", bert, tritontest.ModelParameters(map[string]string{"hf_model_id": bertDir, "pooling": "cls"}), tritontest.ModelUnloaded()),
		tritontest.WithModel("raw", bert), // no hf_model_id: not served
	)
	env := catalogueEnv(t)
	env["TRITON_DISCOVER"], env["TRITON_URL"], env["TRITON_DISCOVER_INTERVAL"] = "true", srv.Addr(), "100ms"
	env["DEFAULT_MODEL"] = "bert"
	g := startGateway(t, env)

	if ids := g.modelIDs(t); !slices.Equal(ids, []string{"bert", "text-embedding-3-small", "xlmr"}) {
		t.Errorf("/v1/models = %v", ids)
	}
	for model, want := range map[string]int{"bert": 32, "text-embedding-3-small": 32, "xlmr": 16} {
		if got, r := g.dims(t, model); got != want {
			t.Errorf("model %s: %d dims (%d %s), want %d", model, got, r.status, r.body, want)
		}
	}
	if _, r := g.dims(t, "text-embedding-3-small"); decode[embedding](t, r).Model != "bert" {
		t.Errorf("an alias answers with the served name: got %s", r.body)
	}
	// Each model tokenizes with its own tokenizer: BERT's [CLS] is 101,
	// XLM-R's <s> is 0.
	for model, first := range map[string]int{"bert": 101, "xlmr": 0} {
		toks := decode[[][]struct {
			ID int `json:"id"`
		}](t, g.post(t, "/tokenize", `{"inputs":"hello","model":"`+model+`"}`))
		if toks[0][0].ID != first {
			t.Errorf("/tokenize with %s starts with id %d, want %d", model, toks[0][0].ID, first)
		}
	}
	if !strings.Contains(g.logs.String(), `triton_model=raw`) {
		t.Error("no log line for the Triton model without hf_model_id")
	}
	metrics := g.get(t, "/metrics").body
	for _, series := range []string{`embedgate_queue_tokens{model="bert",task="embed"}`, `embedgate_queue_tokens{model="xlmr",task="embed"}`} {
		if !strings.Contains(string(metrics), series) {
			t.Errorf("/metrics lacks %s", series)
		}
	}

	// The other model serves throughout the changes.
	var served, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if n, r := g.dims(t, "bert"); n == 32 {
				served.Add(1)
			} else {
				failed.Add(1)
				t.Errorf("bert during the changes: %d %s", r.status, r.body)
			}
		}
	})
	if err := srv.Load("late"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { n, _ := g.dims(t, "late"); return n == 32 }, "model late served after its load")
	if err := srv.Unload("xlmr"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, r := g.dims(t, "xlmr"); return r.status == 404 }, "model xlmr gone after its unload")
	close(stop)
	wg.Wait()
	if served.Load() == 0 || failed.Load() != 0 {
		t.Errorf("bert during the changes: %d served, %d failed", served.Load(), failed.Load())
	}
	if ids := g.modelIDs(t); !slices.Equal(ids, []string{"bert", "late", "text-embedding-3-small"}) {
		t.Errorf("/v1/models after the changes = %v", ids)
	}
}

// TestBothBackends: one catalogue, an onnx model in process and a Triton
// model, each serving its own vectors; /info shows both.
func TestBothBackends(t *testing.T) {
	t.Parallel()
	bertDir, xlmrDir := twoModels(t)
	srv := tritontest.StartMulti(t, tritontest.WithModel("xlmr-on-triton", runner(t, xlmrDir)))
	file := filepath.Join(t.TempDir(), "models.yaml")
	writeFile(t, file, fmt.Sprintf(`models:
  - name: local
    model_id: %s
    backend: onnx
  - name: remote
    aliases: [e5]
    model_id: %s
    backend: triton
    triton_model: xlmr-on-triton
    triton_url: %s
`, bertDir, xlmrDir, srv.Addr()))
	env := catalogueEnv(t)
	env["MODELS_FILE"] = file
	g := startGateway(t, env)
	for model, want := range map[string]int{"local": 32, "remote": 16, "e5": 16} {
		if got, r := g.dims(t, model); got != want {
			t.Errorf("model %s: %d dims (%d %s), want %d", model, got, r.status, r.body, want)
		}
	}
	// The native and TEI routes take model too; without it, the default.
	if r := g.post(t, "/embed", `{"inputs":"hi","model":"remote"}`); r.status != 200 || len(decode[[][]float32](t, r)[0]) != 16 {
		t.Errorf("TEI /embed with model remote = %d %s", r.status, r.body)
	}
	if r := g.post(t, "/embed", `{"inputs":"hi"}`); r.status != 200 || len(decode[[][]float32](t, r)[0]) != 32 {
		t.Errorf("TEI /embed without model = %d %s, want the default (local)", r.status, r.body)
	}
	info := decode[struct {
		ModelID string `json:"model_id"`
		Models  []struct {
			Name    string `json:"name"`
			Backend string `json:"backend"`
			State   string `json:"state"`
		} `json:"models"`
	}](t, g.get(t, "/info?model=e5"))
	if info.ModelID != xlmrDir || len(info.Models) != 2 {
		t.Errorf("/info?model=e5 = %+v", info)
	}
	for _, m := range info.Models {
		if m.State != "ready" || (m.Name == "remote") != (m.Backend == "triton") {
			t.Errorf("/info model %+v", m)
		}
	}
	// OpenAI's Python SDK asks for base64 vectors by default.
	r := g.post(t, "/v1/embeddings", `{"input":["a"],"model":"e5","encoding_format":"base64"}`,
		"Authorization", "Bearer sk-anything", "User-Agent", "OpenAI/Python 1.54.0", "X-Stainless-Lang", "python")
	type base64Embeddings struct {
		Data []struct {
			Embedding string `json:"embedding"`
		} `json:"data"`
	}
	b64 := decode[base64Embeddings](t, r)
	raw, err := base64.StdEncoding.DecodeString(b64.Data[0].Embedding)
	if err != nil || len(raw) != 16*4 || math.IsNaN(float64(math.Float32frombits(binary.LittleEndian.Uint32(raw)))) {
		t.Errorf("base64 embedding of e5: %d bytes, err %v", len(raw), err)
	}
	// A model whose backend is down fails alone (no-store: a vector the
	// cache holds would be served without the backend).
	srv.SetFault(tritontest.NotReady)
	if _, r := g.dims(t, "remote", "Cache-Control", "no-store"); r.status != 503 {
		t.Errorf("remote with Triton not ready = %d %s, want 503", r.status, r.body)
	}
	if n, r := g.dims(t, "local"); n != 32 {
		t.Errorf("local while Triton is not ready = %d %s, want 200", r.status, r.body)
	}
	srv.SetFault(tritontest.NoFault)
	waitFor(t, func() bool { n, _ := g.dims(t, "remote"); return n == 16 }, "remote back once Triton is ready")

	r = g.post(t, "/v1/embeddings", `{"input":"a","model":"gpt-4"}`)
	want := "{\"error\":{\"message\":\"The model `gpt-4` does not exist or you do not have access to it.\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"model_not_found\"}}"
	if r.status != 404 || strings.TrimSpace(string(r.body)) != want {
		t.Errorf("unknown model = %d %s, want 404 %s", r.status, r.body, want)
	}
}

// TestModelsFileReload: SIGHUP applies a models file that adds, removes
// and changes entries; a broken one keeps the catalogue and logs every
// problem.
func TestModelsFileReload(t *testing.T) {
	// Not parallel: it signals.
	bertDir, xlmrDir := twoModels(t)
	file := filepath.Join(t.TempDir(), "models.yaml")
	entry := func(name, dir, extra string) string {
		return fmt.Sprintf("  - name: %s\n    model_id: %s\n    backend: onnx\n%s", name, dir, extra)
	}
	writeFile(t, file, "models:\n"+entry("a", bertDir, "")+entry("b", xlmrDir, ""))
	env := catalogueEnv(t)
	env["MODELS_FILE"] = file
	g := startGateway(t, env)
	if n, r := g.dims(t, "b"); n != 16 {
		t.Fatalf("b = %d %s", r.status, r.body)
	}

	writeFile(t, file, "models:\n"+entry("a", bertDir, "    aliases: [ada]\n")+entry("c", xlmrDir, ""))
	g.signal(t, syscall.SIGHUP)
	waitFor(t, func() bool { n, _ := g.dims(t, "c"); return n == 16 }, "model c after SIGHUP")
	waitFor(t, func() bool { _, r := g.dims(t, "b"); return r.status == 404 }, "model b gone after SIGHUP")
	if n, r := g.dims(t, "ada"); n != 32 {
		t.Errorf("a's new alias = %d %s", r.status, r.body)
	}

	writeFile(t, file, "models:\n"+entry("d", bertDir, "    colour: blue\n")+"  - name: e\n    backend: onnx\n")
	g.signal(t, syscall.SIGHUP)
	waitFor(t, func() bool { return strings.Contains(g.logs.String(), "models file not reloaded") }, "the broken file's log line")
	logs := g.logs.String()
	for _, problem := range []string{"colour", `models[1] (\"e\")`} {
		if !strings.Contains(logs, problem) {
			t.Errorf("the log does not name the problem %s", problem)
		}
	}
	for model, want := range map[string]int{"a": 32, "ada": 32, "c": 16} {
		if got, r := g.dims(t, model); got != want {
			t.Errorf("after the broken file, %s = %d %s", model, r.status, r.body)
		}
	}
}

// TestKeyModelAccess: a key sees and uses only the models of its
// allow-list; the others are 404, as if they did not exist.
func TestKeyModelAccess(t *testing.T) {
	t.Parallel()
	bertDir, xlmrDir := twoModels(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "models.yaml"), fmt.Sprintf("models:\n  - {name: a, model_id: %s, backend: onnx}\n  - {name: b, aliases: [bee], model_id: %s, backend: onnx}\n", bertDir, xlmrDir))
	writeFile(t, filepath.Join(dir, "keys.yaml"), "keys:\n  - {name: alice, key: sk-alice, models: [bee]}\n  - {name: bob, key: sk-bob}\n")
	env := catalogueEnv(t)
	env["MODELS_FILE"], env["API_KEYS_FILE"] = filepath.Join(dir, "models.yaml"), filepath.Join(dir, "keys.yaml")
	g := startGateway(t, env)
	alice, bob := []string{"Authorization", "Bearer sk-alice"}, []string{"Authorization", "Bearer sk-bob"}
	if ids := g.modelIDs(t, alice...); !slices.Equal(ids, []string{"b", "bee"}) {
		t.Errorf("alice's /v1/models = %v", ids)
	}
	if ids := g.modelIDs(t, bob...); !slices.Equal(ids, []string{"a", "b", "bee"}) {
		t.Errorf("bob's /v1/models = %v", ids)
	}
	if _, r := g.dims(t, "a", alice...); r.status != 404 || !strings.Contains(string(r.body), "model_not_found") {
		t.Errorf("alice on a = %d %s, want 404 model_not_found", r.status, r.body)
	}
	if n, r := g.dims(t, "b", alice...); n != 16 {
		t.Errorf("alice on b = %d %s", r.status, r.body)
	}
	if n, r := g.dims(t, "a", bob...); n != 32 {
		t.Errorf("bob on a = %d %s", r.status, r.body)
	}
}

// TestModelsCommand: `embedgate models` prints the catalogue and fails on
// a model that would not serve.
func TestModelsCommand(t *testing.T) {
	t.Parallel()
	bertDir, xlmrDir := twoModels(t)
	dir := t.TempDir()
	good := fmt.Sprintf("models:\n  - {name: a, aliases: [ada], model_id: %s, backend: onnx}\n  - {name: b, model_id: %s, backend: onnx}\n", bertDir, xlmrDir)
	writeFile(t, filepath.Join(dir, "good.yaml"), good)
	writeFile(t, filepath.Join(dir, "bad.yaml"), good+"  - {name: c, model_id: "+filepath.Join(dir, "missing")+", backend: onnx}\n")
	models := func(file string) (string, error) {
		env := catalogueEnv(t)
		env["MODELS_FILE"] = file
		var out strings.Builder
		err := run(context.Background(), []string{"embedgate", "models"}, func(k string) string { return env[k] }, nil, &out, io.Discard, noSignals)
		return out.String(), err
	}
	out, err := models(filepath.Join(dir, "good.yaml"))
	if err != nil {
		t.Fatalf("embedgate models = %v\n%s", err, out)
	}
	for _, want := range []string{"a (default)", "ada", "32", "16", "onnx", "file " + filepath.Join(dir, "good.yaml")} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	out, err = models(filepath.Join(dir, "bad.yaml"))
	if err == nil || !strings.Contains(err.Error(), `model "c"`) || !strings.Contains(out, "b") {
		t.Errorf("embedgate models with a missing model = %v\n%s", err, out)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
