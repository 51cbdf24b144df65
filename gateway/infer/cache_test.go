//go:build cgo

package infer

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/cache"
	"github.com/embedgate/embedgate/gateway/pooling"
	"github.com/embedgate/embedgate/gateway/tokenizer"
)

// The cache tests run the tiny model on ONNX Runtime behind the real
// cache (its memory tier), and count what reaches the backend.

// counting counts the batches and rows that reach a backend; version,
// when set, is the model version its Spec reports.
type counting struct {
	Backend
	version     string
	calls, rows atomic.Int64
}

func (c *counting) Spec() gateway.ModelSpec {
	s := c.Backend.Spec()
	if c.version != "" {
		s.Version = c.version
	}
	return s
}

func (c *counting) Embed(ctx context.Context, b *gateway.Batch) (*gateway.Output, error) {
	c.calls.Add(1)
	c.rows.Add(int64(b.Rows))
	return c.Backend.Embed(ctx, b)
}

func newCache(t *testing.T) *cache.Cache {
	t.Helper()
	c, err := cache.New(cache.Options{MemoryBytes: 1 << 20}, discard(), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("close cache: %v", err)
		}
	})
	return c
}

// cached is model name's engine with the cache c and identity id; edit,
// if set, changes its options. It runs until the test ends.
func cached(t *testing.T, name, id string, c Cache, be Backend, tok *tokenizer.Tokenizer, edit func(*Options)) *Engine {
	t.Helper()
	opts := model(name, nil)
	opts.Cache, opts.Identity = c, id
	if edit != nil {
		edit(&opts)
	}
	eng := newModel(t, opts, be, tok, discard(), prometheus.NewRegistry())
	run(t, eng)
	return eng
}

func embedOK(t *testing.T, eng *Engine, req gateway.EmbedRequest) *gateway.EmbedResult {
	t.Helper()
	req.Truncate = true
	res, err := eng.Embed(context.Background(), &req)
	if err != nil {
		t.Fatalf("Embed(%+v) = %v", req.Inputs, err)
	}
	return res
}

// sameBits: a and b hold exactly the same float32 values, bit for bit.
func sameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// TestCacheHitsSkipTheBackend: a request repeated is answered from the
// cache, bit for bit, without a batch, and counts the same usage and
// token charge. A request whose inputs all hit never queues: it is
// answered while the backend holds another request's batch (an engine
// sharing the cache, as a second replica would), and its queue span
// notes the hits.
func TestCacheHitsSkipTheBackend(t *testing.T) {
	be, tok := openTiny(t)
	c := newCache(t)
	warm := &counting{Backend: be}
	a := cached(t, "m", "m|dir|onnx", c, warm, tok, nil)
	in := texts("alpha", "beta gamma", "delta epsilon zeta")
	first := embedOK(t, a, gateway.EmbedRequest{Inputs: in})
	if first.Cached != 0 || warm.rows.Load() != 3 {
		t.Fatalf("first request: %d cached, %d rows to the backend; want 0 and 3", first.Cached, warm.rows.Load())
	}
	charged := 0
	second := embedOK(t, a, gateway.EmbedRequest{Inputs: in, Charge: func(_ context.Context, n int) error { charged = n; return nil }})
	if second.Cached != 3 || warm.calls.Load() != 1 {
		t.Errorf("repeat: %d cached, %d backend calls; want 3 and 1", second.Cached, warm.calls.Load())
	}
	for i := range in {
		if !sameBits(second.Embeddings[i], first.Embeddings[i]) {
			t.Errorf("input %d from the cache differs from its computed vector", i)
		}
	}
	if second.Usage != first.Usage || charged != first.Usage.PromptTokens {
		t.Errorf("repeat: usage %+v, charged %d; want %+v and %d, as uncached", second.Usage, charged, first.Usage, first.Usage.PromptTokens)
	}

	rec, tracer := newRecorder()
	slow := holding(t, be)
	b := cached(t, "m", "m|dir|onnx", c, slow, tok, func(o *Options) { o.Tracer = tracer })
	held := make(chan error, 1)
	go func() {
		_, err := b.Embed(context.Background(), &gateway.EmbedRequest{Inputs: texts("held back"), Truncate: true})
		held <- err
	}()
	<-slow.arrived // b's only batch slot is taken until letGo
	// Were it queued, it would wait for the held batch: the deadline
	// only turns that into a failure instead of a hang.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := b.Embed(ctx, &gateway.EmbedRequest{Inputs: in, Truncate: true})
	if err != nil || res.Cached != 3 {
		t.Fatalf("all-hit request while the backend is held: %v, %+v; want 3 cached", err, res)
	}
	if n := b.backlog.Queued(); n != 0 {
		t.Errorf("backlog holds %d tokens after the all-hit request, want 0", n)
	}
	for i := range in {
		if !sameBits(res.Embeddings[i], first.Embeddings[i]) {
			t.Errorf("input %d through the second engine differs from its computed vector", i)
		}
	}
	var hits []int64
	for _, s := range named(rec.Ended(), "queue") {
		for _, kv := range s.Attributes() {
			if kv.Key == "embedgate.cache.hits" {
				hits = append(hits, kv.Value.AsInt64())
			}
		}
		if s.Status().Code.String() == "Error" {
			t.Errorf("queue span of the all-hit request ended in error: %v", s.Status())
		}
	}
	if len(hits) != 1 || hits[0] != 3 {
		t.Errorf("ended queue spans note hits %v, want [3] (the held request's has not ended)", hits)
	}
	slow.letGo()
	if err := <-held; err != nil {
		t.Fatalf("held request: %v", err)
	}
}

