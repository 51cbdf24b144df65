package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/embedgate/embedgate/gateway"
)

// embedCase is one successful request per route shape; check looks at the
// decoded 200 body. These run against the fake engine here and against
// the real engine in engine_test.go.
type embedCase struct {
	name, path, body string
	inputs           int
	check            func(t *testing.T, body []byte, dims int)
}

func embedCases() []embedCase {
	return []embedCase{
		{"native", "/api/v1/embed", `{"inputs":["hello world","a b c"]}`, 2, func(t *testing.T, b []byte, dims int) {
			var r struct {
				Data []struct {
					Embedding []float32 `json:"embedding"`
					Index     int       `json:"index"`
				} `json:"data"`
				Usage   struct{ PromptTokens, TotalTokens int } `json:"usage"`
				Timings struct{ Tokenization, Queue, Inference string }
			}
			mustJSON(t, b, &r)
			if len(r.Data) != 2 || r.Data[0].Index != 0 || r.Data[1].Index != 1 || len(r.Data[1].Embedding) != dims {
				t.Errorf("native body = %s, want 2 vectors of %d in order", b, dims)
			}
			for _, d := range []string{r.Timings.Tokenization, r.Timings.Queue, r.Timings.Inference} {
				if _, err := time.ParseDuration(d); err != nil {
					t.Errorf("native timings %q: %v", d, err)
				}
			}
		}},
		{"tei", "/embed", `{"inputs":"hello world"}`, 1, func(t *testing.T, b []byte, dims int) {
			var r [][]float32
			mustJSON(t, b, &r)
			if len(r) != 1 || len(r[0]) != dims {
				t.Errorf("tei body = %s, want 1 vector of %d", b, dims)
			}
		}},
		{"tei ids", "/embed", `{"inputs":[[101,2023,102],[101,102]]}`, 2, func(t *testing.T, b []byte, dims int) {
			var r [][]float32
			mustJSON(t, b, &r)
			if len(r) != 2 || len(r[1]) != dims {
				t.Errorf("tei ids body = %s, want 2 vectors of %d", b, dims)
			}
		}},
		{"openai float", "/v1/embeddings", `{"input":["x","y","z"],"model":"whatever"}`, 3, func(t *testing.T, b []byte, dims int) {
			var r struct {
				Object string
				Data   []struct {
					Object    string
					Embedding []float32
					Index     int
				}
				Model string
				Usage struct {
					PromptTokens int `json:"prompt_tokens"`
					TotalTokens  int `json:"total_tokens"`
				}
			}
			mustJSON(t, b, &r)
			if r.Object != "list" || len(r.Data) != 3 || r.Data[2].Index != 2 || r.Data[0].Object != "embedding" || len(r.Data[0].Embedding) != dims || r.Model == "" {
				t.Errorf("openai body = %s, want a list of 3 vectors of %d", b, dims)
			}
			if r.Usage.PromptTokens == 0 || r.Usage.TotalTokens != r.Usage.PromptTokens {
				t.Errorf("openai usage = %+v, want equal non-zero counts", r.Usage)
			}
		}},
		{"openai base64", "/embeddings", `{"input":"x","encoding_format":"base64","dimensions":2}`, 1, func(t *testing.T, b []byte, dims int) {
			var r struct{ Data []struct{ Embedding string } }
			mustJSON(t, b, &r)
			raw, err := base64.StdEncoding.DecodeString(r.Data[0].Embedding)
			if err != nil || len(raw) != 2*4 {
				t.Errorf("openai base64 body = %s, want 2 float32s (%v)", b, err)
			}
		}},
		{"openai ids", "/v1/embeddings", `{"input":[101,2023,102]}`, 1, func(t *testing.T, b []byte, dims int) {
			var r struct {
				Data []struct{ Embedding []float32 }
			}
			mustJSON(t, b, &r)
			if len(r.Data) != 1 || len(r.Data[0].Embedding) != dims {
				t.Errorf("openai ids body = %s, want 1 vector of %d", b, dims)
			}
		}},
	}
}

func mustJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("body %s: %v", b, err)
	}
}

// runEmbedCases checks every route shape, the timing headers and the log
// line against eng.
func runEmbedCases(t *testing.T, s *testServer, dims int) {
	for _, tt := range embedCases() {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := s.post(t, tt.path, tt.body)
			if resp.StatusCode != 200 {
				t.Fatalf("POST %s %s = %d, want 200 (%s)", tt.path, tt.body, resp.StatusCode, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			for _, h := range []string{"x-compute-tokens", "x-compute-characters", "x-total-time", "x-tokenization-time", "x-queue-time", "x-inference-time", "x-request-id"} {
				if resp.Header.Get(h) == "" {
					t.Errorf("POST %s: header %s missing", tt.path, h)
				}
			}
			tt.check(t, body, dims)
		})
	}
}

