package server

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/auth"
	"github.com/embedgate/embedgate/gateway/internal/testenv"
	"github.com/embedgate/embedgate/gateway/ratelimit"
)

const (
	teamAKey     = "sk-team-a-0123456789"
	tinyKey      = "sk-tiny-0123456789"
	disabledKey  = "sk-old-0123456789"
	elsewhereKey = "sk-elsewhere-0123456789"
)

// testKeys are team-a (the defaults), tiny (one request, then 429; 10
// tokens a minute), old (disabled) and elsewhere (may use only a model
// that is not served).
func testKeys(t *testing.T) *auth.Keys {
	t.Helper()
	keys, err := auth.New([]auth.KeyEntry{
		{Key: auth.Key{Name: "team-a", RPS: 1000, Burst: 1000}, Hash: sha256.Sum256([]byte(teamAKey))},
		{Key: auth.Key{Name: "tiny", RPS: 0.001, Burst: 1, TPM: 10}, Hash: sha256.Sum256([]byte(tinyKey))},
		{Key: auth.Key{Name: "old", Disabled: true}, Hash: sha256.Sum256([]byte(disabledKey))},
		{Key: auth.Key{Name: "elsewhere", RPS: 1000, Burst: 1000, Models: []string{"other-model"}}, Hash: sha256.Sum256([]byte(elsewhereKey))},
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func guardedServer(t *testing.T, eng engine) *testServer {
	t.Helper()
	return newTestServer(t, eng, testKeys(t), ratelimit.NewMemory(ratelimit.MemoryOptions{}))
}

// Every error of an API route is in the route's dialect, with the status
// the one error table gives it there: the guards' 401 and 429 included,
// and the 413 that fasthttp raises before routing.
func TestErrorDialectPerRoute(t *testing.T) {
	s := guardedServer(t, newFake())
	base := serve(t, s)
	routes := []struct{ path, field string }{
		{"/api/v1/embed", "inputs"}, {"/embed", "inputs"}, {"/v1/embeddings", "input"}, {"/embeddings", "input"},
	}
	bearer := func(k string) string { return "Bearer " + k }
	kinds := []struct {
		kind  gateway.Kind
		key   string
		body  func(field string) string
		drain bool
	}{
		{gateway.Unauthorized, "", func(f string) string { return `{"` + f + `":"a"}` }, false},
		{gateway.TooLarge, teamAKey, func(f string) string { return `{"` + f + `":"` + strings.Repeat("a", testBodyLimit) + `"}` }, false},
		{gateway.Validation, teamAKey, func(f string) string { return `{"` + f + `":"a","dimensions":99}` }, false},
		{gateway.RateLimited, tinyKey, func(f string) string { return `{"` + f + `":"a"}` }, false},
		{gateway.Unhealthy, teamAKey, func(f string) string { return `{"` + f + `":"a"}` }, true},
		{gateway.ModelNotFound, elsewhereKey, func(f string) string { return `{"` + f + `":"a","model":"other-model"}` }, false},
	}
	for _, k := range kinds {
		for _, r := range routes {
			t.Run(k.kind.String()+r.path, func(t *testing.T) {
				base := base
				if k.kind == gateway.RateLimited {
					base = serve(t, guardedServer(t, newFake()))         // a fresh allowance of one request
					post(t, base+r.path, k.body(r.field), bearer(k.key)) // spends it
				}
				if k.drain {
					s.Drain()
					defer s.draining.Store(false)
				}
				hdr := ""
				if k.key != "" {
					hdr = bearer(k.key)
				}
				resp, body := post(t, base+r.path, k.body(r.field), hdr)
				if want := statusFor(r.path, k.kind); resp.StatusCode != want {
					t.Errorf("status = %d, want %d (%s)", resp.StatusCode, want, body)
				}
				checkErrorShape(t, r.path, body, wantType(r.path, k.kind))
			})
		}
	}
}

// wantType is the error_type (native, TEI) or type (OpenAI) of kind on path.
func wantType(path string, kind gateway.Kind) string {
	switch {
	case !isOpenAI(path):
		return map[gateway.Kind]string{gateway.Unauthorized: "Unauthorized", gateway.TooLarge: "Validation",
			gateway.Validation: "Validation", gateway.RateLimited: "RateLimited", gateway.Unhealthy: "Unhealthy",
			gateway.ModelNotFound: "NotFound"}[kind]
	case kind == gateway.RateLimited:
		return "requests"
	case kind == gateway.Unhealthy:
		return "server_error"
	}
	return "invalid_request_error"
}

func post(t *testing.T, url, body, authorization string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// openAIError is the body OpenAI sends with every error.
type openAIError struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

// OpenAI's own 429s read, for example: {"error":{"message":"Rate limit
// reached for text-embedding-3-small in organization org-... on tokens per
// min (TPM): Limit 1000000, Used 999000, Requested 2000. Please try again
// in 120ms. Visit ... to learn more.","type":"tokens","param":null,
// "code":"rate_limit_exceeded"}}, with x-ratelimit-{limit,remaining,reset}-
// {requests,tokens} and retry-after-ms, which the openai npm and Python
// SDKs read before Retry-After.
var openAIRateMessage = regexp.MustCompile(`^Rate limit reached for \S+ on (requests per second \(RPS\)|tokens per min \(TPM\)): Limit \d+(\.\d+)?, .*Requested \d+\. Please try again in ((\d+m)?\d+(\.\d+)?s|\d+ms)\.$`)

func TestOpenAIRateLimitError(t *testing.T) {
	f := newFake()
	f.embed = func(ctx context.Context, req *gateway.EmbedRequest) (*gateway.EmbedResult, error) {
		if err := req.Charge(ctx, 8); err != nil { // as the engine does after tokenizing
			return nil, err
		}
		return &gateway.EmbedResult{Embeddings: [][]float32{{1}}, Usage: gateway.Usage{PromptTokens: 8}}, nil
	}
	s := guardedServer(t, f)
	s.limiter = ratelimit.NewMemory(ratelimit.MemoryOptions{})

	check := func(t *testing.T, resp *http.Response, body []byte, typ, what string) {
		t.Helper()
		var e openAIError
		if err := json.Unmarshal(body, &e); err != nil {
			t.Fatalf("body %s: %v", body, err)
		}
		if resp.StatusCode != 429 || e.Error.Type != typ || e.Error.Code == nil || *e.Error.Code != "rate_limit_exceeded" || e.Error.Param != nil {
			t.Errorf("429 = %d %s, want type %q, code rate_limit_exceeded, param null", resp.StatusCode, body, typ)
		}
		if !openAIRateMessage.MatchString(e.Error.Message) {
			t.Errorf("message %q is not in OpenAI's form", e.Error.Message)
		}
		h := resp.Header
		if _, err := strconv.Atoi(h.Get("retry-after-ms")); err != nil {
			t.Errorf("retry-after-ms %q: %v", h.Get("retry-after-ms"), err)
		}
		if n, err := strconv.Atoi(h.Get("Retry-After")); err != nil || n < 1 {
			t.Errorf("Retry-After %q, want whole seconds ≥ 1", h.Get("Retry-After"))
		}
		for _, name := range []string{"limit", "remaining"} {
			if _, err := strconv.Atoi(h.Get("x-ratelimit-" + name + "-" + what)); err != nil {
				t.Errorf("x-ratelimit-%s-%s = %q", name, what, h.Get("x-ratelimit-"+name+"-"+what))
			}
		}
		if _, err := time.ParseDuration(h.Get("x-ratelimit-reset-" + what)); err != nil {
			t.Errorf("x-ratelimit-reset-%s = %q", what, h.Get("x-ratelimit-reset-"+what))
		}
	}
	t.Run("tokens", func(t *testing.T) {
		resp, body := s.post(t, "/v1/embeddings", `{"input":"a"}`, "Authorization", "Bearer "+tinyKey)
		if resp.StatusCode != 200 || resp.Header.Get("x-ratelimit-remaining-tokens") != "2" {
			t.Fatalf("first request = %d, tokens left %q; want 200 and 2 (%s)", resp.StatusCode, resp.Header.Get("x-ratelimit-remaining-tokens"), body)
		}
		s.limiter = ratelimit.NewMemory(ratelimit.MemoryOptions{}) // a fresh request allowance, tokens spent
		_, _ = s.limiter.AllowTokens(context.Background(), "key:tiny", ratelimit.Limit{TPM: 10}, 8)
		resp, body = s.post(t, "/v1/embeddings", `{"input":"a"}`, "Authorization", "Bearer "+tinyKey)
		check(t, resp, body, "tokens", "tokens")
	})
	t.Run("requests", func(t *testing.T) {
		resp, body := s.post(t, "/v1/embeddings", `{"input":"a"}`, "Authorization", "Bearer "+tinyKey)
		check(t, resp, body, "requests", "requests")
	})
	t.Run("request too large", func(t *testing.T) {
		s.limiter = ratelimit.NewMemory(ratelimit.MemoryOptions{})
		f.embed = func(ctx context.Context, req *gateway.EmbedRequest) (*gateway.EmbedResult, error) {
			return nil, req.Charge(ctx, 11)
		}
		resp, body := s.post(t, "/v1/embeddings", `{"input":"a"}`, "Authorization", "Bearer "+tinyKey)
		var e openAIError
		_ = json.Unmarshal(body, &e)
		if resp.StatusCode != 429 || e.Error.Type != "tokens" || !strings.HasPrefix(e.Error.Message, "Request too large for fake-model on tokens per min (TPM): Limit 10, Requested 11.") {
			t.Errorf("11 tokens over a limit of 10 = %d %s", resp.StatusCode, body)
		}
	})
}

// Every API route is behind the key and the request limit; probes and
// metrics are not.
func TestGuardsOnEveryAPIRoute(t *testing.T) {
	s := guardedServer(t, newFake())
	guarded := []struct{ method, path, body string }{
		{http.MethodPost, "/api/v1/embed", `{"inputs":"a"}`},
		{http.MethodPost, "/embed", `{"inputs":"a"}`},
		{http.MethodPost, "/v1/embeddings", `{"input":"a"}`},
		{http.MethodPost, "/embeddings", `{"input":"a"}`},
		{http.MethodPost, "/tokenize", `{"inputs":"a"}`},
		{http.MethodGet, "/v1/models", ``},
		{http.MethodGet, "/info", ``},
	}
	for _, r := range guarded {
		t.Run(r.path, func(t *testing.T) {
			s.limiter = ratelimit.NewMemory(ratelimit.MemoryOptions{})
			resp, body := s.do(t, r.method, r.path, "application/json", r.body)
			if resp.StatusCode != 401 {
				t.Errorf("without key = %d, want 401 (%s)", resp.StatusCode, body)
			}
			if isOpenAI(r.path) && !strings.Contains(string(body), `"code":"invalid_api_key"`) {
				t.Errorf("401 body = %s, want code invalid_api_key", body)
			}
			checkErrorShape(t, r.path, body, "")
			resp, body = s.do(t, r.method, r.path, "application/json", r.body, "Authorization", "Bearer "+tinyKey)
			if resp.StatusCode != 200 || resp.Header.Get("x-ratelimit-limit-requests") != "1" {
				t.Errorf("with key = %d, limit %q; want 200, 1 (%s)", resp.StatusCode, resp.Header.Get("x-ratelimit-limit-requests"), body)
			}
			resp, body = s.do(t, r.method, r.path, "application/json", r.body, "Authorization", "Bearer "+tinyKey)
			if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
				t.Errorf("over limit = %d Retry-After %q, want 429 (%s)", resp.StatusCode, resp.Header.Get("Retry-After"), body)
			}
		})
	}
	for _, path := range []string{"/health", "/ready", "/metrics"} {
		if resp, _ := s.do(t, http.MethodGet, path, "", ""); resp.StatusCode != 200 || resp.Header.Get("x-ratelimit-limit-requests") != "" {
			t.Errorf("GET %s without key = %d, want 200 without rate-limit headers", path, resp.StatusCode)
		}
	}
}

func TestRequireKey(t *testing.T) {
	logs := &testenv.LogBuffer{}
	srv, err := newServer(Options{BodyLimit: testBodyLimit, RequestTimeout: 2 * time.Second},
		slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), oneModel(newFake()), prometheus.NewRegistry(), testKeys(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.App().Shutdown() })
	s := &testServer{Server: srv, logs: logs}
	tests := []struct {
		name    string
		headers []string
		status  int
		msg     string
		wantErr error
	}{
		{"bearer", []string{"Authorization", "Bearer " + teamAKey}, 200, "", nil},
		{"lowercase bearer", []string{"Authorization", "bearer " + teamAKey}, 200, "", nil},
		{"api-key header", []string{"api-key", teamAKey}, 200, "", nil},
		{"missing", nil, 401, "missing API key", auth.ErrMissing},
		{"malformed", []string{"Authorization", "Basic " + teamAKey}, 401, "malformed Authorization header", auth.ErrMissing},
		{"wrong", []string{"Authorization", "Bearer sk-wrong"}, 401, "invalid API key", auth.ErrUnknown},
		{"disabled", []string{"Authorization", "Bearer " + disabledKey}, 401, "disabled", auth.ErrDisabled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := s.post(t, "/embed", `{"inputs":"a"}`, tt.headers...)
			if resp.StatusCode != tt.status || !strings.Contains(string(body), tt.msg) {
				t.Errorf("status %d body %s, want %d containing %q", resp.StatusCode, body, tt.status, tt.msg)
			}
			for _, secret := range []string{teamAKey, disabledKey} {
				if strings.Contains(string(body), secret) {
					t.Errorf("response shows a key: %s", body)
				}
			}
		})
	}
	out := logs.String()
	if !strings.Contains(out, "key_name=old") || !strings.Contains(out, "key=team-a") {
		t.Errorf("the keys' names were not logged: %s", out)
	}
	for _, secret := range []string{teamAKey, disabledKey, "sk-wrong"} {
		if strings.Contains(out, secret) {
			t.Errorf("log shows a key %q:\n%s", secret, out)
		}
	}
}

func TestSubject(t *testing.T) {
	tests := []struct {
		name  string
		trust bool
		xff   []string
		want  string
	}{
		{"remote address", false, nil, "ip:0.0.0.0"},
		{"header ignored without trust", false, []string{"203.0.113.9"}, "ip:0.0.0.0"},
		{"last entry wins", true, []string{"198.51.100.1, 203.0.113.9"}, "ip:203.0.113.9"},
		{"last header line wins", true, []string{"198.51.100.1", "203.0.113.7"}, "ip:203.0.113.7"},
		{"unparsable last hop is the peer", true, []string{"203.0.113.5, not-an-ip"}, "ip:0.0.0.0"},
		{"empty last hop is the peer", true, []string{"203.0.113.5,"}, "ip:0.0.0.0"},
		{"address with port", true, []string{"198.51.100.1, 203.0.113.5:5555"}, "ip:203.0.113.5"},
		{"no address falls back", true, []string{"unknown"}, "ip:0.0.0.0"},
		{"ipv6 grouped by /64", true, []string{"2001:db8:1:2:aaaa::1"}, "ip:2001:db8:1:2::/64"},
		{"ipv4-mapped is ipv4", true, []string{"::ffff:192.0.2.1"}, "ip:192.0.2.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Server{opts: Options{TrustProxyHeaders: tt.trust}}
			var got string
			app := fiber.New()
			app.Get("/", func(c *fiber.Ctx) error { got = s.subject(c, &record{}); return nil })
			var hdr []string
			for _, v := range tt.xff {
				hdr = append(hdr, "X-Forwarded-For", v)
			}
			getWithHeaders(t, app, hdr)
			if got != tt.want {
				t.Errorf("subject with X-Forwarded-For %q = %q, want %q", tt.xff, got, tt.want)
			}
		})
	}
	s := &Server{}
	if got := s.subject(nil, &record{key: &auth.Key{Name: "alice"}}); got != "key:alice" {
		t.Errorf("subject of a key = %q, want key:alice", got)
	}
}

