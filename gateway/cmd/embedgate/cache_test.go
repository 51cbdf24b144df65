package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/embedgate/embedgate/gateway/backend/triton/tritontest"
	"github.com/embedgate/embedgate/gateway/internal/redistest"
)

// The end-to-end tests of the embedding cache. Hits are proven by the
// Triton stand-in's count of ModelInfer calls: a request the cache serves
// whole makes none.

// cacheResult is one embedding answer as the cache tests read it.
type cacheResult struct {
	status int
	cache  string      // x-embedgate-cache
	cached int         // the native route's timings.cached; -1 elsewhere
	vecs   [][]float32 // in input order
	body   []byte
}

// embedVia posts body to path (native, TEI or OpenAI) and decodes the
// vectors; headers are name, value pairs.
func embedVia(t *testing.T, g *instance, path, body string, headers ...string) cacheResult {
	t.Helper()
	r := g.post(t, path, body, headers...)
	res := cacheResult{status: r.status, cache: r.header.Get("x-embedgate-cache"), cached: -1, body: r.body}
	if r.status != 200 {
		return res
	}
	switch path {
	case "/api/v1/embed":
		n := decode[nativeResponse](t, r)
		for _, d := range n.Data {
			res.vecs = append(res.vecs, d.Embedding)
		}
		c, ok := n.Timings["cached"].(float64)
		if !ok {
			t.Fatalf("native timings without cached: %s", r.body)
		}
		res.cached = int(c)
	case "/v1/embeddings", "/embeddings":
		for _, d := range decode[embedding](t, r).Data {
			res.vecs = append(res.vecs, d.Embedding)
		}
	default:
		res.vecs = decode[[][]float32](t, r)
	}
	return res
}

// native embeds texts on the native route with the extra JSON fields.
func native(t *testing.T, g *instance, texts []string, extra string, headers ...string) cacheResult {
	t.Helper()
	in, err := json.Marshal(texts)
	if err != nil {
		t.Fatal(err)
	}
	body := `{"inputs":` + string(in) + extra + `}`
	return embedVia(t, g, "/api/v1/embed", body, headers...)
}

// infers runs f and returns the ModelInfer calls it made on srv.
func infers(srv *tritontest.Server, f func()) int64 {
	before := srv.InferCount()
	f()
	return srv.InferCount() - before
}

// want checks a cached answer: its status 200, its header, and, on the
// native route, its count of cached inputs.
func (r cacheResult) want(t *testing.T, what, header string, cached int) {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("%s: %d %s", what, r.status, r.body)
	}
	if r.cache != header {
		t.Errorf("%s: x-embedgate-cache %q, want %q", what, r.cache, header)
	}
	if r.cached >= 0 && r.cached != cached {
		t.Errorf("%s: timings.cached %d, want %d", what, r.cached, cached)
	}
}

// sameBits fails unless got and want are the same float32s, bit for bit.
func sameBits(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d dims, want %d", what, len(got), len(want))
	}
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s: dim %d = %v, want exactly %v", what, i, got[i], want[i])
		}
	}
}

// cacheOn is env with the cache on, memory tier only unless env says more.
func cacheOn(env map[string]string) map[string]string {
	env["CACHE"] = "true"
	return env
}

// cacheOff is env with no cache: the reference of uncached answers.
func cacheOff(env map[string]string) map[string]string {
	env["CACHE"] = "false"
	return env
}

