package server

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/ratelimit"
)

// rerankRoutes are the three rerank routes with a body of two documents
// in each one's shape, the model field spliced in by body.
var rerankRoutes = []struct {
	path string
	body func(model string) string // model "-" = no model field
}{
	{"/rerank", func(m string) string { return `{"query":"q",` + modelField(m) + `"texts":["a","bb"]}` }},
	{"/v1/rerank", func(m string) string { return `{"query":"q",` + modelField(m) + `"documents":["a",{"text":"bb"}]}` }},
	{"/v2/rerank", func(m string) string { return `{"query":"q",` + modelField(m) + `"documents":["a","bb"]}` }},
}

func modelField(m string) string {
	if m == "-" {
		return ""
	}
	return `"model":"` + m + `",`
}

// rerankCatalog serves bge (embeds, the default), then rr and rr2
// (rerank), by strict names; each reranker notes the requests it gets.
func rerankCatalog() (cat *fakeCatalog, got map[string]*[]*gateway.RerankRequest) {
	got = map[string]*[]*gateway.RerankRequest{}
	reranker := func(name string) served {
		f := newFake()
		f.info = gateway.Info{ModelID: "BAAI/" + name, MaxInputLength: 32, Backend: "onnx", State: "ready", Task: gateway.TaskRerank}
		seen := &[]*gateway.RerankRequest{}
		got[name] = seen
		return served{names: []string{name}, task: gateway.TaskRerank, eng: &recordingEngine{fakeEngine: f, seen: seen}}
	}
	bge := newFake()
	bge.info.Task = gateway.TaskEmbed
	return &fakeCatalog{models: []served{
		{names: []string{"bge", "text-embedding-3-small"}, task: gateway.TaskEmbed, eng: bge},
		reranker("rr"),
		reranker("rr2"),
	}}, got
}

// recordingEngine is a fake that notes every rerank request it gets.
type recordingEngine struct {
	*fakeEngine
	seen *[]*gateway.RerankRequest
}

func (r *recordingEngine) Rerank(ctx context.Context, req *gateway.RerankRequest) (*gateway.RerankResult, error) {
	*r.seen = append(*r.seen, req)
	return r.fakeEngine.Rerank(ctx, req)
}

// checkWrongTask checks the answer to a request for a model of the other
// task: 400 in the route's dialect, 424 on TEI's routes, naming the model.
func checkWrongTask(t *testing.T, path string, resp *http.Response, body []byte, want string) {
	t.Helper()
	status, msg := 400, ""
	switch {
	case path == "/rerank" || path == "/embed" || path == "/":
		status = 424
		var e struct {
			Error     string `json:"error"`
			ErrorType string `json:"error_type"`
		}
		mustJSON(t, body, &e)
		if e.ErrorType != "Backend" {
			t.Errorf("%s: error_type %q, want Backend as TEI (%s)", path, e.ErrorType, body)
		}
		msg = e.Error
	case strings.HasSuffix(path, "/rerank"):
		var e map[string]string
		mustJSON(t, body, &e)
		if len(e) != 1 {
			t.Errorf("%s: body %s, want Cohere's {\"message\"} alone", path, body)
		}
		msg = e["message"]
	default:
		msg = checkErrorShape(t, path, body, map[bool]string{true: "invalid_request_error", false: "Validation"}[isOpenAI(path)])
	}
	if resp.StatusCode != status || msg != want {
		t.Errorf("%s: %d %q, want %d %q", path, resp.StatusCode, msg, status, want)
	}
}

const (
	notReranker = "model `bge` is an embedding model: it does not rerank (model is not a re-ranker model)"
	notEmbedder = "model `rr` is a rerank model: it does not embed"
)