// getWithHeaders sends GET / to app with hdr's pairs added, repeats kept.
func getWithHeaders(t *testing.T, app *fiber.App, hdr []string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "/", nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := app.Test(req, -1)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

func TestWriteLimitHeaders(t *testing.T) {
	tests := []struct {
		name   string
		rec    record
		status int
		want   map[string]string
	}{
		{"allowed", record{requests: &ratelimit.Result{Allowed: true, Limit: 50, Remaining: 49, Reset: 12500 * time.Microsecond}}, 200,
			map[string]string{"x-ratelimit-limit-requests": "50", "x-ratelimit-remaining-requests": "49", "x-ratelimit-reset-requests": "13ms"}},
		{"refused tokens", record{tokenLimit: &ratelimit.Result{Limit: 1000, Remaining: 12, Reset: 6 * time.Minute, RetryAfter: 1200 * time.Millisecond},
			retryAfter: 1200 * time.Millisecond}, 429,
			map[string]string{"x-ratelimit-limit-tokens": "1000", "x-ratelimit-remaining-tokens": "12", "x-ratelimit-reset-tokens": "6m0s",
				"Retry-After": "2", "retry-after-ms": "1200"}},
		{"whole second", record{requests: &ratelimit.Result{Limit: 1, Reset: time.Second}, retryAfter: time.Second}, 429,
			map[string]string{"x-ratelimit-limit-requests": "1", "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s",
				"Retry-After": "1", "retry-after-ms": "1000"}},
		{"tiny retry is at least 1s", record{requests: &ratelimit.Result{Limit: 80, Reset: time.Microsecond}, retryAfter: time.Microsecond}, 429,
			map[string]string{"x-ratelimit-limit-requests": "80", "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1ms",
				"Retry-After": "1", "retry-after-ms": "1"}},
		{"overloaded, no limits", record{retryAfter: 2500 * time.Millisecond}, 429, map[string]string{"Retry-After": "3", "retry-after-ms": "2500"}},
		{"no limit", record{requests: &ratelimit.Result{Allowed: true}}, 200, map[string]string{}},
		{"store down, open", record{requests: &ratelimit.Result{Allowed: true, StoreDown: true}}, 200, map[string]string{}},
		{"store down, closed", record{requests: &ratelimit.Result{StoreDown: true}, retryAfter: 500 * time.Millisecond}, 429,
			map[string]string{"Retry-After": "1", "retry-after-ms": "500"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h fasthttp.ResponseHeader
			h.DisableNormalizing()
			writeLimitHeaders(&h, &tt.rec, tt.status)
			got := map[string]string{}
			h.VisitAll(func(k, v []byte) {
				if k := string(k); k != "Content-Type" && k != "Server" && k != "Date" {
					got[k] = string(v)
				}
			})
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("headers = %v, want %v", got, tt.want)
			}
		})
	}
}