func TestEmbedRoutes(t *testing.T) {
	s := newTestServer(t, newFake(), nil, nil)
	runEmbedCases(t, s, 4)
}

func TestEmbedPassesRequest(t *testing.T) {
	f := newFake()
	var got *gateway.EmbedRequest
	f.embed = func(ctx context.Context, req *gateway.EmbedRequest) (*gateway.EmbedResult, error) {
		got = req
		return &gateway.EmbedResult{Embeddings: [][]float32{{1}}, Usage: gateway.Usage{PromptTokens: 3, Characters: 5}}, nil
	}
	s := newTestServer(t, f, nil, nil)
	resp, body := s.post(t, "/api/v1/embed", `{"inputs":"hello","truncate":false,"truncation_direction":"left","prompt_name":"q","normalize":false,"dimensions":2}`)
	if resp.StatusCode != 200 {
		t.Fatalf("status = %d (%s)", resp.StatusCode, body)
	}
	want := &gateway.EmbedRequest{Inputs: []gateway.Input{{Text: "hello"}}, Direction: gateway.Left, PromptName: "q", Dimensions: 2}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("engine got %+v, want %+v", got, want)
	}
	if h := resp.Header.Get("x-compute-tokens"); h != "3" {
		t.Errorf("x-compute-tokens = %q, want 3", h)
	}
	if h := resp.Header.Get("x-compute-characters"); h != "5" {
		t.Errorf("x-compute-characters = %q, want 5", h)
	}
}

func TestEngineErrors(t *testing.T) {
	tests := []struct {
		name               string
		err                error
		native, openai     int
		nativeType, oaType string
		retryAfter         string
	}{
		{"validation", gateway.Errorf(gateway.Validation, "inputs[0]", "too long"), 422, 400, "Validation", "invalid_request_error", ""},
		{"rate limited", &gateway.Error{Kind: gateway.RateLimited, Msg: "slow down", RetryAfter: 2500 * time.Millisecond}, 429, 429, "RateLimited", "requests", "3"},
		{"overloaded", &gateway.Error{Kind: gateway.Overloaded, Msg: "model is overloaded"}, 429, 429, "Overloaded", "server_overloaded", "1"},
		{"unhealthy", &gateway.Error{Kind: gateway.Unhealthy, Msg: "backend unavailable"}, 503, 503, "Unhealthy", "server_error", ""},
		{"timeout", &gateway.Error{Kind: gateway.Timeout, Msg: "backend deadline exceeded"}, 504, 504, "Backend", "timeout", ""},
		{"backend", &gateway.Error{Kind: gateway.Backend, Msg: "inference failed"}, 500, 500, "Backend", "server_error", ""},
		{"wrapped", fmt.Errorf("infer: batch: %w", &gateway.Error{Kind: gateway.Overloaded, Msg: "triton queue full"}), 429, 429, "Overloaded", "server_overloaded", "1"},
		{"deadline", fmt.Errorf("infer: %w", context.DeadlineExceeded), 504, 504, "Backend", "timeout", ""},
		{"plain error", errors.New("boom: secret detail"), 500, 500, "Internal", "server_error", ""},
		{"internal kind", &gateway.Error{Kind: gateway.Internal, Msg: "secret detail"}, 500, 500, "Internal", "server_error", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake()
			f.embed = func(context.Context, *gateway.EmbedRequest) (*gateway.EmbedResult, error) { return nil, tt.err }
			s := newTestServer(t, f, nil, nil)
			for _, c := range []struct {
				path, body, typ string
				status          int
			}{
				{"/api/v1/embed", `{"inputs":"a"}`, tt.nativeType, tt.native},
				{"/embed", `{"inputs":"a"}`, tt.nativeType, tt.native},
				{"/v1/embeddings", `{"input":"a"}`, tt.oaType, tt.openai},
			} {
				resp, body := s.post(t, c.path, c.body)
				if resp.StatusCode != c.status {
					t.Errorf("POST %s = %d, want %d (%s)", c.path, resp.StatusCode, c.status, body)
				}
				if got := resp.Header.Get("Retry-After"); got != tt.retryAfter {
					t.Errorf("POST %s Retry-After = %q, want %q", c.path, got, tt.retryAfter)
				}
				var ge *gateway.Error
				if errors.As(tt.err, &ge) && ge.RetryAfter > 0 {
					if got, want := resp.Header.Get("retry-after-ms"), strconv.FormatInt(ge.RetryAfter.Milliseconds(), 10); got != want {
						t.Errorf("POST %s retry-after-ms = %q, want %q", c.path, got, want)
					}
				}
				msg := checkErrorShape(t, c.path, body, c.typ)
				if strings.Contains(msg, "secret") {
					t.Errorf("POST %s message %q leaks the cause", c.path, msg)
				}
			}
		})
	}
}

