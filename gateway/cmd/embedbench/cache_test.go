package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/embedgate/embedgate/gateway/internal/testenv"
	"github.com/embedgate/embedgate/gateway/tokenizer"
	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// bodyTexts reads the input texts back from a generated body, whatever
// its route.
func bodyTexts(t *testing.T, path string, body []byte) []string {
	t.Helper()
	var b struct {
		Input  []string `json:"input"`
		Inputs []string `json:"inputs"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	if path == "/v1/embeddings" {
		return b.Input
	}
	return b.Inputs
}

// Half the inputs of every request are new (never in the pool, never
// repeated), of the kind and length of the pool input they replace; the
// rest are the pool's, in place; the body carries them in order.
func TestHalfNewRequests(t *testing.T) {
	tok, err := tokenizer.LoadFile(filepath.Join(testenv.TinyModel(t), "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	pool, err := NewMix(cachePoolMix(1, 16))
	if err != nil {
		t.Fatal(err)
	}
	inPool := map[string]bool{}
	for _, r := range pool.Requests {
		for _, in := range r.Inputs {
			inPool[in.Text] = true
		}
	}
	h, err := newHalfNew(pool, 1, "m")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var newTokens, allTokens, newInputs, allInputs int
	for k := range uint64(64) {
		r, err := h.Request(k)
		if err != nil {
			t.Fatal(err)
		}
		base := pool.Requests[k%16]
		if r.Route != base.Route || len(r.Inputs) != len(base.Inputs) {
			t.Fatalf("request %d: route %d with %d inputs, pool request has route %d with %d", k, r.Route, len(r.Inputs), base.Route, len(base.Inputs))
		}
		texts := bodyTexts(t, r.Path, r.Body)
		if n := inputsFromRequestID(r.Header.Get("X-Request-Id")); n != len(r.Inputs) || len(texts) != n {
			t.Fatalf("request %d: id says %d inputs, body has %d, want %d", k, n, len(texts), len(r.Inputs))
		}
		for j, in := range r.Inputs {
			if texts[j] != in.Text {
				t.Fatalf("request %d input %d: body has %q, want %q", k, j, texts[j], in.Text)
			}
			allInputs++
			allTokens += in.Words
			if !fresh(k, j) {
				if in != base.Inputs[j] {
					t.Errorf("request %d input %d: %+v, want the pool's %+v", k, j, in, base.Inputs[j])
				}
				continue
			}
			newInputs++
			newTokens += in.Words
			if in.Kind != base.Inputs[j].Kind || in.Words != base.Inputs[j].Words {
				t.Errorf("request %d input %d: new input of kind %d, %d tokens; replaces kind %d, %d tokens", k, j, in.Kind, in.Words, base.Inputs[j].Kind, base.Inputs[j].Words)
			}
			if inPool[in.Text] || seen[in.Text] {
				t.Errorf("request %d input %d: %q was sent before", k, j, in.Text)
			}
			seen[in.Text] = true
			if got := len(tok.Encode(in.Text, tokenizer.EncodeOptions{AddSpecialTokens: true}).IDs); got != in.Words+2 {
				t.Errorf("request %d input %d: new input of %d tokens encodes to %d, want %d", k, j, in.Words, got, in.Words+2)
			}
		}
	}
	if share := float64(newInputs) / float64(allInputs); math.Abs(share-0.5) > 0.05 {
		t.Errorf("new inputs are %.2f of all, want 0.50 ± 0.05", share)
	}
	if share := float64(newTokens) / float64(allTokens); math.Abs(share-0.5) > 0.15 {
		t.Errorf("new inputs carry %.2f of the tokens, want 0.50 ± 0.15", share)
	}
	again, err := h.Request(37)
	if err != nil {
		t.Fatal(err)
	}
	if first, _ := h.Request(37); !bytes.Equal(first.Body, again.Body) {
		t.Error("request 37 built twice differs")
	}
}

// Every level run with the targeter sends requests 0, 1, 2, ...
func TestHalfNewTargeter(t *testing.T) {
	pool, err := NewMix(cachePoolMix(2, 4))
	if err != nil {
		t.Fatal(err)
	}
	h, err := newHalfNew(pool, 2, "m")
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		tr := h.Targeter("http://127.0.0.1:1")
		for k := range uint64(6) {
			var tg vegeta.Target
			if err := tr(&tg); err != nil {
				t.Fatal(err)
			}
			want, _ := h.Request(k)
			if tg.Method != http.MethodPost || tg.URL != "http://127.0.0.1:1"+want.Path || !bytes.Equal(tg.Body, want.Body) {
				t.Fatalf("target %d = %s %s %s, want request %d", k, tg.Method, tg.URL, tg.Body, k)
			}
		}
	}
}

func TestHalfNewBadInput(t *testing.T) {
	if _, err := newHalfNew(&Mix{}, 1, "m"); err == nil {
		t.Error("newHalfNew of an empty pool: want an error")
	}
	short := &Mix{Requests: []Request{{Inputs: []Input{{Words: 2, Text: "a b"}}}}}
	if _, err := newHalfNew(short, 1, "m"); err == nil || !strings.Contains(err.Error(), "shorter") {
		t.Errorf("newHalfNew of a pool with a 2-token input = %v, want an error about its length", err)
	}
	pool, err := NewMix(cachePoolMix(1, 2))
	if err != nil {
		t.Fatal(err)
	}
	h, err := newHalfNew(pool, 1, "m")
	if err != nil {
		t.Fatal(err)
	}
	// Numbers past what freshPrefix words can spell would repeat texts.
	last := pow(uint64(len(h.words)), freshPrefix)/h.maxInputs + 1
	if _, err := h.Request(last); err == nil || !strings.Contains(err.Error(), "out of new inputs") {
		t.Errorf("Request(%d) = %v, want an out-of-inputs error", last, err)
	}
}

// fakeCache answers 200 and says hit for bodies it has seen at least
// after lag answers, miss before: a gateway whose Redis writes land late.
type fakeCache struct {
	mu     sync.Mutex
	seen   map[string]int
	sent   int
	lag    int    // answers of a body before it is a hit
	status int    // answer status; 0 = 200
	header bool   // send x-embedgate-cache
	value  string // fixed header value instead of hit/miss, if set
}

func (f *fakeCache) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	n := f.seen[string(body)]
	f.seen[string(body)]++
	f.sent++
	f.mu.Unlock()
	if f.header {
		v := "miss"
		switch {
		case f.value != "":
			v = f.value
		case n > f.lag:
			v = "hit"
		}
		w.Header().Set(cacheHeader, v)
	}
	if f.status != 0 {
		w.WriteHeader(f.status)
	}
	_, _ = w.Write([]byte(`{}`))
}

func TestWarm(t *testing.T) {
	pool, err := NewMix(cachePoolMix(1, 12))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name     string
		f        *fakeCache
		want     map[string]int
		wantSent int
	}{
		{"hits after one send", &fakeCache{header: true}, map[string]int{"hit": 12}, 24},
		{"late writes: a second check", &fakeCache{header: true, lag: 1}, map[string]int{"hit": 12}, 36},
		{"never all hits: bounded", &fakeCache{header: true, value: "partial"}, map[string]int{"partial": 12}, 12 * (1 + warmPasses)},
		{"no cache: one check", &fakeCache{}, map[string]int{"": 12}, 24},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.f.seen = map[string]int{}
			srv := httptest.NewServer(tt.f)
			defer srv.Close()
			got, err := warm(t.Context(), srv.URL, pool, 4)
			if err != nil {
				t.Fatal(err)
			}
			if fmtCache(got) != fmtCache(tt.want) || tt.f.sent != tt.wantSent {
				t.Errorf("warm = %s after %d requests, want %s after %d", fmtCache(got), tt.f.sent, fmtCache(tt.want), tt.wantSent)
			}
		})
	}
	srv := httptest.NewServer(&fakeCache{seen: map[string]int{}, status: http.StatusServiceUnavailable})
	defer srv.Close()
	if _, err := warm(t.Context(), srv.URL, pool, 4); err == nil || !strings.Contains(err.Error(), "status 503") {
		t.Errorf("warm against a 503 = %v, want an error naming the status", err)
	}
}

// A real redis-server starts, answers, and is gone once killed.
func TestRedisServer(t *testing.T) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server is needed (Debian's redis-server package): %v", err)
	}
	logPath := filepath.Join(t.TempDir(), "logs", "redis.log")
	r, err := startRedis(t.Context(), bin, logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer r.kill()
	if !strings.HasPrefix(r.URL(), "redis://127.0.0.1:") {
		t.Errorf("URL = %q, want redis://127.0.0.1:port", r.URL())
	}
	if err := r.ping(t.Context()); err != nil {
		t.Fatalf("PING a started server: %v", err)
	}
	r.kill()
	if err := r.ping(t.Context()); err == nil {
		t.Error("PING after kill answered")
	}
	if _, err := os.Stat(r.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the server's directory %s is still there: %v", r.dir, err)
	}
	r.kill() // twice is harmless
	if _, err := startRedis(t.Context(), filepath.Join(t.TempDir(), "none"), logPath); err == nil {
		t.Error("startRedis of a missing binary: want an error")
	}
}

func TestScheduleMidway(t *testing.T) {
	begin := time.Now()
	called := make(chan struct{})
	result := scheduleMidway(begin, begin, func() string { close(called); return "did it" })
	<-called
	if got := result(); !strings.HasPrefix(got, "did it at ") {
		t.Errorf("result after it ran = %q, want %q and when", got, "did it at …")
	}
	ran := false
	result = scheduleMidway(begin, begin.Add(time.Hour), func() string { ran = true; return "x" })
	if got := result(); got != "" || ran {
		t.Errorf("result before it was due = %q (ran: %v), want it never run", got, ran)
	}
	if got := scheduleMidway(begin, begin, nil)(); got != "" {
		t.Errorf("result without a function = %q", got)
	}
}

func TestParseCacheFlags(t *testing.T) {
	base := []string{"embedbench", "-ort-lib", "x"}
	o, err := parseFlags(append(base, "-run", "onnx", "-quick", "-cache-pool", "100"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.cachePool != 32 || len(o.cacheBackends) != 1 || o.cacheBackends[0] != "onnx" || o.cacheClients != ratioClients {
		t.Errorf("pool %d, backends %v, clients %d; want 32 (quick), [onnx], %d", o.cachePool, o.cacheBackends, o.cacheClients, ratioClients)
	}
	for _, args := range [][]string{
		{"-cache-backends", "onnx,tei"},
		{"-cache-clients", "0"},
		{"-run", "cache", "-redis-server", filepath.Join(t.TempDir(), "none")},
	} {
		if _, err := parseFlags(append(base, args...), io.Discard); err == nil {
			t.Errorf("parseFlags(%v): want an error", args)
		}
	}
	// Without the cache runs, no redis-server is needed.
	if _, err := parseFlags(append(base, "-run", "onnx", "-redis-server", filepath.Join(t.TempDir(), "none")), io.Discard); err != nil {
		t.Errorf("parseFlags without cache runs: %v", err)
	}
}

func TestReportCache(t *testing.T) {
	lv := func(name string, tokens float64, p99 time.Duration, status map[int]int, cache map[string]int) *Level {
		return &Level{Name: name, Clients: 64, Makespan: 20 * time.Second, Tokens: tokens,
			Latency: quantiles{N: 100, P50: p99 / 2, P99: p99, Max: p99}, Status: status, Cache: cache}
	}
	offRepeat := lv("onnx, cache off: all repeat", 7000, 4*time.Second, map[int]int{200: 100}, map[string]int{"": 100})
	offHalf := lv("onnx, cache off: half new", 7100, 4*time.Second, map[int]int{200: 100}, map[string]int{"": 100})
	killed := lv("onnx, cache on: killed", 9000, 5*time.Second, map[int]int{200: 100}, map[string]int{"partial": 60, "miss": 40})
	killed.Event, killed.AfterEvent = "redis-server killed at 2.50s", quantiles{N: 40, P50: time.Second, P99: 5 * time.Second}
	rep := &Report{Date: time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC), CachePool: 64, Cache: []*CacheRun{
		{Workload: workRepeat, Backend: "onnx", Setup: setupBoth, Uncached: offRepeat, Warm: map[string]int{"hit": 64},
			Cached: lv("onnx, cache on: all repeat", 84000, 300*time.Millisecond, map[int]int{200: 1000}, map[string]int{"hit": 1000})},
		{Workload: workHalfNew, Backend: "onnx", Setup: setupBoth, Uncached: offHalf, Warm: map[string]int{"hit": 64},
			Cached: lv("onnx, cache on: half new", 12000, 3*time.Second, map[int]int{200: 100}, map[string]int{"partial": 90, "miss": 10})},
		{Workload: workKill, Backend: "onnx", Setup: setupRedisOnly, Uncached: offHalf, Cached: killed, Warm: map[string]int{"hit": 60, "partial": 4}},
		{Workload: workRepeat, Backend: "triton", Setup: setupBoth, Uncached: offRepeat,
			Cached: lv("triton, cache on: all repeat", 21000, time.Second, map[int]int{200: 10}, map[string]int{"": 10})},
	}}
	var buf bytes.Buffer
	if err := rep.Write(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"## Cache (issue 13)",
		"| all repeat | onnx | memory + Redis | 64 | 84000 | 7000 | 12.0 | 300ms | 4.00s | 0.07 | 200: 1000 | hit: 1000 |",
		"| half new | onnx | memory + Redis | 64 | 12000 | 7100 | 1.7 | 3.00s | 4.00s | 0.75 | 200: 100 | partial: 90, miss: 10 |",
		"| half new, Redis killed half way | onnx | Redis only (CACHE_MEMORY_MB=0) | 64 | 9000 | 7100 | 1.3 | 5.00s | 4.00s | 1.25 | 200: 100 | partial: 60, miss: 40 |",
		"- onnx, memory + Redis: warm-up check hit: 64\n",
		"- onnx, Redis only (CACHE_MEMORY_MB=0): warm-up check hit: 60, partial: 4\n",
		"- onnx, cache on: killed: redis-server killed at 2.50s; requests sent after it was due: p50 1.00s, p99 5.00s (n=40)",
		"- triton, all repeat; cache: memory + Redis: **no x-embedgate-cache header in any answer**",
		"| onnx, cache off: half new | 64 |", // the detailed levels, the shared baseline once
		"| cache, onnx, all repeat: tokens/s ÷ the same workload with the cache off | ≥ 10 | 12.0 (84000 / 7000 tokens/s); x-embedgate-cache hit: 1000 | met |",
		"| cache, onnx, half new, Redis killed half way: statuses; latency p99 ÷ the cache off | only 200; ≤ 2 | 200: 100; 1.25 (5.00s / 4.00s) | met |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "| onnx, cache off: half new | 64 |"); n != 1 {
		t.Errorf("the shared baseline is listed %d times, want once", n)
	}
	if strings.Contains(out, "cache, triton") {
		t.Error("the targets judge triton's cache runs; the issue's figures are onnx's")
	}

	// A 503, a p99 over 2×, or a kill that never happened misses.
	killed.Status = map[int]int{200: 99, 503: 1}
	rep.Cache[0].Cached.Tokens = 60000
	buf.Reset()
	if err := rep.Write(&buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| only 200; ≤ 2 | 200: 99, 503: 1; 1.25 (5.00s / 4.00s) | **missed** |",
		"| ≥ 10 | 8.6 (60000 / 7000 tokens/s); x-embedgate-cache hit: 1000 | **missed** |",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, buf.String())
		}
	}
	killed.Status, killed.Latency.P99 = map[int]int{200: 100}, 9*time.Second
	rep.Cache[0].Cached.Tokens, rep.Cache[0].Cached.Cache = 84000, map[string]int{"": 1000}
	buf.Reset()
	if err := rep.Write(&buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| only 200; ≤ 2 | 200: 100; 2.25 (9.00s / 4.00s) | **missed** |",
		"| ≥ 10 | 12.0 (84000 / 7000 tokens/s); x-embedgate-cache none: 1000 | **missed** |", // no cache at all cannot meet it
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, buf.String())
		}
	}
}

func TestFmtCache(t *testing.T) {
	for _, tt := range []struct {
		m    map[string]int
		want string
	}{
		{nil, "–"},
		{map[string]int{"miss": 1, "hit": 3, "partial": 2}, "hit: 3, partial: 2, miss: 1"},
		{map[string]int{"": 4, "odd": 1, "hit": 2}, `hit: 2, none: 4, "odd": 1`},
	} {
		if got := fmtCache(tt.m); got != tt.want {
			t.Errorf("fmtCache(%v) = %q, want %q", tt.m, got, tt.want)
		}
	}
}

func TestWithEnv(t *testing.T) {
	base := map[string]string{"A": "1", "CACHE": "false"}
	got := withEnv(base, "CACHE", "true", "B", "2")
	if got["A"] != "1" || got["CACHE"] != "true" || got["B"] != "2" || base["CACHE"] != "false" || len(base) != 2 {
		t.Errorf("withEnv = %v (base now %v)", got, base)
	}
}