// stubLimiter answers every request with res and err: how the server
// reacts to a Redis that is down or hung (ratelimit's own tests run the
// real Redis through both).
type stubLimiter struct {
	res ratelimit.Result
	err error
}

func (s stubLimiter) AllowRequest(context.Context, string, ratelimit.Limit) (ratelimit.Result, error) {
	return s.res, s.err
}
func (s stubLimiter) AllowTokens(context.Context, string, ratelimit.Limit, int) (ratelimit.Result, error) {
	return s.res, s.err
}

func TestLimiterDownAndErrors(t *testing.T) {
	tests := []struct {
		name   string
		lim    stubLimiter
		status int
		kind   string
	}{
		{"fail closed", stubLimiter{res: ratelimit.Result{StoreDown: true, RetryAfter: 500 * time.Millisecond}}, 429, "RateLimited"},
		{"fail open", stubLimiter{res: ratelimit.Result{Allowed: true, StoreDown: true}}, 200, ""},
		{"deadline", stubLimiter{err: fmt.Errorf("ratelimit: %w", context.DeadlineExceeded)}, 504, "Backend"},
		{"broken", stubLimiter{err: errors.New("ratelimit: bug")}, 500, "Internal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, newFake(), nil, tt.lim)
			resp, body := s.post(t, "/embed", `{"inputs":"a"}`)
			if resp.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d (%s)", resp.StatusCode, tt.status, body)
			}
			if tt.kind != "" {
				checkErrorShape(t, "/embed", body, tt.kind)
			}
			if tt.status == 429 && (resp.Header.Get("Retry-After") != "1" || resp.Header.Get("retry-after-ms") != "500") {
				t.Errorf("Retry-After %q retry-after-ms %q, want 1 and 500", resp.Header.Get("Retry-After"), resp.Header.Get("retry-after-ms"))
			}
		})
	}
}