func TestInternalErrorLoggedOnce(t *testing.T) {
	f := newFake()
	f.embed = func(context.Context, *gateway.EmbedRequest) (*gateway.EmbedResult, error) {
		return nil, errors.New("disk on fire")
	}
	s := newTestServer(t, f, nil, nil)
	resp, _ := s.post(t, "/embed", `{"inputs":"my secret text"}`, "x-request-id", "req-42")
	if resp.StatusCode != 500 || resp.Header.Get(headerRequestID) != "req-42" {
		t.Fatalf("status = %d id = %q, want 500 req-42", resp.StatusCode, resp.Header.Get(headerRequestID))
	}
	lines := logLines(t, s.logs)
	if len(lines) != 1 {
		t.Fatalf("%d log lines, want 1: %v", len(lines), lines)
	}
	l := lines[0]
	if l["id"] != "req-42" || l["level"] != "ERROR" || !strings.Contains(fmt.Sprint(l["error"]), "disk on fire") || l["status"] != 500.0 {
		t.Errorf("log line = %v, want id req-42, ERROR, the cause and status 500", l)
	}
}

func TestRequestLog(t *testing.T) {
	s := newTestServer(t, newFake(), testKeys(t), nil)
	s.post(t, "/api/v1/embed", `{"inputs":["very private text","more"]}`, "Authorization", "Bearer "+teamAKey)
	lines := logLines(t, s.logs)
	if len(lines) != 1 {
		t.Fatalf("%d log lines, want 1", len(lines))
	}
	l := lines[0]
	for k, want := range map[string]any{"route": "/api/v1/embed", "status": 200.0, "inputs": 2.0, "key": "team-a", "method": "POST"} {
		if l[k] != want {
			t.Errorf("log %q = %v, want %v (%v)", k, l[k], want, l)
		}
	}
	for _, k := range []string{"id", "tokens", "total", "tokenization", "queue", "inference"} {
		if _, ok := l[k]; !ok {
			t.Errorf("log line has no %q: %v", k, l)
		}
	}
	if raw := fmt.Sprint(l); strings.Contains(raw, "private") {
		t.Errorf("log line contains input text: %s", raw)
	}
}

func TestRequestID(t *testing.T) {
	s := newTestServer(t, newFake(), nil, nil)
	tests := []struct {
		name, sent string
		kept       bool
	}{
		{"sane", "abc-123_X.y:z", true},
		{"none", "", false},
		{"space", "a b", false},
		{"quote", `a"b`, false},
		{"too long", strings.Repeat("a", 129), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hdr []string
			if tt.sent != "" {
				hdr = []string{"x-request-id", tt.sent}
			}
			resp, _ := s.do(t, http.MethodGet, "/health", "", "", hdr...)
			got := resp.Header.Get(headerRequestID)
			if tt.kept && got != tt.sent || !tt.kept && (got == "" || got == tt.sent) {
				t.Errorf("x-request-id %q → %q, kept = %v", tt.sent, got, tt.kept)
			}
		})
	}
}

func TestDeadline(t *testing.T) {
	f := newFake()
	var deadline time.Time
	f.embed = func(ctx context.Context, req *gateway.EmbedRequest) (*gateway.EmbedResult, error) {
		deadline, _ = ctx.Deadline()
		<-ctx.Done() // an engine that never answers: the deadline sheds it
		return nil, fmt.Errorf("infer: queued: %w", ctx.Err())
	}
	s := newTestServer(t, f, nil, nil)
	s.opts.RequestTimeout = 50 * time.Millisecond
	start := time.Now()
	resp, body := s.post(t, "/v1/embeddings", `{"input":"a"}`)
	if resp.StatusCode != 504 {
		t.Errorf("status = %d, want 504 (%s)", resp.StatusCode, body)
	}
	if deadline.IsZero() || deadline.Sub(start) > time.Second {
		t.Errorf("engine deadline = %v, want about 50ms after %v", deadline, start)
	}
	checkErrorShape(t, "/v1/embeddings", body, "timeout")
}

