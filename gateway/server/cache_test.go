package server

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/auth"
)

func TestCacheDirectives(t *testing.T) {
	tests := []struct {
		name             string
		values           []string
		noCache, noStore bool
	}{
		{"none", nil, false, false},
		{"no-cache", []string{"no-cache"}, true, false},
		{"no-store", []string{"no-store"}, false, true},
		{"case and spaces", []string{"  No-Cache ,NO-STORE"}, true, true},
		{"in a list with arguments", []string{"max-age=0, no-cache, private"}, true, false},
		{"over several headers", []string{"max-age=0", "no-store"}, false, true},
		{"argument ignored", []string{`no-cache="x-foo"`}, true, false},
		{"lookalikes", []string{"no-cached, xno-store, no_store, max-age=no-cache"}, false, false},
		{"empty parts", []string{",, ,"}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var vs [][]byte
			for _, v := range tt.values {
				vs = append(vs, []byte(v))
			}
			noCache, noStore := cacheDirectives(vs)
			if noCache != tt.noCache || noStore != tt.noStore {
				t.Errorf("cacheDirectives(%q) = %v, %v, want %v, %v", tt.values, noCache, noStore, tt.noCache, tt.noStore)
			}
		})
	}
}

// cachingFake answers every input, saying the first cached of them came
// from the cache, and keeps the last request it got.
func cachingFake(cached int, got **gateway.EmbedRequest) *fakeEngine {
	f := newFake()
	f.embed = func(_ context.Context, req *gateway.EmbedRequest) (*gateway.EmbedResult, error) {
		*got = req
		res := &gateway.EmbedResult{Cached: min(cached, len(req.Inputs)), Usage: gateway.Usage{PromptTokens: 3}}
		for range req.Inputs {
			res.Embeddings = append(res.Embeddings, []float32{1, 0, 0, 0})
		}
		return res, nil
	}
	return f
}

// The server turns Cache-Control and the API key into the request's cache
// fields, and the result's count into x-embedgate-cache, native timings
// and the log line, on every embedding route.
func TestCacheRequestAndHeader(t *testing.T) {
	routes := []struct{ path, body string }{
		{"/api/v1/embed", `{"inputs":["a","b"]}`},
		{"/embed", `{"inputs":["a","b"]}`},
		{"/", `{"inputs":["a","b"]}`},
		{"/v1/embeddings", `{"input":["a","b"]}`},
		{"/embeddings", `{"input":["a","b"]}`},
	}
	tests := []struct {
		name              string
		cacheOn, perKey   bool
		cached            int
		control, key      string
		header, scope     string
		noLookup, noStore bool
	}{
		{"miss", true, false, 0, "", "", "miss", "", false, false},
		{"partial", true, false, 1, "", "", "partial", "", false, false},
		{"hit", true, false, 2, "", "", "hit", "", false, false},
		{"no-cache refreshes", true, false, 0, "No-Cache", "", "miss", "", true, false},
		{"no-store", true, false, 0, "max-age=0, no-store", "", "", "", true, true},
		{"per key", true, true, 2, "", teamAKey, "hit", "team-a", false, false},
		{"per key without a key", true, true, 0, "", "", "miss", "", false, false},
		{"shared with a key", true, false, 0, "", teamAKey, "miss", "", false, false},
		{"cache off", false, false, 0, "", "", "", "", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got *gateway.EmbedRequest
			var keys *auth.Keys
			if tt.key != "" {
				keys = testKeys(t)
			}
			s := newCatalogServer(t, oneModel(cachingFake(tt.cached, &got)), keys, nil, func(o *Options) {
				o.Cache, o.CachePerKey = tt.cacheOn, tt.perKey
			})
			var auth []string
			if tt.key != "" {
				auth = []string{"Authorization", "Bearer " + tt.key}
			}
			for _, r := range routes {
				got = nil
				resp, body := s.post(t, r.path, r.body, append([]string{"Cache-Control", tt.control}, auth...)...)
				if resp.StatusCode != 200 || got == nil {
					t.Fatalf("POST %s = %d %s", r.path, resp.StatusCode, body)
				}
				if h := resp.Header.Get(headerCache); h != tt.header {
					t.Errorf("POST %s: %s = %q, want %q", r.path, headerCache, h, tt.header)
				}
				if got.CacheScope != tt.scope || got.NoCacheLookup != tt.noLookup || got.NoCacheStore != tt.noStore {
					t.Errorf("POST %s: engine got scope %q, no lookup %v, no store %v; want %q, %v, %v", r.path,
						got.CacheScope, got.NoCacheLookup, got.NoCacheStore, tt.scope, tt.noLookup, tt.noStore)
				}
				if r.path == "/api/v1/embed" {
					var res struct{ Timings map[string]any }
					mustJSON(t, body, &res)
					if res.Timings["cached"] != float64(tt.cached) {
						t.Errorf("native timings = %v, want cached %d", res.Timings, tt.cached)
					}
				}
			}
			if resp, body := s.post(t, "/tokenize", `{"inputs":"a"}`, auth...); resp.StatusCode != 200 {
				t.Fatalf("tokenize: %d %s", resp.StatusCode, body)
			}
			lines := logLines(t, s.logs)
			if tokenize := lines[len(lines)-1]; tokenize["cached"] != nil {
				t.Errorf("tokenize log line %v has cached", tokenize)
			}
			for _, l := range lines[:len(lines)-1] {
				cached, ok := l["cached"]
				if ok != tt.cacheOn || (ok && cached != float64(tt.cached)) {
					t.Errorf("log line %v: cached = %v (present %v), want %d when the cache is on (%v)", l, cached, ok, tt.cached, tt.cacheOn)
				}
			}
		})
	}
}

// Errors carry no cache header: nothing was served.
func TestCacheHeaderNotOnErrors(t *testing.T) {
	s := newCatalogServer(t, oneModel(newFake()), nil, nil, func(o *Options) { o.Cache = true })
	resp, body := s.post(t, "/embed", `{"inputs":[]}`)
	if resp.StatusCode == 200 {
		t.Fatalf("empty inputs: 200 %s, want an error", body)
	}
	if h := resp.Header.Get(headerCache); h != "" {
		t.Errorf("error %d has %s %q", resp.StatusCode, headerCache, h)
	}
	var e map[string]any
	if err := json.Unmarshal(body, &e); err != nil {
		t.Errorf("error body %s: %v", body, err)
	}
}
