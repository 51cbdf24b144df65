package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/embedgate/embedgate/gateway"
)

// testApp is a fiber app whose error handler does what the server's will
// for these kinds: 429 with Retry-After, 401, 500.
func testApp(mw fiber.Handler, h fiber.Handler) *fiber.App {
	app := fiber.New(fiber.Config{ErrorHandler: func(c *fiber.Ctx, err error) error {
		var ge *gateway.Error
		if !errors.As(err, &ge) {
			return c.Status(500).SendString(err.Error())
		}
		switch ge.Kind {
		case gateway.RateLimited:
			c.Set("Retry-After", strconv.Itoa(RetryAfterSeconds(ge.RetryAfter)))
			return c.Status(429).SendString(ge.Msg)
		default:
			return c.Status(500).SendString(ge.Msg)
		}
	}})
	app.Post("/embed", mw, h)
	return app
}

func do(t *testing.T, app *fiber.App, req *http.Request) *http.Response {
	t.Helper()
	resp, err := app.Test(req, -1)
	if err != nil {
		t.Fatalf("app.Test: %v", err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestMiddlewareRequests(t *testing.T) {
	lim := NewMemory(MemoryOptions{})
	app := testApp(Middleware(lim, Limit{RPS: 1, Burst: 2}, ByClientIP(false)),
		func(c *fiber.Ctx) error { return c.SendString("ok") })

	for i, want := range []struct {
		status    int
		remaining string
	}{{200, "1"}, {200, "0"}, {429, "0"}} {
		resp := do(t, app, httptest.NewRequest("POST", "/embed", nil))
		if resp.StatusCode != want.status {
			t.Fatalf("request %d: status %d, want %d", i, resp.StatusCode, want.status)
		}
		h := resp.Header
		if h.Get("x-ratelimit-limit-requests") != "2" || h.Get("x-ratelimit-remaining-requests") != want.remaining {
			t.Errorf("request %d: limit %q remaining %q, want 2 and %s", i, h.Get("x-ratelimit-limit-requests"), h.Get("x-ratelimit-remaining-requests"), want.remaining)
		}
		if _, err := time.ParseDuration(h.Get("x-ratelimit-reset-requests")); err != nil {
			t.Errorf("request %d: x-ratelimit-reset-requests %q: %v", i, h.Get("x-ratelimit-reset-requests"), err)
		}
		if want.status == 429 {
			if h.Get("Retry-After") != "1" || h.Get("retry-after-ms") == "" {
				t.Errorf("429: Retry-After %q retry-after-ms %q, want 1 and a value", h.Get("Retry-After"), h.Get("retry-after-ms"))
			}
		} else if h.Get("Retry-After") != "" {
			t.Errorf("request %d: Retry-After %q on a %d", i, h.Get("Retry-After"), want.status)
		}
		if h.Get("x-ratelimit-limit-tokens") != "" {
			t.Errorf("request %d: token headers without a token limit", i)
		}
	}
}

func TestMiddlewareTokens(t *testing.T) {
	lim := NewMemory(MemoryOptions{})
	app := testApp(Middleware(lim, Limit{RPS: 100, Burst: 100, TPM: 1000}, ByClientIP(false)),
		func(c *fiber.Ctx) error {
			n, _ := strconv.Atoi(c.Query("tokens"))
			if err := ChargeTokens(c.UserContext(), c, n); err != nil {
				return err
			}
			return c.SendString("ok")
		})
	for i, tt := range []struct {
		tokens    int
		status    int
		remaining string
	}{
		{600, 200, "400"},
		{500, 429, "400"}, // over what remains: refused, nothing charged
		{400, 200, "0"},
		{2000, 429, "0"}, // over the whole limit
	} {
		resp := do(t, app, httptest.NewRequest("POST", "/embed?tokens="+strconv.Itoa(tt.tokens), nil))
		h := resp.Header
		if resp.StatusCode != tt.status || h.Get("x-ratelimit-remaining-tokens") != tt.remaining || h.Get("x-ratelimit-limit-tokens") != "1000" {
			t.Errorf("step %d (%d tokens): status %d, tokens limit %q remaining %q; want %d, 1000, %s",
				i, tt.tokens, resp.StatusCode, h.Get("x-ratelimit-limit-tokens"), h.Get("x-ratelimit-remaining-tokens"), tt.status, tt.remaining)
		}
		if tt.status == 429 && h.Get("Retry-After") == "" {
			t.Errorf("step %d: 429 without Retry-After", i)
		}
	}
}

func TestByClientIP(t *testing.T) {
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
		{"garbage skipped", true, []string{"203.0.113.5, not-an-ip"}, "ip:203.0.113.5"},
		{"no address falls back", true, []string{"unknown"}, "ip:0.0.0.0"},
		{"ipv6 grouped by /64", true, []string{"2001:db8:1:2:aaaa::1"}, "ip:2001:db8:1:2::/64"},
		{"ipv4-mapped is ipv4", true, []string{"::ffff:192.0.2.1"}, "ip:192.0.2.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got string
			app := fiber.New()
			app.Get("/", func(c *fiber.Ctx) error {
				got, _ = ByClientIP(tt.trust)(c)
				return nil
			})
			req := httptest.NewRequest("GET", "/", nil)
			for _, v := range tt.xff {
				req.Header.Add("X-Forwarded-For", v)
			}
			do(t, app, req)
			if got != tt.want {
				t.Errorf("ByClientIP(%v) with X-Forwarded-For %q = %q, want %q", tt.trust, tt.xff, got, tt.want)
			}
		})
	}
}

func TestSetHeaders(t *testing.T) {
	tests := []struct {
		name string
		r    Result
		kind Kind
		want map[string]string
	}{
		{"allowed", Result{Allowed: true, Limit: 50, Remaining: 49, Reset: 12500 * time.Microsecond}, Requests,
			map[string]string{"x-ratelimit-limit-requests": "50", "x-ratelimit-remaining-requests": "49", "x-ratelimit-reset-requests": "13ms"}},
		{"refused", Result{Limit: 1000, Remaining: 12, Reset: 6 * time.Minute, RetryAfter: 1200 * time.Millisecond}, Tokens,
			map[string]string{"x-ratelimit-limit-tokens": "1000", "x-ratelimit-remaining-tokens": "12", "x-ratelimit-reset-tokens": "6m0s",
				"Retry-After": "2", "retry-after-ms": "1200"}},
		{"whole second", Result{Limit: 1, Reset: time.Second, RetryAfter: time.Second}, Requests,
			map[string]string{"x-ratelimit-limit-requests": "1", "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s",
				"Retry-After": "1", "retry-after-ms": "1000"}},
		{"tiny retry is at least 1s", Result{Limit: 80, Reset: time.Microsecond, RetryAfter: time.Microsecond}, Requests,
			map[string]string{"x-ratelimit-limit-requests": "80", "x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1ms",
				"Retry-After": "1", "retry-after-ms": "1"}},
		{"no limit", Result{Allowed: true}, Requests, map[string]string{}},
		{"store down, open", Result{Allowed: true, StoreDown: true}, Requests, map[string]string{}},
		{"store down, closed", Result{StoreDown: true, RetryAfter: 500 * time.Millisecond}, Requests,
			map[string]string{"Retry-After": "1", "retry-after-ms": "500"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := map[string]string{}
			SetHeaders(func(k, v string) { got[k] = v }, tt.r, tt.kind)
			if len(got) != len(tt.want) {
				t.Errorf("SetHeaders(%+v) = %v, want %v", tt.r, got, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("SetHeaders(%+v)[%s] = %q, want %q", tt.r, k, got[k], v)
				}
			}
		})
	}
}

func TestLimitOr(t *testing.T) {
	d := Limit{RPS: 80, Burst: 50, TPM: 1000}
	if got := (Limit{RPS: 5}).Or(d); got != (Limit{RPS: 5, Burst: 50, TPM: 1000}) {
		t.Errorf("Limit{RPS: 5}.Or(%+v) = %+v", d, got)
	}
	if got := (Limit{}).Or(d); got != d {
		t.Errorf("Limit{}.Or(%+v) = %+v, want the defaults", d, got)
	}
}

// stubLimiter answers every request with res and err.
type stubLimiter struct {
	res Result
	err error
}

func (s stubLimiter) AllowRequest(context.Context, string, Limit) (Result, error) {
	return s.res, s.err
}
func (s stubLimiter) AllowTokens(context.Context, string, Limit, int) (Result, error) {
	return s.res, s.err
}

func TestMiddlewareStoreDownAndErrors(t *testing.T) {
	var got error
	app := fiber.New(fiber.Config{ErrorHandler: func(c *fiber.Ctx, err error) error {
		got = err
		return c.SendStatus(599)
	}})
	ok := func(c *fiber.Ctx) error { return c.SendString("ok") }
	app.Post("/closed", Middleware(stubLimiter{res: Result{StoreDown: true, RetryAfter: 500 * time.Millisecond}}, Limit{RPS: 1}, ByClientIP(false)), ok)
	app.Post("/open", Middleware(stubLimiter{res: Result{Allowed: true, StoreDown: true}}, Limit{RPS: 1}, ByClientIP(false)), ok)
	app.Post("/deadline", Middleware(stubLimiter{err: fmt.Errorf("ratelimit: %w", context.DeadlineExceeded)}, Limit{RPS: 1}, ByClientIP(false)), ok)

	resp := do(t, app, httptest.NewRequest("POST", "/closed", nil))
	var ge *gateway.Error
	if !errors.As(got, &ge) || ge.Kind != gateway.RateLimited || ge.RetryAfter != 500*time.Millisecond || resp.Header.Get("Retry-After") != "1" {
		t.Errorf("fail-closed: error %v, Retry-After %q; want RateLimited with RetryAfter 500ms and header 1", got, resp.Header.Get("Retry-After"))
	}
	got = nil
	if resp := do(t, app, httptest.NewRequest("POST", "/open", nil)); resp.StatusCode != 200 || got != nil {
		t.Errorf("fail-open: status %d, error %v; want 200", resp.StatusCode, got)
	}
	do(t, app, httptest.NewRequest("POST", "/deadline", nil))
	if gateway.KindOf(got) != gateway.Timeout {
		t.Errorf("limiter deadline: error %v (kind %v), want kind Timeout", got, gateway.KindOf(got))
	}
}