// Every rerank route picks its model by name, and a request naming none
// goes to the first reranker, not to the default model, which embeds;
// models of the wrong task are refused both ways, naming them.
func TestRerankRouting(t *testing.T) {
	cat, got := rerankCatalog()
	s := newCatalogServer(t, cat, nil, nil)
	for _, r := range rerankRoutes {
		for model, want := range map[string]string{"-": "rr", "": "rr", "rr": "rr", "rr2": "rr2"} {
			t.Run(r.path+"/"+model, func(t *testing.T) {
				before := len(*got[want])
				resp, b := s.post(t, r.path, r.body(model))
				if resp.StatusCode != 200 || len(*got[want]) != before+1 {
					t.Fatalf("POST %s %s = %d %s; want 200 from %s", r.path, r.body(model), resp.StatusCode, b, want)
				}
				req := (*got[want])[before]
				if req.Query != "q" || !slices.Equal(req.Documents, []string{"a", "bb"}) || req.Charge != nil {
					t.Errorf("%s got %+v, want query q, documents [a bb] and no charge without limits", want, req)
				}
				// The fake's usage: len(query)+len(doc) per pair.
				if h := resp.Header.Get("x-compute-tokens"); h != "5" || resp.Header.Get("x-inference-time") == "" || resp.Header.Get("x-total-time") == "" {
					t.Errorf("headers x-compute-tokens %q, x-inference-time %q: want 5 and timings", h, resp.Header.Get("x-inference-time"))
				}
				lines := logLines(t, s.logs)
				if l := lines[len(lines)-1]; l["model"] != want || l["task"] != "rerank" || l["inputs"] != 2.0 || l["tokens"] != 5.0 {
					t.Errorf("log line %v, want model %s, task rerank, 2 inputs, 5 tokens", l, want)
				}
			})
		}
		t.Run(r.path+"/embedder", func(t *testing.T) {
			resp, b := s.post(t, r.path, r.body("text-embedding-3-small"))
			checkWrongTask(t, r.path, resp, b, notReranker)
		})
		t.Run(r.path+"/unknown", func(t *testing.T) {
			resp, b := s.post(t, r.path, r.body("nope"))
			if want := "The model `nope` does not exist or you do not have access to it."; resp.StatusCode != 404 || !strings.Contains(string(b), want) {
				t.Errorf("POST %s model nope = %d %s, want 404 %q", r.path, resp.StatusCode, b, want)
			}
		})
	}
	for path, body := range map[string]string{
		"/api/v1/embed": `{"inputs":"a","model":"rr"}`, "/embed": `{"inputs":"a","model":"rr"}`, "/": `{"inputs":"a","model":"rr"}`,
		"/v1/embeddings": `{"input":"a","model":"rr"}`, "/embeddings": `{"input":"a","model":"rr"}`,
	} {
		resp, b := s.post(t, path, body)
		checkWrongTask(t, path, resp, b, notEmbedder)
	}
	// A wrong method on Cohere's paths answers in Cohere's shape too.
	for _, path := range []string{"/v1/rerank", "/v2/rerank"} {
		resp, b := s.do(t, http.MethodGet, path, "", "")
		var e map[string]string
		mustJSON(t, b, &e)
		if resp.StatusCode != 405 || len(e) != 1 || !strings.Contains(e["message"], "not allowed") {
			t.Errorf("GET %s = %d %s, want 405 {\"message\"}", path, resp.StatusCode, b)
		}
	}
	// Embedding routes without a model keep the default model.
	if resp, b := s.post(t, "/embed", `{"inputs":"a"}`); resp.StatusCode != 200 {
		t.Errorf("POST /embed = %d %s, want the default model's 200", resp.StatusCode, b)
	}
}

// Without a reranker, a rerank request naming no model is refused as the
// default model's wrong task: the client learns nothing here reranks.
// With a reranker alone (the one-model flags on a cross-encoder), any
// name finds it, and embedding routes are refused.
func TestRerankOneModel(t *testing.T) {
	t.Run("embedder", func(t *testing.T) {
		s := newTestServer(t, newFake(), nil, nil)
		for _, r := range rerankRoutes {
			resp, b := s.post(t, r.path, r.body("-"))
			checkWrongTask(t, r.path, resp, b, "model `fake-model` is an embedding model: it does not rerank (model is not a re-ranker model)")
		}
	})
	t.Run("reranker", func(t *testing.T) {
		f := newFake()
		f.info.Task = gateway.TaskRerank
		cat := oneModel(f)
		cat.models[0].task = gateway.TaskRerank
		s := newCatalogServer(t, cat, nil, nil)
		for _, r := range rerankRoutes {
			if resp, b := s.post(t, r.path, r.body("rerank-english-v3.0")); resp.StatusCode != 200 {
				t.Errorf("POST %s with any model = %d %s, want 200", r.path, resp.StatusCode, b)
			}
		}
		resp, b := s.post(t, "/v1/embeddings", `{"input":"a"}`)
		checkWrongTask(t, "/v1/embeddings", resp, b, "model `fake-model` is a rerank model: it does not embed")
	})
}