// TestCacheHitsSkipTheBackend: a repeated request never reaches the
// backend; a partly cached one sends only its misses and merges them in
// input order; every embedding route says how the cache served it.
func TestCacheHitsSkipTheBackend(t *testing.T) {
	t.Parallel()
	srv, _ := startTriton(t)
	g := startGateway(t, cacheOn(tritonEnv(t, srv)))
	ref := startGateway(t, cacheOff(tritonEnv(t, srv)))

	var first, again, mixed cacheResult
	if n := infers(srv, func() { first = native(t, g, []string{"alpha beta", "gamma"}, "") }); n == 0 {
		t.Error("first request: no inference")
	}
	first.want(t, "first request", "miss", 0)
	if n := infers(srv, func() { again = native(t, g, []string{"alpha beta", "gamma"}, "") }); n != 0 {
		t.Errorf("repeated request: %d inferences, want 0", n)
	}
	again.want(t, "repeated request", "hit", 2)
	for i := range first.vecs {
		sameBits(t, fmt.Sprintf("repeated input %d", i), again.vecs[i], first.vecs[i])
	}

	// Two hits and two misses, interleaved: one batch of the two misses.
	texts := []string{"delta", "alpha beta", "epsilon zeta", "gamma"}
	if n := infers(srv, func() { mixed = native(t, g, texts, "") }); n != 1 {
		t.Errorf("partly cached request: %d inferences, want 1 (one batch of its misses)", n)
	}
	mixed.want(t, "partly cached request", "partial", 2)
	if req, _ := srv.LastInfer(); req == nil || req.GetInputs()[0].GetShape()[0] != 2 {
		t.Errorf("the backend got %v, want a batch of the 2 misses", req.GetInputs()[0].GetShape())
	}
	sameBits(t, "hit at index 1", mixed.vecs[1], first.vecs[0])
	sameBits(t, "hit at index 3", mixed.vecs[3], first.vecs[1])
	for _, i := range []int{0, 2} {
		want := native(t, ref, []string{texts[i]}, "").vecs[0]
		assertClose(t, fmt.Sprintf("miss at index %d", i), mixed.vecs[i], want, 1e-5)
	}

	// Every embedding route: all four are cached now.
	for _, path := range []string{"/embed", "/", "/v1/embeddings", "/embeddings", "/api/v1/embed"} {
		field := "inputs"
		if strings.Contains(path, "embeddings") {
			field = "input"
		}
		var r cacheResult
		if n := infers(srv, func() {
			r = embedVia(t, g, path, `{"`+field+`":["epsilon zeta","delta","gamma","alpha beta"]}`)
		}); n != 0 {
			t.Errorf("%s: %d inferences, want 0", path, n)
		}
		r.want(t, path, "hit", 4)
		if len(r.vecs) != 4 {
			t.Fatalf("%s: %d vectors", path, len(r.vecs))
		}
		sameBits(t, path+" input 3", r.vecs[3], first.vecs[0])
	}
	if !strings.Contains(g.logs.String(), "cached=4") || !strings.Contains(g.logs.String(), "cached=0") {
		t.Errorf("request log lines lack cached=N:\n%s", g.logs.String())
	}
	if strings.Contains(ref.logs.String(), "cached=") {
		t.Error("a gateway without a cache logs cached=N")
	}
	if r := ref.post(t, "/embed", `{"inputs":"gamma"}`); r.header.Get("x-embedgate-cache") != "" {
		t.Errorf("a gateway without a cache sends x-embedgate-cache %q", r.header.Get("x-embedgate-cache"))
	}
}