// TestPartialHitsMergeInOrder: of a request whose inputs partly hit, only
// the misses go to the backend, and every vector comes back at its
// input's place.
func TestPartialHitsMergeInOrder(t *testing.T) {
	be, tok := openTiny(t)
	cb := &counting{Backend: be}
	eng := cached(t, "m", "m|dir|onnx", newCache(t), cb, tok, nil)
	all := []string{"one", "two words", "three of them", "four is more", "five"}
	alone := make([][]float32, len(all))
	for i, s := range all { // each computed alone, kept out of the cache
		alone[i] = embedOK(t, eng, gateway.EmbedRequest{Inputs: texts(s), NoCacheStore: true}).Embeddings[0]
	}
	warm := embedOK(t, eng, gateway.EmbedRequest{Inputs: texts(all[1], all[3])})
	rows := cb.rows.Load()
	res := embedOK(t, eng, gateway.EmbedRequest{Inputs: texts(all...)})
	if res.Cached != 2 || cb.rows.Load()-rows != 3 {
		t.Errorf("%d cached, %d rows to the backend; want 2 and 3 (the misses)", res.Cached, cb.rows.Load()-rows)
	}
	if !sameBits(res.Embeddings[1], warm.Embeddings[0]) || !sameBits(res.Embeddings[3], warm.Embeddings[1]) {
		t.Error("the hits are not their cached vectors at their places (1 and 3)")
	}
	for i, v := range res.Embeddings {
		// The misses ran in a batch of another shape than alone: within
		// float error of their own vector, far from any other input's.
		for j, w := range alone {
			if near := maxDiff(v, w) < 1e-5; near != (i == j) {
				t.Errorf("vector %d near input %d's: %v, want %v", i, j, near, i == j)
			}
		}
	}
}

