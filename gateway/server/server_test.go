package server

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/auth"
	"github.com/embedgate/embedgate/gateway/fleet"
	"github.com/embedgate/embedgate/gateway/internal/testenv"
	"github.com/embedgate/embedgate/gateway/native"
	"github.com/embedgate/embedgate/gateway/openai"
	"github.com/embedgate/embedgate/gateway/ratelimit"
)

// fakeEngine stands in for *infer.Engine where a test needs a particular
// answer (every error kind, deadlines). Tests of real embeddings use the
// real engine (engine_test.go).
type fakeEngine struct {
	lim       gateway.Limits
	info      gateway.Info
	embed     func(ctx context.Context, req *gateway.EmbedRequest) (*gateway.EmbedResult, error)
	tokenize  func(ctx context.Context, req *gateway.TokenizeRequest) ([][]gateway.Token, error)
	rerank    func(ctx context.Context, req *gateway.RerankRequest) (*gateway.RerankResult, error)
	healthErr error
	notReady  bool
	busy      error
}

func newFake() *fakeEngine {
	return &fakeEngine{
		lim:  gateway.Limits{MaxClientBatch: 4, MaxInputLength: 32, Dimensions: 4, DefaultTruncate: true},
		info: gateway.Info{ModelID: "fake-model", Dimensions: 4, Pooling: "mean", Backend: "fake", Version: "test"},
	}
}

// Embed and Tokenize validate first, as the real engine does.
func (f *fakeEngine) Embed(ctx context.Context, req *gateway.EmbedRequest) (*gateway.EmbedResult, error) {
	if err := req.Validate(f.lim); err != nil {
		return nil, err
	}
	if f.embed != nil {
		return f.embed(ctx, req)
	}
	res := &gateway.EmbedResult{Timings: gateway.Timings{Tokenization: time.Millisecond, Queue: 2 * time.Millisecond, Inference: 3 * time.Millisecond}}
	dims := f.lim.Dimensions
	if req.Dimensions > 0 {
		dims = req.Dimensions
	}
	for i, in := range req.Inputs {
		v := make([]float32, dims)
		for j := range v {
			v[j] = float32(i) + float32(j)/8
		}
		res.Embeddings = append(res.Embeddings, v)
		res.Usage.PromptTokens += len(in.Text) + len(in.IDs)
		res.Usage.Characters += len(in.Text)
	}
	return res, nil
}