// TestCacheVariantsShareAnEntry: one cached vector serves every normalize
// and dimensions variant, and each answer is bit for bit the one a gateway
// without a cache gives (on the onnx backend, a session of its own).
func TestCacheVariantsShareAnEntry(t *testing.T) {
	t.Parallel()
	g := startGateway(t, cacheOn(baseEnv(t)))
	ref := startGateway(t, cacheOff(baseEnv(t)))
	const text = "The quick brown fox jumps over the lazy dog"
	native(t, g, []string{text}, `,"normalize":false`).want(t, "first request", "miss", 0)
	variants := []struct{ path, body string }{
		{"/api/v1/embed", `{"inputs":["` + text + `"],"normalize":false}`},
		{"/api/v1/embed", `{"inputs":["` + text + `"],"normalize":true}`},
		{"/api/v1/embed", `{"inputs":["` + text + `"],"normalize":true,"dimensions":8}`},
		{"/api/v1/embed", `{"inputs":["` + text + `"],"normalize":false,"dimensions":16}`},
		{"/embed", `{"inputs":"` + text + `"}`},
		{"/v1/embeddings", `{"input":"` + text + `","dimensions":12}`},
	}
	for _, v := range variants {
		got := embedVia(t, g, v.path, v.body)
		got.want(t, v.path+" "+v.body, "hit", 1)
		want := embedVia(t, ref, v.path, v.body)
		if want.status != 200 {
			t.Fatalf("reference %s: %d %s", v.body, want.status, want.body)
		}
		sameBits(t, v.path+" "+v.body, got.vecs[0], want.vecs[0])
	}
	// base64 carries the raw float32 bytes: the same text, byte for byte.
	body := `{"input":"` + text + `","encoding_format":"base64","dimensions":10}`
	got, want := g.post(t, "/v1/embeddings", body), ref.post(t, "/v1/embeddings", body)
	if got.header.Get("x-embedgate-cache") != "hit" {
		t.Errorf("base64: x-embedgate-cache %q, want hit", got.header.Get("x-embedgate-cache"))
	}
	type b64 struct {
		Data []struct {
			Embedding string `json:"embedding"`
		} `json:"data"`
	}
	if a, b := decode[b64](t, got).Data[0].Embedding, decode[b64](t, want).Data[0].Embedding; a != b {
		t.Errorf("base64 from the cache %s, want %s", a, b)
	}
}

// TestCacheKeyIsWhatTheModelSees: texts that tokenize alike share an
// entry; another model, prompt or truncation does not.
func TestCacheKeyIsWhatTheModelSees(t *testing.T) {
	t.Parallel()
	srv, dir := startTriton(t)
	file := filepath.Join(t.TempDir(), "models.yaml")
	writeFile(t, file, fmt.Sprintf(`models:
  - name: a
    model_id: %[1]s
    backend: triton
    triton_model: %[2]s
    max_input_length: 8
  - name: b
    model_id: %[1]s
    backend: triton
    triton_model: %[2]s
`, dir, srv.Name()))
	env := catalogueEnv(t)
	env["MODELS_FILE"], env["TRITON_URL"] = file, srv.Addr()
	g := startGateway(t, cacheOn(env))
	// /ready waits for the default model only: b's calibration batches
	// would count as inferences of the steps below.
	waitFor(t, func() bool {
		info := decode[struct {
			Models []struct {
				State string `json:"state"`
			} `json:"models"`
		}](t, g.get(t, "/info"))
		return len(info.Models) == 2 && info.Models[0].State == "ready" && info.Models[1].State == "ready"
	}, "both models ready")

	// BERT's pre-tokenizer splits on any whitespace: the same ids.
	ids := func(text string) []int {
		toks := decode[[][]struct {
			ID int `json:"id"`
		}](t, g.post(t, "/tokenize", `{"inputs":"`+text+`","model":"a"}`))
		var out []int
		for _, tok := range toks[0] {
			out = append(out, tok.ID)
		}
		return out
	}
	if !slices.Equal(ids("  hello   world "), ids("hello world")) {
		t.Fatal("the two texts tokenize differently: pick others")
	}
	long := "one two three four five six seven eight nine ten"
	steps := []struct {
		what, text, extra, header string
	}{
		{"first", "  hello   world ", `,"model":"a"`, "miss"},
		{"the same ids", "hello world", `,"model":"a"`, "hit"},
		{"another model", "hello world", `,"model":"b"`, "miss"},
		{"a prompt", "hello world", `,"model":"a","prompt_name":"query"`, "miss"},
		{"that prompt again", "hello world", `,"model":"a","prompt_name":"query"`, "hit"},
		{"truncated", long, `,"model":"a","truncate":true`, "miss"},
		{"another tail, cut off", long + " eleven twelve", `,"model":"a","truncate":true`, "hit"},
		{"truncated on the left", long, `,"model":"a","truncate":true,"truncation_direction":"left"`, "miss"},
		{"the other model, untruncated", long, `,"model":"b","truncate":true`, "miss"},
	}
	for _, s := range steps {
		var r cacheResult
		n := infers(srv, func() { r = native(t, g, []string{s.text}, s.extra) })
		cached := map[string]int{"hit": 1, "miss": 0}[s.header]
		r.want(t, s.what, s.header, cached)
		if (n == 0) != (s.header == "hit") {
			t.Errorf("%s: %d inferences for a %s", s.what, n, s.header)
		}
	}
}

