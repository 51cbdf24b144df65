package server

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/auth"
	"github.com/embedgate/embedgate/gateway/fleet"
	"github.com/embedgate/embedgate/gateway/ratelimit"
)

// fakeCatalog serves fixed models, the default first, by the fleet's
// rules: a name or alias finds its model, "" the default, and in lenient
// (one-model) mode any name the default.
type fakeCatalog struct {
	models  []served
	lenient bool
}

func (c *fakeCatalog) lookup(name string) (served, bool) {
	if len(c.models) == 0 {
		return served{}, false
	}
	if name == "" {
		return c.models[0], true
	}
	for _, m := range c.models {
		if slices.Contains(m.names, name) {
			return m, true
		}
	}
	if c.lenient {
		return c.models[0], true
	}
	return served{}, false
}

// defaultFor is fleet.DefaultFor's rule: the default if it does task,
// else the first (in order) that does.
func (c *fakeCatalog) defaultFor(task string) (served, bool) {
	for _, m := range c.models {
		if m.task == task {
			return m, true
		}
	}
	return served{}, false
}

func (c *fakeCatalog) list() []served { return slices.Clone(c.models) }

func (c *fakeCatalog) single() (served, bool) {
	if len(c.models) != 1 {
		return served{}, false
	}
	return c.models[0], true
}

// twoModels are bge (the default, 4 dimensions, also called
// text-embedding-3-small) and e5 (6 dimensions, also called
// intfloat/e5-small-v2), by strict names.
func twoModels() (cat *fakeCatalog, bge, e5 *fakeEngine) {
	bge = newFake()
	bge.info = gateway.Info{ModelID: "BAAI/bge-small-en-v1.5", Dimensions: 4, MaxInputLength: 32, Backend: "onnx", State: "ready", Task: gateway.TaskEmbed}
	e5 = newFake()
	e5.lim.Dimensions = 6
	e5.info = gateway.Info{ModelID: "/models/e5", Dimensions: 6, MaxInputLength: 512, Backend: "triton", State: "loading", Task: gateway.TaskEmbed}
	e5.tokenize = func(_ context.Context, req *gateway.TokenizeRequest) ([][]gateway.Token, error) {
		return [][]gateway.Token{{{ID: 5, Text: "e5"}}}, nil
	}
	return &fakeCatalog{models: []served{
		{names: []string{"bge", "text-embedding-3-small"}, task: gateway.TaskEmbed, eng: bge},
		{names: []string{"e5", "intfloat/e5-small-v2"}, task: gateway.TaskEmbed, eng: e5},
	}}, bge, e5
}

// dims is the length of the first vector of an embedding response on path.
func dims(t *testing.T, path string, body []byte) (n int, model string) {
	t.Helper()
	switch {
	case isOpenAI(path):
		var r struct {
			Data  []struct{ Embedding []float32 }
			Model string
		}
		mustJSON(t, body, &r)
		return len(r.Data[0].Embedding), r.Model
	case path == "/api/v1/embed":
		var r struct {
			Data []struct{ Embedding []float32 }
		}
		mustJSON(t, body, &r)
		return len(r.Data[0].Embedding), ""
	}
	var r [][]float32
	mustJSON(t, body, &r)
	return len(r[0]), ""
}

// checkModelNotFound checks a 404 for an unknown model in path's dialect
// and that its message names model.
func checkModelNotFound(t *testing.T, path string, resp *http.Response, body []byte, model string) {
	t.Helper()
	if resp.StatusCode != 404 {
		t.Fatalf("%s: status = %d, want 404 (%s)", path, resp.StatusCode, body)
	}
	if isOpenAI(path) {
		var e openAIError
		mustJSON(t, body, &e)
		if e.Error.Type != "invalid_request_error" || e.Error.Code == nil || *e.Error.Code != "model_not_found" || e.Error.Param != nil {
			t.Errorf("%s: body %s, want type invalid_request_error, code model_not_found, param null", path, body)
		}
	}
	msg := checkErrorShape(t, path, body, map[bool]string{true: "invalid_request_error", false: "NotFound"}[isOpenAI(path)])
	if want := "The model `" + model + "` does not exist or you do not have access to it."; msg != want {
		t.Errorf("%s: message %q, want %q", path, msg, want)
	}
}