// Rerank validates, as the real engine does, then scores document i
// 1/(i+1) unless the test says otherwise: the codecs' sorting is theirs
// to test, the route's wiring is this package's.
func (f *fakeEngine) Rerank(ctx context.Context, req *gateway.RerankRequest) (*gateway.RerankResult, error) {
	if err := req.Validate(f.lim); err != nil {
		return nil, err
	}
	if f.rerank != nil {
		return f.rerank(ctx, req)
	}
	res := &gateway.RerankResult{Timings: gateway.Timings{Tokenization: time.Millisecond, Queue: 2 * time.Millisecond, Inference: 3 * time.Millisecond}}
	for i, d := range req.Documents {
		res.Scores = append(res.Scores, 1/float32(i+1))
		res.Usage.PromptTokens += len(req.Query) + len(d)
	}
	if req.Charge != nil {
		if err := req.Charge(ctx, res.Usage.PromptTokens); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func (f *fakeEngine) Tokenize(ctx context.Context, req *gateway.TokenizeRequest) ([][]gateway.Token, error) {
	if err := req.Validate(f.lim); err != nil {
		return nil, err
	}
	if f.tokenize != nil {
		return f.tokenize(ctx, req)
	}
	out := make([][]gateway.Token, len(req.Inputs))
	for i, s := range req.Inputs {
		out[i] = []gateway.Token{{ID: 7, Text: s, Start: 0, Stop: len(s)}}
	}
	return out, nil
}

func (f *fakeEngine) Limits() gateway.Limits           { return f.lim }
func (f *fakeEngine) Info() gateway.Info               { return f.info }
func (f *fakeEngine) Health(ctx context.Context) error { return f.healthErr }
func (f *fakeEngine) Ready() bool                      { return !f.notReady }
func (f *fakeEngine) Busy(context.Context) error       { return f.busy }

// logLines are the decoded JSON log lines in logs so far.
func logLines(t *testing.T, logs *testenv.LogBuffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range bytes.Split(bytes.TrimSpace(logs.Bytes()), []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("log line %s: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

type testServer struct {
	*Server
	reg  *prometheus.Registry
	logs *testenv.LogBuffer
}

const testBodyLimit = 4096

// testLimit is the rate limit of test servers with a limiter.
var testLimit = ratelimit.Limit{RPS: 1, Burst: 2}

// isOpenAI says whether path's errors are in OpenAI's shape.
func isOpenAI(path string) bool {
	_, ok := dialectOf(path).(openai.Codec)
	return ok
}

// statusFor is the status of kind on path, from the one error table.
func statusFor(path string, kind gateway.Kind) int {
	status, _ := dialectOf(path).ErrorResponse(&gateway.Error{Kind: kind})
	return status
}

// newTestServer serves eng as oneModel; keys and lim, when not nil, guard the API routes
// with the default limits of testLimit.
func newTestServer(t *testing.T, eng engine, keys *auth.Keys, lim Limiter) *testServer {
	t.Helper()
	return newCatalogServer(t, oneModel(eng), keys, lim)
}

// oneModel serves eng as the one model "fake-model", which any name finds
// (one-model mode).
func oneModel(eng engine) *fakeCatalog {
	return &fakeCatalog{models: []served{{names: []string{"fake-model"}, task: gateway.TaskEmbed, eng: eng}}, lenient: true}
}

// newCatalogServer serves cat's models, as newTestServer does one; tune,
// if any, changes the test Options.
func newCatalogServer(t *testing.T, cat catalog, keys *auth.Keys, lim Limiter, tune ...func(*Options)) *testServer {
	t.Helper()
	logs := &testenv.LogBuffer{}
	reg := prometheus.NewRegistry()
	opts := Options{BodyLimit: testBodyLimit, RequestTimeout: 2 * time.Second, RateLimit: testLimit}
	for _, f := range tune {
		f(&opts)
	}
	s, err := newServer(opts, slog.New(slog.NewJSONHandler(logs, nil)), cat, reg, keys, lim)
	if err != nil {
		t.Fatalf("newServer: %v", err)
	}
	t.Cleanup(func() { _ = s.App().Shutdown() })
	return &testServer{Server: s, reg: reg, logs: logs}
}

// do sends one request through app.Test and returns the response and body.
func (s *testServer) do(t *testing.T, method, path, contentType, body string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := s.App().Test(req, 5000)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp, b
}

func (s *testServer) post(t *testing.T, path, body string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	return s.do(t, http.MethodPost, path, "application/json", body, hdr...)
}

// checkErrorShape checks that body is the error JSON of path's family with
// the given native error_type or OpenAI type, and returns the message.
func checkErrorShape(t *testing.T, path string, body []byte, wantType string) string {
	t.Helper()
	if isOpenAI(path) {
		var e struct {
			Error *struct {
				Message string  `json:"message"`
				Type    string  `json:"type"`
				Param   *string `json:"param"`
				Code    *string `json:"code"`
			} `json:"error"`
		}
		if err := json.Unmarshal(body, &e); err != nil || e.Error == nil || e.Error.Message == "" {
			t.Fatalf("%s: body %s is not an OpenAI error (%v)", path, body, err)
		}
		if wantType != "" && e.Error.Type != wantType {
			t.Errorf("%s: error type = %q, want %q (%s)", path, e.Error.Type, wantType, body)
		}
		return e.Error.Message
	}
	var e struct {
		Error     string `json:"error"`
		ErrorType string `json:"error_type"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == "" || e.ErrorType == "" {
		t.Fatalf("%s: body %s is not a native error (%v)", path, body, err)
	}
	if wantType != "" && e.ErrorType != wantType {
		t.Errorf("%s: error_type = %q, want %q (%s)", path, e.ErrorType, wantType, body)
	}
	return e.Error
}

func TestNew(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	ok := Options{BodyLimit: 1, RequestTimeout: time.Second}
	models := fleet.New(nil, logger, fleet.Options{})
	tests := []struct {
		name   string
		opts   Options
		logger *slog.Logger
		models *fleet.Fleet
		reg    *prometheus.Registry
	}{
		{"nil fleet", ok, logger, nil, prometheus.NewRegistry()},
		{"nil logger", ok, nil, models, prometheus.NewRegistry()},
		{"nil registry", ok, logger, models, nil},
		{"zero body limit", Options{RequestTimeout: time.Second}, logger, models, prometheus.NewRegistry()},
		{"zero timeout", Options{BodyLimit: 1}, logger, models, prometheus.NewRegistry()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if s, err := New(tt.opts, tt.logger, tt.models, tt.reg, nil, nil); err == nil {
				t.Errorf("New() = %v, nil; want an error", s)
			}
		})
	}
	t.Run("registers twice", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		if _, err := New(ok, logger, models, reg, nil, nil); err != nil {
			t.Fatalf("New() error = %v", err)
		}
		if _, err := New(ok, logger, models, reg, nil, nil); err == nil {
			t.Errorf("second New() on one registry: nil error, want a registration error")
		}
	})
}

func TestUnknownRoutes(t *testing.T) {
	s := newTestServer(t, newFake(), nil, nil)
	tests := []struct {
		name, method, path string
		status             int
		wantType           string
	}{
		{"native 404", http.MethodGet, "/nope", 404, "NotFound"},
		{"openai 404", http.MethodGet, "/v1/nope", 404, "invalid_request_error"},
		{"post 404", http.MethodPost, "/api/v2/embed", 404, "NotFound"},
		{"embed wrong method", http.MethodGet, "/embed", 405, "Validation"},
		{"openai wrong method", http.MethodGet, "/v1/embeddings", 405, "invalid_request_error"},
		{"health wrong method", http.MethodPost, "/health", 405, "Validation"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := s.do(t, tt.method, tt.path, "application/json", "{}")
			if resp.StatusCode != tt.status {
				t.Errorf("%s %s = %d, want %d (%s)", tt.method, tt.path, resp.StatusCode, tt.status, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("%s %s Content-Type = %q, want application/json", tt.method, tt.path, ct)
			}
			checkErrorShape(t, tt.path, body, tt.wantType)
			if resp.Header.Get(headerRequestID) == "" {
				t.Errorf("%s %s: no x-request-id", tt.method, tt.path)
			}
		})
	}
}

// serve runs s on a real listener (app.Test cannot show errors fasthttp
// raises before routing, such as 413) and returns its base URL.
func serve(t *testing.T, s *testServer) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		if err := s.App().ShutdownWithTimeout(5 * time.Second); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("listener: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

func TestBodyTooLarge(t *testing.T) {
	s := newTestServer(t, newFake(), nil, nil)
	base := serve(t, s)
	big := `{"inputs":"` + strings.Repeat("a", testBodyLimit) + `"}`
	for _, tc := range []struct{ path, wantType string }{
		{"/api/v1/embed", "Validation"}, {"/embed", "Validation"}, {"/v1/embeddings", "invalid_request_error"}, {"/embeddings", "invalid_request_error"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			resp, err := http.Post(base+tc.path, "application/json", strings.NewReader(big))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 413 {
				t.Fatalf("POST %s (%d bytes) = %d, want 413 (%s)", tc.path, len(big), resp.StatusCode, body)
			}
			checkErrorShape(t, tc.path, body, tc.wantType)
		})
	}
	t.Run("at the limit", func(t *testing.T) {
		ok := `{"inputs":"` + strings.Repeat("a", testBodyLimit-14) + `"}`
		resp, err := http.Post(base+"/embed", "application/json", strings.NewReader(ok))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("POST /embed (%d bytes) = %d, want 200", len(ok), resp.StatusCode)
		}
	})
}

func TestContentType(t *testing.T) {
	s := newTestServer(t, newFake(), nil, nil)
	tests := []struct {
		name, ct string
		status   int
	}{
		{"json", "application/json", 200},
		{"json charset", "application/json; charset=utf-8", 200},
		{"json upper", "Application/JSON", 200},
		{"missing", "", 400},
		{"text", "text/plain", 400},
		{"form", "application/x-www-form-urlencoded", 400},
		{"json suffix", "application/jsonx", 400},
		{"garbage", ";;;", 400},
	}
	for _, tt := range tests {
		for _, path := range []string{"/api/v1/embed", "/embed", "/v1/embeddings", "/tokenize"} {
			t.Run(tt.name+path, func(t *testing.T) {
				body := `{"inputs":"a"}`
				if isOpenAI(path) {
					body = `{"input":"a"}`
				}
				resp, b := s.do(t, http.MethodPost, path, tt.ct, body)
				if resp.StatusCode != tt.status {
					t.Fatalf("POST %s with Content-Type %q = %d, want %d (%s)", path, tt.ct, resp.StatusCode, tt.status, b)
				}
				if tt.status != 200 {
					checkErrorShape(t, path, b, "")
				}
			})
		}
	}
}

// badBodies are client mistakes with the kind each must give; param is
// the inputs field's name.
func badBodies(field string) []struct {
	name, body string
	kind       gateway.Kind
} {
	f := func(s string) string { return `{"` + field + `":` + s + `}` }
	return []struct {
		name, body string
		kind       gateway.Kind
	}{
		{"empty body", ``, gateway.Malformed},
		{"whitespace", `   `, gateway.Malformed},
		{"not json", `inputs=a`, gateway.Malformed},
		{"truncated object", `{"` + field + `":"a"`, gateway.Malformed},
		{"truncated list", `{"` + field + `":["a",`, gateway.Malformed},
		{"trailing garbage", f(`"a"`) + `}`, gateway.Malformed},
		{"two objects", f(`"a"`) + f(`"b"`), gateway.Malformed},
		{"trailing comma", f(`["a",]`), gateway.Malformed},
		{"single quotes", `{'` + field + `':'a'}`, gateway.Malformed},
		{"unquoted key", `{` + field + `:"a"}`, gateway.Malformed},
		{"bad escape", f(`"\q"`), gateway.Malformed},
		{"control char in string", "{\"" + field + "\":\"a\x01\"}", gateway.Malformed},
		{"NaN", f(`NaN`), gateway.Malformed},
		{"body is a list", `["a"]`, gateway.Validation},
		{"body is a string", `"a"`, gateway.Validation},
		{"body is a number", `42`, gateway.Validation},
		{"missing inputs", `{}`, gateway.Validation},
		{"inputs null", f(`null`), gateway.Validation},
		{"inputs number", f(`1.5`), gateway.Validation},
		{"inputs object", f(`{}`), gateway.Validation},
		{"inputs bool", f(`false`), gateway.Validation},
		{"inputs list of objects", f(`[{}]`), gateway.Validation},
		{"inputs list with null", f(`["a",null]`), gateway.Validation},
		{"nested too deep", f(`[[["a"]]]`), gateway.Validation},
		{"negative id", f(`[-1]`), gateway.Validation},
		{"id too big", f(`[4294967296]`), gateway.Validation},
		{"empty list", f(`[]`), gateway.Empty},
		{"empty string", f(`""`), gateway.Empty},
		{"empty string in list", f(`["a",""]`), gateway.Empty},
		{"too many inputs", f(`["a","b","c","d","e"]`), gateway.Validation},
		{"truncate string", `{"` + field + `":"a","truncate":"yes"}`, gateway.Validation},
		{"normalize string", `{"` + field + `":"a","normalize":"no"}`, gateway.Validation},
		{"direction unknown", `{"` + field + `":"a","truncation_direction":"middle"}`, gateway.Validation},
		{"dimensions zero", `{"` + field + `":"a","dimensions":0}`, gateway.Validation},
		{"dimensions too big", `{"` + field + `":"a","dimensions":5}`, gateway.Validation},
		{"dimensions string", `{"` + field + `":"a","dimensions":"2"}`, gateway.Validation},
		{"prompt_name list", `{"` + field + `":"a","prompt_name":["q"]}`, gateway.Validation},
	}
}

func TestMalformedBodies(t *testing.T) {
	s := newTestServer(t, newFake(), nil, nil)
	for _, path := range []string{"/api/v1/embed", "/embed", "/v1/embeddings", "/embeddings"} {
		field := "inputs"
		if isOpenAI(path) {
			field = "input"
		}
		for _, tt := range badBodies(field) {
			t.Run(path+"/"+tt.name, func(t *testing.T) {
				resp, body := s.post(t, path, tt.body)
				want := statusFor(path, tt.kind)
				if resp.StatusCode != want {
					t.Errorf("POST %s %s = %d, want %d (%s)", path, tt.body, resp.StatusCode, want, body)
				}
				wantType := native.WireOf(tt.kind).Type
				if isOpenAI(path) {
					wantType = "invalid_request_error"
				}
				checkErrorShape(t, path, body, wantType)
			})
		}
	}
	t.Run("openai format", func(t *testing.T) {
		resp, body := s.post(t, "/v1/embeddings", `{"input":"a","encoding_format":"int8"}`)
		if resp.StatusCode != 400 {
			t.Errorf("encoding_format int8 = %d, want 400 (%s)", resp.StatusCode, body)
		}
		var e struct {
			Error struct{ Param string } `json:"error"`
		}
		if err := json.Unmarshal(body, &e); err != nil || e.Error.Param != "encoding_format" {
			t.Errorf("encoding_format int8 body = %s, want param encoding_format", body)
		}
	})
	t.Run("native rejects ids", func(t *testing.T) {
		resp, body := s.post(t, "/api/v1/embed", `{"inputs":[1,2]}`)
		if resp.StatusCode != 422 {
			t.Errorf("native ids = %d, want 422 (%s)", resp.StatusCode, body)
		}
	})
	t.Run("tokenize", func(t *testing.T) {
		for _, tt := range badBodies("inputs")[:20] {
			resp, body := s.post(t, "/tokenize", tt.body)
			if want := statusFor("/tokenize", tt.kind); resp.StatusCode != want {
				t.Errorf("POST /tokenize %s = %d, want %d (%s)", tt.body, resp.StatusCode, want, body)
			}
			checkErrorShape(t, "/tokenize", body, native.WireOf(tt.kind).Type)
		}
	})
}

// A compressed body is refused, never inflated: 276 bytes of gzip,
// gzip, gzip hold 100 MiB, and fiber's c.Body() would inflate them past
// the payload limit.
func TestContentEncodingRefused(t *testing.T) {
	s := newTestServer(t, newFake(), nil, nil)
	var bomb bytes.Buffer
	zw := gzip.NewWriter(&bomb)
	_, _ = zw.Write([]byte(`{"inputs":"` + strings.Repeat("a", 1<<20) + `"}`))
	_ = zw.Close()
	for _, tt := range []struct {
		enc    string
		body   string
		status int
	}{
		{"gzip", bomb.String(), 415},
		{"gzip, gzip, gzip", bomb.String(), 415},
		{"br", "x", 415},
		{"identity", `{"inputs":"a"}`, 200},
		{"IDENTITY", `{"inputs":"a"}`, 200},
	} {
		for _, path := range []string{"/embed", "/v1/embeddings", "/tokenize"} {
			t.Run(tt.enc+path, func(t *testing.T) {
				body := tt.body
				if isOpenAI(path) && tt.status == 200 {
					body = `{"input":"a"}`
				}
				resp, b := s.do(t, http.MethodPost, path, "application/json", body, "Content-Encoding", tt.enc)
				if resp.StatusCode != tt.status {
					t.Fatalf("POST %s with Content-Encoding %q = %d, want %d (%s)", path, tt.enc, resp.StatusCode, tt.status, b)
				}
				if tt.status != 200 {
					checkErrorShape(t, path, b, "")
				}
			})
		}
	}
}