// TestCacheScope: with API keys, entries are per key by default; with
// --cache-scope shared, one key's entries serve another.
func TestCacheScope(t *testing.T) {
	t.Parallel()
	srv, _ := startTriton(t)
	keys := filepath.Join(t.TempDir(), "keys.yaml")
	writeFile(t, keys, "keys:\n  - {name: alice, key: sk-alice}\n  - {name: bob, key: sk-bob}\n")
	for _, tc := range []struct {
		scope   string
		bobHits bool
	}{{"", false}, {"key", false}, {"shared", true}} {
		t.Run("scope "+tc.scope, func(t *testing.T) {
			env := cacheOn(tritonEnv(t, srv))
			env["API_KEYS_FILE"], env["CACHE_SCOPE"] = keys, tc.scope
			g := startGateway(t, env)
			text := []string{"a text only " + tc.scope + " sees"}
			alice, bob := []string{"Authorization", "Bearer sk-alice"}, []string{"Authorization", "Bearer sk-bob"}
			native(t, g, text, "", alice...).want(t, "alice", "miss", 0)
			native(t, g, text, "", alice...).want(t, "alice again", "hit", 1)
			if tc.bobHits {
				native(t, g, text, "", bob...).want(t, "bob", "hit", 1)
			} else {
				native(t, g, text, "", bob...).want(t, "bob", "miss", 0)
				native(t, g, text, "", bob...).want(t, "bob again", "hit", 1)
			}
		})
	}
}

// TestCacheControl: no-cache skips the lookup and refreshes the entry;
// no-store skips both, and the answer says nothing about the cache.
func TestCacheControl(t *testing.T) {
	t.Parallel()
	srv, _ := startTriton(t)
	g := startGateway(t, cacheOn(tritonEnv(t, srv)))
	cc := func(v string) []string { return []string{"Cache-Control", v} }
	steps := []struct {
		what   string
		texts  []string
		header []string
		want   string // x-embedgate-cache
		infers bool
	}{
		{"store x", []string{"x"}, nil, "miss", true},
		{"x no-cache", []string{"x"}, cc("no-cache"), "miss", true},
		{"x after no-cache", []string{"x"}, nil, "hit", false},
		{"x no-store", []string{"x"}, cc("No-Store"), "", true},
		{"y no-store", []string{"y"}, cc("max-age=0, no-store"), "", true},
		{"y was not stored", []string{"y"}, nil, "miss", true},
		{"z no-cache stores", []string{"z", "x"}, cc("no-cache"), "miss", true},
		{"z after no-cache", []string{"z", "y", "x"}, nil, "hit", false},
	}
	for _, s := range steps {
		var r cacheResult
		n := infers(srv, func() { r = native(t, g, s.texts, "", s.header...) })
		if r.status != 200 || r.cache != s.want {
			t.Errorf("%s: %d x-embedgate-cache %q, want 200 %q", s.what, r.status, r.cache, s.want)
		}
		if (n > 0) != s.infers {
			t.Errorf("%s: %d inferences, want some: %v", s.what, n, s.infers)
		}
	}
}

// redisKeys counts the cache's entries in Redis.
func redisKeys(t *testing.T, rds *redistest.Server) int {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: rds.Addr()})
	defer c.Close()
	keys, err := c.Keys(context.Background(), "embedgate:cache:*").Result()
	if err != nil {
		t.Fatalf("redis KEYS: %v", err)
	}
	return len(keys)
}