// Every embedding route picks the model by name or alias; no model is the
// default; an unknown one is 404 model_not_found in the route's dialect.
func TestRouting(t *testing.T) {
	cat, _, _ := twoModels()
	s := newCatalogServer(t, cat, nil, nil)
	routes := []struct{ path, field string }{
		{"/api/v1/embed", "inputs"}, {"/embed", "inputs"}, {"/", "inputs"}, {"/v1/embeddings", "input"}, {"/embeddings", "input"},
	}
	cases := []struct {
		name, model string // model "-" = no model field
		dims        int
		served      string
	}{
		{"default", "-", 4, "bge"},
		{"empty is default", "", 4, "bge"},
		{"by name", "e5", 6, "e5"},
		{"by alias", "text-embedding-3-small", 4, "bge"},
		{"alias with a slash", "intfloat/e5-small-v2", 6, "e5"},
	}
	for _, r := range routes {
		for _, tt := range cases {
			t.Run(r.path+"/"+tt.name, func(t *testing.T) {
				body := `{"` + r.field + `":"hello"`
				if tt.model != "-" {
					body += `,"model":"` + tt.model + `"`
				}
				resp, b := s.post(t, r.path, body+"}")
				if resp.StatusCode != 200 {
					t.Fatalf("POST %s %s = %d (%s)", r.path, body, resp.StatusCode, b)
				}
				n, model := dims(t, r.path, b)
				if n != tt.dims || isOpenAI(r.path) && model != tt.served {
					t.Errorf("POST %s %s = %d dims of model %q, want %d of %q", r.path, body, n, model, tt.dims, tt.served)
				}
				lines := logLines(t, s.logs)
				if got := lines[len(lines)-1]["model"]; got != tt.served {
					t.Errorf("log line model = %v, want %s", got, tt.served)
				}
			})
		}
		t.Run(r.path+"/unknown", func(t *testing.T) {
			resp, b := s.post(t, r.path, `{"`+r.field+`":"hello","model":"text-embedding-4-large"}`)
			checkModelNotFound(t, r.path, resp, b, "text-embedding-4-large")
		})
	}
	t.Run("tokenize", func(t *testing.T) {
		for model, want := range map[string]int{"e5": 5, "": 7, "bge": 7} {
			resp, b := s.post(t, "/tokenize", `{"inputs":"a","model":"`+model+`"}`)
			var toks [][]struct{ ID int }
			mustJSON(t, b, &toks)
			if resp.StatusCode != 200 || toks[0][0].ID != want {
				t.Errorf("POST /tokenize model %q = %d %s, want token %d", model, resp.StatusCode, b, want)
			}
		}
		resp, b := s.post(t, "/tokenize", `{"inputs":"a","model":"nope"}`)
		checkModelNotFound(t, "/tokenize", resp, b, "nope")
	})
	t.Run("wrong type", func(t *testing.T) {
		for path, body := range map[string]string{"/embed": `{"inputs":"a","model":5}`, "/v1/embeddings": `{"input":"a","model":["e5"]}`, "/tokenize": `{"inputs":"a","model":{}}`} {
			resp, b := s.post(t, path, body)
			if want := statusFor(path, gateway.Validation); resp.StatusCode != want || !strings.Contains(string(b), "model") {
				t.Errorf("POST %s %s = %d %s, want %d naming model", path, body, resp.StatusCode, b, want)
			}
		}
	})
}

// One model served leniently (the single-model flags) takes any name, as
// today and as TEI does; the response names the model that served.
func TestLenientOneModel(t *testing.T) {
	s := newTestServer(t, newFake(), nil, nil)
	resp, b := s.post(t, "/v1/embeddings", `{"input":"a","model":"text-embedding-ada-002"}`)
	if n, model := dims(t, "/v1/embeddings", b); resp.StatusCode != 200 || n != 4 || model != "fake-model" {
		t.Errorf("POST /v1/embeddings with any model = %d %s, want 200 from fake-model", resp.StatusCode, b)
	}
}