// A client guessing keys is slowed down: after authFailures.TPM failures a
// minute every request from its address is 429, the right key's too, so a
// lucky guess looks like the others; other addresses are not affected.
func TestFailedAuthenticationsLimited(t *testing.T) {
	logs := &testenv.LogBuffer{}
	srv, err := newServer(Options{BodyLimit: testBodyLimit, RequestTimeout: 2 * time.Second, TrustProxyHeaders: true},
		slog.New(slog.NewJSONHandler(logs, nil)), oneModel(newFake()), prometheus.NewRegistry(), testKeys(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.App().Shutdown() })
	s := &testServer{Server: srv, logs: logs}
	from := func(addr, key string) int {
		resp, _ := s.post(t, "/v1/embeddings", `{"input":"a"}`, "X-Forwarded-For", addr, "Authorization", "Bearer "+key)
		return resp.StatusCode
	}
	for i := range authFailures.TPM {
		if got := from("203.0.113.1", fmt.Sprintf("sk-guess-%d", i)); got != 401 {
			t.Fatalf("wrong key %d = %d, want 401", i, got)
		}
	}
	if got := from("203.0.113.1", "sk-guess-more"); got != 429 {
		t.Errorf("wrong key past the allowance = %d, want 429", got)
	}
	resp, body := s.post(t, "/v1/embeddings", `{"input":"a"}`, "X-Forwarded-For", "203.0.113.1", "Authorization", "Bearer "+teamAKey)
	if resp.StatusCode != 429 || resp.Header.Get("retry-after-ms") == "" {
		t.Errorf("right key from the guessing address = %d (retry-after-ms %q), want 429 with a retry", resp.StatusCode, resp.Header.Get("retry-after-ms"))
	}
	checkErrorShape(t, "/v1/embeddings", body, "requests")
	if got := from("203.0.113.2", teamAKey); got != 200 {
		t.Errorf("right key from another address = %d, want 200", got)
	}
}