func TestHealthReadyDrain(t *testing.T) {
	f := newFake()
	s := newTestServer(t, f, nil, nil)
	check := func(path string, want int) {
		t.Helper()
		resp, body := s.do(t, http.MethodGet, path, "", "")
		if resp.StatusCode != want {
			t.Errorf("GET %s = %d, want %d (%s)", path, resp.StatusCode, want, body)
		}
		if !json.Valid(body) {
			t.Errorf("GET %s body %s is not JSON", path, body)
		}
	}
	check("/health", 200)
	check("/ready", 200)
	f.healthErr = errors.New("triton down")
	f.notReady = true
	check("/health", 503)
	check("/ready", 503)
	f.healthErr, f.notReady = nil, false
	check("/ready", 200)

	s.Drain()
	check("/ready", 503)
	check("/health", 200)
	for _, p := range []struct{ path, body string }{{"/embed", `{"inputs":"a"}`}, {"/v1/embeddings", `{"input":"a"}`}, {"/tokenize", `{"inputs":"a"}`}} {
		resp, body := s.post(t, p.path, p.body)
		if resp.StatusCode != 503 || !resp.Close {
			t.Errorf("POST %s while draining = %d (Connection: close %v), want 503 closing the connection (%s)", p.path, resp.StatusCode, resp.Close, body)
		}
	}
}

func TestTokenize(t *testing.T) {
	s := newTestServer(t, newFake(), nil, nil)
	resp, body := s.post(t, "/tokenize", `{"inputs":["ab","c"],"add_special_tokens":false}`)
	if resp.StatusCode != 200 {
		t.Fatalf("status = %d (%s)", resp.StatusCode, body)
	}
	var toks [][]struct {
		ID          int
		Text        string
		Special     bool
		Start, Stop int
	}
	mustJSON(t, body, &toks)
	if len(toks) != 2 || toks[0][0].Text != "ab" || toks[0][0].Stop != 2 {
		t.Errorf("tokenize body = %s", body)
	}
}

func TestInfoAndModels(t *testing.T) {
	s := newTestServer(t, newFake(), nil, nil)
	resp, body := s.do(t, http.MethodGet, "/info", "", "")
	var info map[string]any
	mustJSON(t, body, &info)
	if resp.StatusCode != 200 || info["model_id"] != "fake-model" || info["dimensions"] != 4.0 {
		t.Errorf("GET /info = %d %s", resp.StatusCode, body)
	}
	resp, body = s.do(t, http.MethodGet, "/v1/models", "", "")
	var models struct {
		Object string
		Data   []struct{ ID, Object string }
	}
	mustJSON(t, body, &models)
	if resp.StatusCode != 200 || models.Object != "list" || len(models.Data) != 1 || models.Data[0].ID != "fake-model" {
		t.Errorf("GET /v1/models = %d %s", resp.StatusCode, body)
	}
}

func TestMetrics(t *testing.T) {
	s := newTestServer(t, newFake(), nil, nil)
	s.post(t, "/embed", `{"inputs":"a"}`)
	s.post(t, "/embed", `{"inputs":[]}`)
	s.do(t, http.MethodGet, "/nowhere", "", "")
	resp, body := s.do(t, http.MethodGet, "/metrics", "", "")
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics = %d", resp.StatusCode)
	}
	text := string(body)
	for _, want := range []string{
		`embedgate_http_requests_total{route="/embed",status="200"} 1`,
		`embedgate_http_requests_total{route="/embed",status="400"} 1`,
		`embedgate_http_requests_total{route="unmatched",status="404"} 1`,
		`embedgate_request_duration_seconds_count{route="/embed"} 2`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, text)
		}
	}
}

func TestPanicIsInternal(t *testing.T) {
	f := newFake()
	f.embed = func(context.Context, *gateway.EmbedRequest) (*gateway.EmbedResult, error) {
		var m map[string]int
		m["x"]++ // a nil-map write: a bug in a handler must not kill the process
		return nil, nil
	}
	s := newTestServer(t, f, nil, nil)
	resp, body := s.post(t, "/embed", `{"inputs":"a"}`)
	if resp.StatusCode != 500 {
		t.Errorf("status = %d, want 500 (%s)", resp.StatusCode, body)
	}
	checkErrorShape(t, "/embed", body, "Internal")
}

// A busy engine is answered 429 before the body is decoded or embedded.
func TestBusyRefusesBeforeDecoding(t *testing.T) {
	f := newFake()
	f.busy = &gateway.Error{Kind: gateway.Overloaded, Msg: "full", RetryAfter: time.Second}
	embedded := false
	f.embed = func(context.Context, *gateway.EmbedRequest) (*gateway.EmbedResult, error) {
		embedded = true
		return nil, errors.New("unreachable")
	}
	s := newTestServer(t, f, nil, nil)
	for _, path := range []string{"/api/v1/embed", "/embed", "/v1/embeddings"} {
		resp, body := s.post(t, path, `{"inputs":"a","input":"a"}`)
		if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "1" {
			t.Errorf("POST %s on a busy engine = %d (Retry-After %q) %s, want 429 with Retry-After 1", path, resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
	}
	if embedded {
		t.Error("a busy engine was asked to embed")
	}
}