// The rerank routes are behind the key and the limits: a key that may not
// use the reranker gets 404 (not its task), and every pair's tokens are
// charged to the tokens per minute.
func TestRerankGuards(t *testing.T) {
	cat, _ := rerankCatalog()
	s := newCatalogServer(t, cat, modelKeys(t), ratelimit.NewMemory(ratelimit.MemoryOptions{}))
	for _, r := range rerankRoutes {
		t.Run(r.path, func(t *testing.T) {
			if resp, b := s.post(t, r.path, r.body("-")); resp.StatusCode != 401 {
				t.Errorf("without a key = %d %s, want 401", resp.StatusCode, b)
			}
			// e5-only may use neither bge nor rr: the reranker it would get
			// is not found, whatever its task.
			resp, b := s.post(t, r.path, r.body("-"), bearer(e5OnlyKey)...)
			if want := "The model `rr` does not exist"; resp.StatusCode != 404 || !strings.Contains(string(b), want) {
				t.Errorf("key without the reranker = %d %s, want 404 %q", resp.StatusCode, b, want)
			}
			resp, b = s.post(t, r.path, r.body("bge"), bearer(e5OnlyKey)...)
			if resp.StatusCode != 404 {
				t.Errorf("key without bge asking bge to rerank = %d %s, want 404 before its task", resp.StatusCode, b)
			}
			if resp, b := s.post(t, r.path, r.body("-"), bearer(teamAKey)...); resp.StatusCode != 200 {
				t.Errorf("team-a = %d %s, want 200", resp.StatusCode, b)
			}
		})
	}
	// small has 10 tokens a minute: a query of 8 and two documents make
	// 18 tokens of pairs (the fake counts bytes).
	resp, b := s.post(t, "/v1/rerank", `{"query":"qqqqqqqq","documents":["a","b"]}`, bearer(smallKey)...)
	var e map[string]string
	mustJSON(t, b, &e)
	if resp.StatusCode != 429 || !strings.Contains(e["message"], "tokens") {
		t.Errorf("18 tokens of pairs on 10 a minute = %d %s, want 429 on tokens", resp.StatusCode, b)
	}
}

func TestRerankDraining(t *testing.T) {
	cat, _ := rerankCatalog()
	s := newCatalogServer(t, cat, nil, nil)
	s.Drain()
	for _, r := range rerankRoutes {
		resp, b := s.post(t, r.path, r.body("-"))
		if resp.StatusCode != 503 || !resp.Close {
			t.Errorf("POST %s while draining = %d %s (close %v), want 503 closing the connection", r.path, resp.StatusCode, b, resp.Close)
		}
	}
}

// /v1/models says each name's task; /info each model's.
func TestModelsListTasks(t *testing.T) {
	cat, _ := rerankCatalog()
	s := newCatalogServer(t, cat, nil, nil)
	_, b := s.do(t, http.MethodGet, "/v1/models", "", "")
	var list struct{ Data []struct{ ID, Task string } }
	mustJSON(t, b, &list)
	var got []string
	for _, m := range list.Data {
		got = append(got, m.ID+":"+m.Task)
	}
	if want := []string{"bge:embed", "text-embedding-3-small:embed", "rr:rerank", "rr2:rerank"}; !slices.Equal(got, want) {
		t.Errorf("GET /v1/models = %v, want %v", got, want)
	}
	_, b = s.do(t, http.MethodGet, "/v1/models/rr", "", "")
	var one struct{ ID, Task string }
	mustJSON(t, b, &one)
	if one.ID != "rr" || one.Task != "rerank" {
		t.Errorf("GET /v1/models/rr = %s, want task rerank", b)
	}
	_, b = s.do(t, http.MethodGet, "/info?model=rr", "", "")
	var info struct {
		ModelID   string                     `json:"model_id"`
		ModelType map[string]json.RawMessage `json:"model_type"`
		Models    []struct{ Name, Task string }
	}
	mustJSON(t, b, &info)
	got = nil
	for _, m := range info.Models {
		got = append(got, m.Name+":"+m.Task)
	}
	if _, ok := info.ModelType["reranker"]; info.ModelID != "BAAI/rr" || !ok || len(info.ModelType) != 1 ||
		!slices.Equal(got, []string{"bge:embed", "rr:rerank", "rr2:rerank"}) {
		t.Errorf("GET /info?model=rr = %s, want rr's, model_type reranker, and every model's task", b)
	}
}