// copyModel copies dir's files into a new directory, config.json changed
// as a new revision of the model would change it.
func copyModel(t *testing.T, dir string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if rel == "config.json" {
			b = append(slices.Clone(b), '\n')
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestCacheReplicasShareRedis: an input embedded through one gateway is a
// hit on another that shares the Redis tier, bit for bit, without an
// inference; a gateway whose model files changed shares nothing.
func TestCacheReplicasShareRedis(t *testing.T) {
	t.Parallel()
	rds := redistest.Start(t)
	srv, dir := startTriton(t)
	env := func(modelDir string) map[string]string {
		e := cacheOn(tritonEnv(t, srv))
		// One name: only the files tell the changed model apart.
		e["MODEL_ID"], e["SERVED_MODEL_NAME"], e["CACHE_REDIS_URL"] = modelDir, "embed", rds.URL()
		return e
	}
	a, b := startGateway(t, env(dir)), startGateway(t, env(dir))
	changed := startGateway(t, env(copyModel(t, dir)))

	texts := []string{"shared between replicas", "and another one"}
	first := native(t, a, texts, "")
	first.want(t, "through a", "miss", 0)
	// Written back in the background, after the answer.
	waitFor(t, func() bool { return redisKeys(t, rds) == len(texts) }, "both entries in Redis")
	var onB cacheResult
	if n := infers(srv, func() { onB = native(t, b, texts, "") }); n != 0 {
		t.Errorf("through b: %d inferences, want 0", n)
	}
	onB.want(t, "through b", "hit", 2)
	for i := range texts {
		sameBits(t, fmt.Sprintf("b's input %d", i), onB.vecs[i], first.vecs[i])
	}
	native(t, changed, texts, "").want(t, "through a gateway with changed model files", "miss", 0)
	waitFor(t, func() bool { return redisKeys(t, rds) == 2*len(texts) }, "the changed model's entries beside the others")
	if !strings.Contains(string(b.get(t, "/metrics").body), `embedgate_cache_hits_total{model="`) {
		t.Error("/metrics lacks embedgate_cache_hits_total")
	}
}

// TestCacheRedisKilledUnderLoad: Redis killed and restarted while
// clients embed: every request is answered 200, and once Redis is back
// its hits return. The memory tier is off, so every hit is Redis's.
func TestCacheRedisKilledUnderLoad(t *testing.T) {
	t.Parallel()
	rds := redistest.Start(t)
	env := cacheOn(baseEnv(t))
	env["CACHE_REDIS_URL"], env["CACHE_MEMORY_MB"] = rds.URL(), "0"
	g := startGateway(t, env)

	var mu sync.Mutex
	statuses := map[int]int{}
	headers := map[string]int{}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for c := range 4 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				texts := []string{fmt.Sprintf("text %d", (c+i)%8), fmt.Sprintf("text %d", (c+i+3)%8)}
				r := native(t, g, texts, "")
				mu.Lock()
				statuses[r.status]++
				headers[r.cache]++
				mu.Unlock()
			}
		})
	}
	defer func() { stop(); wg.Wait() }()
	hits := func() int { mu.Lock(); defer mu.Unlock(); return headers["hit"] }
	answered := func() int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, c := range statuses {
			n += c
		}
		return n
	}
	waitFor(t, func() bool { return hits() > 0 }, "hits from Redis")
	rds.Kill()
	down := answered()
	waitFor(t, func() bool { return answered() >= down+40 }, "40 answers with Redis down")
	rds.Restart()
	before := hits()
	waitFor(t, func() bool { return hits() > before+10 }, "hits from Redis once it is back")
	stop()
	wg.Wait()
	if len(statuses) != 1 || statuses[200] == 0 {
		t.Errorf("statuses %v, want only 200", statuses)
	}
	// One line when Redis went, one when it came back: not one per request.
	logs := g.logs.String()
	if down, up := strings.Count(logs, "cache redis unreachable"), strings.Count(logs, "cache redis reachable again"); down != 1 || up != 1 {
		t.Errorf("%d lines saying the cache's Redis is down and %d saying it is back, want 1 and 1", down, up)
	}
	if m := string(g.get(t, "/metrics").body); !strings.Contains(m, "embedgate_cache_redis_up 1") {
		t.Error("/metrics: embedgate_cache_redis_up is not 1 once Redis is back")
	}
}