const (
	e5OnlyKey  = "sk-e5-only-0123456789"
	aliasKey   = "sk-alias-0123456789"
	starKey    = "sk-star-0123456789"
	meteredKey = "sk-metered-0123456789"
	smallKey   = "sk-small-0123456789"
)

// modelKeys: e5-only may use e5, alias may use bge by its alias, star and
// team-a every model; metered has 10 tokens a minute on e5 (by name) and
// on bge (by its alias), 60 in all; small has 10 in all.
func modelKeys(t *testing.T) *auth.Keys {
	t.Helper()
	entry := func(secret string, k auth.Key) auth.KeyEntry {
		k.RPS, k.Burst = 1000, 1000
		return auth.KeyEntry{Key: k, Hash: sha256.Sum256([]byte(secret))}
	}
	keys, err := auth.New([]auth.KeyEntry{
		entry(teamAKey, auth.Key{Name: "team-a"}),
		entry(e5OnlyKey, auth.Key{Name: "e5-only", Models: []string{"e5"}}),
		entry(aliasKey, auth.Key{Name: "alias", Models: []string{"text-embedding-3-small"}}),
		entry(starKey, auth.Key{Name: "star", Models: []string{"*"}}),
		entry(meteredKey, auth.Key{Name: "metered", TPM: 60, ModelTPM: map[string]int{"e5": 10, "text-embedding-3-small": 10}}),
		entry(smallKey, auth.Key{Name: "small", TPM: 10}),
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func bearer(key string) []string { return []string{"Authorization", "Bearer " + key} }

// A key sees only its models in /v1/models and /info, and gets 404
// model_not_found for the others, as for a model that does not exist.
func TestKeyModelAccess(t *testing.T) {
	cat, _, _ := twoModels()
	s := newCatalogServer(t, cat, modelKeys(t), nil)
	lists := map[string][]string{
		teamAKey:  {"bge", "text-embedding-3-small", "e5", "intfloat/e5-small-v2"},
		starKey:   {"bge", "text-embedding-3-small", "e5", "intfloat/e5-small-v2"},
		e5OnlyKey: {"e5", "intfloat/e5-small-v2"},
		aliasKey:  {"bge", "text-embedding-3-small"},
	}
	for key, want := range lists {
		resp, b := s.do(t, http.MethodGet, "/v1/models", "", "", bearer(key)...)
		var list struct {
			Object string
			Data   []struct {
				ID, Object string
				OwnedBy    string `json:"owned_by"`
				Created    int64
			}
		}
		mustJSON(t, b, &list)
		var ids []string
		for _, m := range list.Data {
			ids = append(ids, m.ID)
			if m.Object != "model" || m.Created != s.started.Unix() || m.Created == 0 {
				t.Errorf("GET /v1/models: %+v, want object model created at the start", m)
			}
		}
		if resp.StatusCode != 200 || list.Object != "list" || !slices.Equal(ids, want) {
			t.Errorf("GET /v1/models with %s = %d %v, want %v", key, resp.StatusCode, ids, want)
		}
	}

	t.Run("refused models", func(t *testing.T) {
		resp, b := s.post(t, "/v1/embeddings", `{"input":"a","model":"bge"}`, bearer(e5OnlyKey)...)
		checkModelNotFound(t, "/v1/embeddings", resp, b, "bge")
		resp, b = s.post(t, "/embed", `{"inputs":"a"}`, bearer(e5OnlyKey)...) // the default is bge
		checkModelNotFound(t, "/embed", resp, b, "bge")
		resp, b = s.post(t, "/tokenize", `{"inputs":"a","model":"text-embedding-3-small"}`, bearer(e5OnlyKey)...)
		checkModelNotFound(t, "/tokenize", resp, b, "text-embedding-3-small")
		resp, b = s.post(t, "/v1/embeddings", `{"input":"a","model":"e5"}`, bearer(aliasKey)...)
		checkModelNotFound(t, "/v1/embeddings", resp, b, "e5")
		resp, b = s.do(t, http.MethodGet, "/v1/models/bge", "", "", bearer(e5OnlyKey)...)
		checkModelNotFound(t, "/v1/models/bge", resp, b, "bge")
		resp, b = s.do(t, http.MethodGet, "/info?model=bge", "", "", bearer(e5OnlyKey)...)
		checkModelNotFound(t, "/info?model=bge", resp, b, "bge")
	})
	t.Run("info without a model, default not allowed", func(t *testing.T) {
		// The key's first model, not a 404 for the default it may not use.
		resp, b := s.do(t, http.MethodGet, "/info", "", "", bearer(e5OnlyKey)...)
		var info struct {
			ModelID string `json:"model_id"`
		}
		mustJSON(t, b, &info)
		if resp.StatusCode != 200 || info.ModelID != "/models/e5" {
			t.Errorf("GET /info with e5-only = %d %s, want e5's info", resp.StatusCode, b)
		}
	})
	t.Run("allowed models", func(t *testing.T) {
		for _, c := range []struct{ key, model string }{{e5OnlyKey, "e5"}, {e5OnlyKey, "intfloat/e5-small-v2"}, {aliasKey, "bge"}, {aliasKey, "text-embedding-3-small"}, {starKey, "e5"}} {
			if resp, b := s.post(t, "/v1/embeddings", `{"input":"a","model":"`+c.model+`"}`, bearer(c.key)...); resp.StatusCode != 200 {
				t.Errorf("POST /v1/embeddings model %s = %d (%s), want 200", c.model, resp.StatusCode, b)
			}
		}
		resp, b := s.do(t, http.MethodGet, "/info?model=e5", "", "", bearer(e5OnlyKey)...)
		var info struct {
			ModelID string `json:"model_id"`
			Models  []struct{ Name string }
		}
		mustJSON(t, b, &info)
		if resp.StatusCode != 200 || info.ModelID != "/models/e5" || len(info.Models) != 1 || info.Models[0].Name != "e5" {
			t.Errorf("GET /info?model=e5 with e5-only = %d %s, want e5 alone", resp.StatusCode, b)
		}
	})
}

// GET /v1/models/{id} finds a model by any of its names, slashes included,
// escaped or not.
func TestModelByID(t *testing.T) {
	cat, _, _ := twoModels()
	s := newCatalogServer(t, cat, nil, nil)
	for path, want := range map[string]string{
		"/v1/models/e5":                     "e5",
		"/v1/models/text-embedding-3-small": "text-embedding-3-small",
		"/v1/models/intfloat/e5-small-v2":   "intfloat/e5-small-v2",
		"/v1/models/intfloat%2Fe5-small-v2": "intfloat/e5-small-v2",
	} {
		resp, b := s.do(t, http.MethodGet, path, "", "")
		var m struct {
			ID, Object string
			OwnedBy    string `json:"owned_by"`
			Created    int64
		}
		mustJSON(t, b, &m)
		if resp.StatusCode != 200 || m.ID != want || m.Object != "model" || m.OwnedBy != "embedgate" || m.Created != s.started.Unix() {
			t.Errorf("GET %s = %d %s, want model %s", path, resp.StatusCode, b, want)
		}
	}
	for path, model := range map[string]string{"/v1/models/nope": "nope", "/v1/models/intfloat/nope": "intfloat/nope"} {
		resp, b := s.do(t, http.MethodGet, path, "", "")
		checkModelNotFound(t, path, resp, b, model)
	}
	// A trailing slash is the path without it, as on every route.
	if resp, b := s.do(t, http.MethodGet, "/v1/models/", "", ""); resp.StatusCode != 200 || !strings.HasPrefix(string(b), `{"object":"list"`) {
		t.Errorf("GET /v1/models/ = %d %s, want the list", resp.StatusCode, b)
	}
	t.Run("lenient", func(t *testing.T) {
		s := newTestServer(t, newFake(), nil, nil)
		resp, b := s.do(t, http.MethodGet, "/v1/models/text-embedding-ada-002", "", "")
		if resp.StatusCode != 200 || !strings.Contains(string(b), `"id":"fake-model"`) {
			t.Errorf("GET /v1/models/<any> in one-model mode = %d %s, want the model", resp.StatusCode, b)
		}
	})
}

// /info describes the default model, or ?model=, and lists every model.
func TestInfoModels(t *testing.T) {
	cat, _, _ := twoModels()
	s := newCatalogServer(t, cat, nil, nil)
	type info struct {
		ModelID    string `json:"model_id"`
		Dimensions int
		Models     []map[string]any
	}
	for query, want := range map[string]string{"": "BAAI/bge-small-en-v1.5", "?model=e5": "/models/e5", "?model=text-embedding-3-small": "BAAI/bge-small-en-v1.5", "?model=intfloat%2Fe5-small-v2": "/models/e5"} {
		resp, b := s.do(t, http.MethodGet, "/info"+query, "", "")
		var got info
		mustJSON(t, b, &got)
		if resp.StatusCode != 200 || got.ModelID != want {
			t.Errorf("GET /info%s = %d %s, want model_id %s", query, resp.StatusCode, b, want)
		}
		models, _ := json.Marshal(got.Models)
		wantModels := `[{"aliases":["text-embedding-3-small"],"backend":"onnx","dimensions":4,"max_input_length":32,"model_id":"BAAI/bge-small-en-v1.5","name":"bge","state":"ready","task":"embed"},` +
			`{"aliases":["intfloat/e5-small-v2"],"backend":"triton","dimensions":6,"max_input_length":512,"model_id":"/models/e5","name":"e5","state":"loading","task":"embed"}]`
		if string(models) != wantModels {
			t.Errorf("GET /info%s models = %s, want %s", query, models, wantModels)
		}
	}
	resp, b := s.do(t, http.MethodGet, "/info?model=nope", "", "")
	checkModelNotFound(t, "/info", resp, b, "nope")
}

// A key's own tokens-per-minute on a model is charged before, and on top
// of, the key's; a model's alias and name share it; refusals name the
// model the request asked for.
func TestPerModelTPM(t *testing.T) {
	cat, bge, e5 := twoModels()
	charge8 := func(ctx context.Context, req *gateway.EmbedRequest) (*gateway.EmbedResult, error) {
		if err := req.Charge(ctx, 8); err != nil { // as the engine does after tokenizing
			return nil, err
		}
		return &gateway.EmbedResult{Embeddings: [][]float32{{1}}, Usage: gateway.Usage{PromptTokens: 8}}, nil
	}
	bge.embed, e5.embed = charge8, charge8
	s := newCatalogServer(t, cat, modelKeys(t), ratelimit.NewMemory(ratelimit.MemoryOptions{}))
	send := func(model string) (*http.Response, openAIError) {
		t.Helper()
		resp, b := s.post(t, "/v1/embeddings", `{"input":"a","model":"`+model+`"}`, bearer(meteredKey)...)
		var e openAIError
		if resp.StatusCode != 200 {
			mustJSON(t, b, &e)
		}
		return resp, e
	}
	// e5: 10 a minute of its own; the headers show the limit that binds.
	if resp, _ := send("e5"); resp.StatusCode != 200 || resp.Header.Get("x-ratelimit-limit-tokens") != "10" || resp.Header.Get("x-ratelimit-remaining-tokens") != "2" {
		t.Fatalf("first e5 request = %d, tokens %s/%s; want 200 with 2 of 10 left", resp.StatusCode,
			resp.Header.Get("x-ratelimit-remaining-tokens"), resp.Header.Get("x-ratelimit-limit-tokens"))
	}
	resp, e := send("intfloat/e5-small-v2")
	if resp.StatusCode != 429 || e.Error.Type != "tokens" || !openAIRateMessage.MatchString(e.Error.Message) ||
		!strings.HasPrefix(e.Error.Message, "Rate limit reached for e5 on tokens per min (TPM): Limit 10, Remaining 2, Requested 8.") {
		t.Errorf("second e5 request (by alias) = %d %+v, want 429 on e5's tokens", resp.StatusCode, e.Error)
	}
	// bge's limit is its own (set by its alias).
	if resp, _ := send("bge"); resp.StatusCode != 200 || resp.Header.Get("x-ratelimit-remaining-tokens") != "2" {
		t.Errorf("bge request = %d, %s tokens left, want 200 and 2", resp.StatusCode, resp.Header.Get("x-ratelimit-remaining-tokens"))
	}
	if resp, e := send("text-embedding-3-small"); resp.StatusCode != 429 || !strings.Contains(e.Error.Message, "for bge on tokens") {
		t.Errorf("bge by alias after its limit = %d %q, want 429 for bge", resp.StatusCode, e.Error.Message)
	}
	// The key's 60 (a token a second back) lost only the 16 tokens of the
	// two requests that passed: 44 left, or a few more had seconds passed;
	// 36 or less had a refused request been charged.
	if key, _ := s.limiter.AllowTokens(context.Background(), "key:metered", ratelimit.Limit{TPM: 60}, 0); key.Remaining < 44 || key.Remaining >= 52 {
		t.Errorf("key's tokens left = %d, want 44 (two requests of 8 passed)", key.Remaining)
	}
	t.Run("key limit names the model", func(t *testing.T) {
		e5.embed = func(ctx context.Context, req *gateway.EmbedRequest) (*gateway.EmbedResult, error) {
			return nil, req.Charge(ctx, 11)
		}
		_, b := s.post(t, "/v1/embeddings", `{"input":"a","model":"intfloat/e5-small-v2"}`, bearer(smallKey)...)
		var e openAIError
		mustJSON(t, b, &e)
		if !strings.HasPrefix(e.Error.Message, "Request too large for e5 on tokens per min (TPM): Limit 10, Requested 11.") {
			t.Errorf("11 tokens over the key's 10 = %s, want the refusal to name e5", b)
		}
	})
}

// With several models, a busy model refuses its own requests only.
func TestBusyModel(t *testing.T) {
	cat, bge, e5 := twoModels()
	bge.busy = &gateway.Error{Kind: gateway.Overloaded, Msg: "full", RetryAfter: time.Second}
	embedded := false
	bge.embed = func(context.Context, *gateway.EmbedRequest) (*gateway.EmbedResult, error) {
		embedded = true
		return nil, nil
	}
	s := newCatalogServer(t, cat, nil, nil)
	if resp, b := s.post(t, "/v1/embeddings", `{"input":"a","model":"e5"}`); resp.StatusCode != 200 {
		t.Errorf("e5 while bge is busy = %d (%s), want 200", resp.StatusCode, b)
	}
	if resp, b := s.post(t, "/v1/embeddings", `{"input":"a"}`); resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("bge while busy = %d (%s), want 429", resp.StatusCode, b)
	}
	if embedded {
		t.Error("a busy model was asked to embed")
	}
	e5.busy = bge.busy
	if resp, _ := s.post(t, "/embed", `{"inputs":"a","model":"e5"}`); resp.StatusCode != 429 {
		t.Errorf("e5 while busy = %d, want 429", resp.StatusCode)
	}
}

// Before the fleet serves a model, probes and API routes are 503 and the
// list of models is empty. New's fleet is empty until Apply.
func TestNoModel(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	srv, err := New(Options{BodyLimit: testBodyLimit, RequestTimeout: time.Second}, logger, fleet.New(nil, logger, fleet.Options{}), prometheus.NewRegistry(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.App().Shutdown() })
	s := &testServer{Server: srv}
	for _, r := range []struct{ method, path, body string }{
		{http.MethodGet, "/ready", ""}, {http.MethodGet, "/health", ""}, {http.MethodGet, "/info", ""},
		{http.MethodPost, "/embed", `{"inputs":"a"}`}, {http.MethodPost, "/v1/embeddings", `{"input":"a","model":"x"}`},
		{http.MethodPost, "/tokenize", `{"inputs":"a"}`},
	} {
		resp, b := s.do(t, r.method, r.path, "application/json", r.body)
		if resp.StatusCode != 503 || !strings.Contains(string(b), "no model is being served") {
			t.Errorf("%s %s without models = %d %s, want 503", r.method, r.path, resp.StatusCode, b)
		}
	}
	if resp, b := s.do(t, http.MethodGet, "/v1/models", "", ""); resp.StatusCode != 200 || string(b) != `{"object":"list","data":[]}` {
		t.Errorf("GET /v1/models without models = %d %s, want an empty list", resp.StatusCode, b)
	}
}
