package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/embedgate/embedgate/gateway/internal/redistest"
)

// TestSharedRedisLimits runs two gateways on one Redis: a key's burst is
// shared across both, and another key is unaffected.
func TestSharedRedisLimits(t *testing.T) {
	t.Parallel()
	rds := redistest.Start(t)
	keys := filepath.Join(t.TempDir(), "keys.yaml")
	if err := os.WriteFile(keys, []byte("keys:\n- name: alice\n  key: sk-alice\n  rps: 0.001\n  burst: 5\n- name: bob\n  key: sk-bob\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func() map[string]string {
		e := baseEnv(t)
		e["REDIS_URL"], e["API_KEYS_FILE"] = rds.URL(), keys
		e["RATE_LIMIT_RPS"], e["RATE_LIMIT_BURST"] = "100", "100"
		return e
	}
	a, b := startGateway(t, env()), startGateway(t, env())
	admitted := 0
	for i := 0; i < 12; i++ {
		g := a
		if i%2 == 1 {
			g = b
		}
		r := g.post(t, "/embed", `{"inputs":"hi"}`, "Authorization", "Bearer sk-alice")
		switch r.status {
		case 200:
			admitted++
			if r.header.Get("x-ratelimit-limit-requests") != "5" {
				t.Errorf("x-ratelimit-limit-requests = %q, want 5", r.header.Get("x-ratelimit-limit-requests"))
			}
		case 429:
			if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 1 {
				t.Errorf("Retry-After = %q, want whole seconds >= 1", r.header.Get("Retry-After"))
			}
			if !strings.Contains(string(r.body), "RateLimited") {
				t.Errorf("429 body %s, want error_type RateLimited", r.body)
			}
		default:
			t.Fatalf("status %d: %s", r.status, r.body)
		}
	}
	if admitted != 5 {
		t.Errorf("admitted %d across two gateways, want the burst of 5", admitted)
	}
	if r := b.post(t, "/v1/embeddings", `{"input":"hi"}`, "api-key", "sk-bob"); r.status != 200 {
		t.Errorf("bob after alice's limit: %d %s", r.status, r.body)
	}
}

func TestAuth(t *testing.T) {
	t.Parallel()
	env := baseEnv(t)
	env["API_KEY"] = "sk-secret"
	g := startGateway(t, env)
	tests := []struct {
		name, header, value string
		status              int
	}{
		{"missing", "", "", 401},
		{"malformed", "Authorization", "sk-secret", 401},
		{"wrong", "Authorization", "Bearer sk-wrong", 401},
		{"right bearer", "Authorization", "Bearer sk-secret", 200},
		{"right api-key", "api-key", "sk-secret", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, path := range []string{"/embed", "/api/v1/embed", "/v1/embeddings"} {
				body := `{"inputs":"hi"}`
				if path == "/v1/embeddings" {
					body = `{"input":"hi"}`
				}
				r := g.post(t, path, body, tt.header, tt.value)
				if r.status != tt.status {
					t.Errorf("%s: %d %s, want %d", path, r.status, r.body, tt.status)
				}
				if tt.status == 401 && path == "/v1/embeddings" && decode[openaiError](t, r).Error.Code == nil {
					t.Errorf("%s: 401 without code invalid_api_key: %s", path, r.body)
				}
			}
		})
	}
	for _, path := range []string{"/health", "/ready", "/metrics"} {
		if r := g.get(t, path); r.status != 200 {
			t.Errorf("%s without a key: %d, want 200", path, r.status)
		}
	}
	for _, path := range []string{"/info", "/v1/models"} {
		if r := g.get(t, path); r.status != 401 {
			t.Errorf("%s without a key: %d, want 401", path, r.status)
		}
		if r := g.get(t, path, "Authorization", "Bearer sk-secret"); r.status != 200 {
			t.Errorf("%s with the key: %d, want 200", path, r.status)
		}
	}
	if strings.Contains(g.logs.String(), "sk-secret") || strings.Contains(g.logs.String(), "sk-wrong") {
		t.Error("a key appears in the logs")
	}
}