func maxDiff(a, b []float32) float64 {
	d := 0.0
	for i := range a {
		d = max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}

// TestOneEntryServesEveryShape: the cache holds the pooled vector before
// normalization and the Matryoshka cut, so every normalize/dimensions
// variant of an input is a hit, and answers the bytes an uncached
// request gets. The first request normalizes: had the engine stored
// what it answered, the raw variant would come out normalized.
func TestOneEntryServesEveryShape(t *testing.T) {
	be, tok := openTiny(t)
	cb := &counting{Backend: be}
	eng := cached(t, "m", "m|dir|onnx", newCache(t), cb, tok, nil)
	variants := []gateway.EmbedRequest{
		{Normalize: true, Dimensions: 8},
		{},
		{Normalize: true},
		{Dimensions: 4},
	}
	for i, v := range variants {
		v.Inputs = texts("the same input")
		v.NoCacheStore = true
		uncached := embedOK(t, eng, v)
		v.NoCacheStore = false
		calls := cb.calls.Load()
		got := embedOK(t, eng, v)
		wantCached, wantCalls := 1, int64(0)
		if i == 0 {
			wantCached, wantCalls = 0, 1 // the miss that stores the entry
		}
		name := fmt.Sprintf("normalize=%v dimensions=%d", v.Normalize, v.Dimensions)
		if got.Cached != wantCached || cb.calls.Load()-calls != wantCalls {
			t.Errorf("%s: %d cached, %d backend calls; want %d and %d", name, got.Cached, cb.calls.Load()-calls, wantCached, wantCalls)
		}
		if !sameBits(got.Embeddings[0], uncached.Embeddings[0]) {
			t.Errorf("%s: %v, want the uncached answer %v bit for bit", name, got.Embeddings[0], uncached.Embeddings[0])
		}
	}
}

// TestCacheKeysOnWhatTheModelSees: an input is a hit when the model would
// see the same tokens, whatever the request's form (token ids for a
// text), and a miss when anything that changes its vector changed: the
// prompt, the truncated end, the scope, the model's identity, its
// backend version, the pooling. Each of those is its own entry then.
func TestCacheKeysOnWhatTheModelSees(t *testing.T) {
	be, tok := openTiny(t)
	c := newCache(t)
	cb := &counting{Backend: be}
	const id = "m|dir|onnx"
	eng := cached(t, "m", id, c, cb, tok, nil)
	text := "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi"
	if n := len(tok.Encode(text, tokenizer.EncodeOptions{AddSpecialTokens: true}).IDs); n <= 16 {
		t.Fatalf("the long text is %d tokens: it must be longer than the max input length, 16", n)
	}
	short := texts("hello world")
	ids := []gateway.Input{{IsIDs: true, IDs: tok.Encode("hello world", tokenizer.EncodeOptions{AddSpecialTokens: true}).IDs}}
	embedOK(t, eng, gateway.EmbedRequest{Inputs: short})
	embedOK(t, eng, gateway.EmbedRequest{Inputs: texts(text)}) // cut at the right
	if res := embedOK(t, eng, gateway.EmbedRequest{Inputs: ids}); res.Cached != 1 {
		t.Errorf("the text's token ids: %d cached, want 1 (the model sees the same)", res.Cached)
	}
	other := func(edit func(*Options), version string) *Engine {
		return cached(t, "m", id, c, &counting{Backend: be, version: version}, tok, edit)
	}
	for _, tt := range []struct {
		name string
		eng  *Engine
		req  gateway.EmbedRequest
	}{
		{"prompt", eng, gateway.EmbedRequest{Inputs: short, PromptName: "query"}},
		{"left truncation", eng, gateway.EmbedRequest{Inputs: texts(text), Direction: gateway.Left}},
		{"scope", eng, gateway.EmbedRequest{Inputs: short, CacheScope: "key-a"}},
		{"identity", other(func(o *Options) { o.Identity = "m|other-commit|onnx" }, ""), gateway.EmbedRequest{Inputs: short}},
		{"backend version", other(nil, "2"), gateway.EmbedRequest{Inputs: short}},
		{"pooling", other(func(o *Options) { o.Pooling = pooling.CLS }, ""), gateway.EmbedRequest{Inputs: short}},
	} {
		if res := embedOK(t, tt.eng, tt.req); res.Cached != 0 {
			t.Errorf("%s changed: %d cached, want a miss", tt.name, res.Cached)
		}
		if res := embedOK(t, tt.eng, tt.req); res.Cached != 1 {
			t.Errorf("%s changed, repeated: %d cached, want a hit on its own entry", tt.name, res.Cached)
		}
	}
	if res := embedOK(t, eng, gateway.EmbedRequest{Inputs: short}); res.Cached != 1 {
		t.Errorf("the shared scope's entry after another scope's: %d cached, want 1", res.Cached)
	}
}

// TestCacheControl: NoCacheLookup computes the vector again and stores
// it; NoCacheStore neither looks up nor stores.
func TestCacheControl(t *testing.T) {
	be, tok := openTiny(t)
	cb := &counting{Backend: be}
	eng := cached(t, "m", "m|dir|onnx", newCache(t), cb, tok, nil)
	try := func(req gateway.EmbedRequest, wantCached int, wantCalls int64, what string) {
		t.Helper()
		calls := cb.calls.Load()
		if res := embedOK(t, eng, req); res.Cached != wantCached || cb.calls.Load()-calls != wantCalls {
			t.Errorf("%s: %d cached, %d backend calls; want %d and %d", what, res.Cached, cb.calls.Load()-calls, wantCached, wantCalls)
		}
	}
	try(gateway.EmbedRequest{Inputs: texts("stored")}, 0, 1, "first request")
	try(gateway.EmbedRequest{Inputs: texts("stored"), NoCacheLookup: true}, 0, 1, "no-cache of a cached input")
	try(gateway.EmbedRequest{Inputs: texts("stored"), NoCacheStore: true}, 0, 1, "no-store of a cached input")
	try(gateway.EmbedRequest{Inputs: texts("refreshed"), NoCacheLookup: true}, 0, 1, "no-cache of a new input")
	try(gateway.EmbedRequest{Inputs: texts("refreshed")}, 1, 0, "after no-cache")
	try(gateway.EmbedRequest{Inputs: texts("never"), NoCacheStore: true}, 0, 1, "no-store of a new input")
	try(gateway.EmbedRequest{Inputs: texts("never")}, 0, 1, "after no-store")
}

// A cache without the model's identity would mix models' vectors.
func TestCacheNeedsIdentity(t *testing.T) {
	be, tok := openTiny(t)
	opts := model("m", nil)
	opts.Cache = newCache(t)
	if _, err := New(opts, tok, be, discard(), prometheus.NewRegistry()); err == nil || !strings.Contains(err.Error(), "identity") {
		t.Errorf("New with a cache and no identity: %v, want an error naming the identity", err)
	}
}
