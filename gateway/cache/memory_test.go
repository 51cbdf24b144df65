package cache

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/embedgate/embedgate/gateway/internal/testenv"
)

// newMemoryCache is a cache with only the memory tier, bounded at max bytes.
func newMemoryCache(t *testing.T, max int64) (*Cache, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	c, err := New(Options{MemoryBytes: max}, slog.New(slog.DiscardHandler), reg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, reg
}

// key is a distinct key per n.
func key(n int) Key {
	return NewKey("test", "", []int32{int32(n)}, nil)
}

// vec is a vector of length dim whose values tell n apart.
func vec(n, dim int) []float32 {
	v := make([]float32, dim)
	for i := range v {
		v[i] = float32(n) + float32(i)/float32(dim)
	}
	return v
}

// held lists the memory tier's keys as the n given to key, most recently
// used first (-1 for a key no n below 1000 gives).
func held(m *memory) []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []int
	for el := m.order.Front(); el != nil; el = el.Next() {
		k := el.Value.(*entry).key
		n := -1
		for i := range 1000 {
			if key(i) == k {
				n = i
				break
			}
		}
		out = append(out, n)
	}
	return out
}

func costOf(dim int) int64 {
	_, c := ownCopy(make([]float32, dim))
	return c
}

func TestMemoryHitsAndMisses(t *testing.T) {
	c, reg := newMemoryCache(t, 1<<20)
	ctx := context.Background()
	c.Put("m", []Key{key(1), key(2)}, [][]float32{vec(1, 8), vec(2, 8)})

	got, st := c.Get(ctx, "m", 8, []Key{key(2), key(3), key(1)})
	if st != (Stats{Memory: 2, Misses: 1}) {
		t.Errorf("Stats = %+v, want 2 memory hits and 1 miss", st)
	}
	if !slices.Equal(got[0], vec(2, 8)) || got[1] != nil || !slices.Equal(got[2], vec(1, 8)) {
		t.Errorf("Get = %v, want [vec 2, nil, vec 1]", got)
	}
	if n := testenv.Metric(t, reg, "embedgate_cache_hits_total", "tier", "memory", "model", "m"); n != 2 {
		t.Errorf("hits{memory,m} = %v, want 2", n)
	}
	if n := testenv.Metric(t, reg, "embedgate_cache_misses_total", "model", "m"); n != 1 {
		t.Errorf("misses{m} = %v, want 1", n)
	}
	if n := testenv.Metric(t, reg, "embedgate_cache_memory_entries"); n != 2 {
		t.Errorf("memory_entries = %v, want 2", n)
	}
	if n := testenv.Metric(t, reg, "embedgate_cache_memory_bytes"); n != float64(2*costOf(8)) {
		t.Errorf("memory_bytes = %v, want %d", n, 2*costOf(8))
	}
}

// Put stores copies: the caller may reuse its vectors; and what Get
// returns cannot be grown into another caller's view.
func TestMemoryOwnsItsVectors(t *testing.T) {
	c, _ := newMemoryCache(t, 1<<20)
	in := vec(1, 5)
	c.Put("m", []Key{key(1)}, [][]float32{in})
	in[0] = -1
	got, _ := c.Get(context.Background(), "m", 5, []Key{key(1)})
	if !slices.Equal(got[0], vec(1, 5)) {
		t.Fatalf("after the caller changed its vector, Get = %v, want %v", got[0], vec(1, 5))
	}
	if cap(got[0]) != len(got[0]) {
		t.Errorf("returned vector has spare capacity %d: an append would write into the cache's array", cap(got[0])-len(got[0]))
	}
}

func TestMemoryWrongLengthIsDeleted(t *testing.T) {
	c, _ := newMemoryCache(t, 1<<20)
	ctx := context.Background()
	c.Put("m", []Key{key(1)}, [][]float32{vec(1, 8)})
	// A dim that no vector has is the caller's mistake: misses, nothing lost.
	for _, dim := range []int{0, -1} {
		if _, st := c.Get(ctx, "m", dim, []Key{key(1)}); st != (Stats{Misses: 1}) {
			t.Errorf("Get with dim %d: %+v, want one miss", dim, st)
		}
	}
	if _, st := c.Get(ctx, "m", 8, []Key{key(1)}); st.Memory != 1 {
		t.Fatalf("after lookups with dim <= 0, the entry is gone: %+v", st)
	}
	if _, st := c.Get(ctx, "m", 4, []Key{key(1)}); st != (Stats{Misses: 1}) {
		t.Errorf("Get with another length: %+v, want one miss", st)
	}
	if _, st := c.Get(ctx, "m", 8, []Key{key(1)}); st != (Stats{Misses: 1}) {
		t.Errorf("after a wrong-length lookup, Get = %+v, want a miss (entry deleted)", st)
	}
	if b, n := c.mem.size(); b != 0 || n != 0 {
		t.Errorf("memory holds %d bytes in %d entries, want none", b, n)
	}
}

func TestMemoryBadPutStoresNothing(t *testing.T) {
	c, _ := newMemoryCache(t, 1<<20)
	c.Put("m", []Key{key(1), key(2)}, [][]float32{vec(1, 8)})
	c.Put("m", []Key{key(3), key(4)}, [][]float32{nil, {}})
	if _, n := c.mem.size(); n != 0 {
		t.Errorf("memory holds %d entries after mismatched and empty puts, want 0", n)
	}
}

// TestMemoryLRUOrder: the least recently used entry goes first; a Get
// and a Put both count as a use.
func TestMemoryLRUOrder(t *testing.T) {
	const dim = 16
	c, _ := newMemoryCache(t, 3*costOf(dim))
	ctx := context.Background()
	put := func(n int) { c.Put("m", []Key{key(n)}, [][]float32{vec(n, dim)}) }
	put(1)
	put(2)
	put(3)
	c.Get(ctx, "m", dim, []Key{key(1)}) // 2 is now the least recently used
	put(4)
	if got, want := held(c.mem), []int{4, 1, 3}; !slices.Equal(got, want) {
		t.Fatalf("after get 1, put 4: held %v, want [4 1 3]", got)
	}
	put(3) // a re-put is a use, and replaces rather than adds
	put(5)
	if got, want := held(c.mem), []int{5, 3, 4}; !slices.Equal(got, want) {
		t.Fatalf("after put 3, put 5: held %v, want [5 3 4]", got)
	}
	// A larger vector evicts as many as it needs, oldest first.
	c.Put("m", []Key{key(6)}, [][]float32{vec(6, 2*dim)})
	if got, want := held(c.mem), []int{6, 5}; !slices.Equal(got, want) {
		t.Fatalf("after a double-size put: held %v, want [6 5]", got)
	}
	// A vector larger than the whole tier is not stored and evicts nothing.
	c.Put("m", []Key{key(7)}, [][]float32{vec(7, int(3*costOf(dim))/4)})
	if got, want := held(c.mem), []int{6, 5}; !slices.Equal(got, want) {
		t.Fatalf("after an oversize put: held %v, want [6 5]", got)
	}
}

// TestMemoryBoundUnderRandomWorkload runs a long random mix of puts and
// gets of vectors of many sizes (some larger than the tier) and checks the
// bound after every Put, and the bookkeeping at the end.
func TestMemoryBoundUnderRandomWorkload(t *testing.T) {
	const max = 256 << 10
	c, reg := newMemoryCache(t, max)
	rng := rand.New(rand.NewPCG(1, 2))
	dims := []int{1, 3, 64, 384, 768, 1000, 1536, 4096}
	const oversize = 70000           // larger than the tier: a key in 64
	src := make([]float32, oversize) // Put copies: one source serves all
	ctx := context.Background()
	for op := range 20000 {
		n := 1 + rng.IntN(8)
		keys := make([]Key, n)
		for i := range keys {
			keys[i] = key(rng.IntN(2000))
		}
		// A key's vector length is fixed, as it is for a model's keys.
		dimOf := func(k Key) int {
			if k[0]%64 == 0 {
				return oversize
			}
			return dims[int(k[1])%len(dims)]
		}
		if rng.IntN(2) == 0 {
			vecs := make([][]float32, n)
			for i, k := range keys {
				vecs[i] = src[:dimOf(k)]
			}
			c.Put("m", keys, vecs)
			if b, _ := c.mem.size(); b > max {
				t.Fatalf("op %d: memory tier holds %d bytes, bound %d", op, b, max)
			}
			continue
		}
		got, _ := c.Get(ctx, "m", dimOf(keys[0]), keys[:1])
		if got[0] != nil && len(got[0]) != dimOf(keys[0]) {
			t.Fatalf("op %d: got a vector of %d, want %d", op, len(got[0]), dimOf(keys[0]))
		}
	}
	var sum int64
	m := c.mem
	m.mu.Lock()
	for el := m.order.Front(); el != nil; el = el.Next() {
		e := el.Value.(*entry)
		sum += e.cost
		if m.items[e.key] != el {
			t.Errorf("list entry %x not in the map", e.key[:4])
		}
	}
	entries := m.order.Len()
	if len(m.items) != entries || sum != m.used {
		t.Errorf("map %d entries, list %d; costs sum to %d, used says %d", len(m.items), entries, sum, m.used)
	}
	m.mu.Unlock()
	if sum < max/2 {
		t.Errorf("memory tier holds only %d of %d bytes after the workload: evicts too much", sum, max)
	}
	if g := testenv.Metric(t, reg, "embedgate_cache_memory_bytes"); g != float64(sum) {
		t.Errorf("memory_bytes = %v, want %d", g, sum)
	}
	if g := testenv.Metric(t, reg, "embedgate_cache_memory_entries"); g != float64(entries) {
		t.Errorf("memory_entries = %v, want %d", g, entries)
	}
}

// TestEntryOverheadCoversHeap measures what entries really cost on the
// heap, at several map fills and vector sizes, against what the tier
// counts: the count must not be below it (else the bound would lie), nor
// far above it (else the tier would hold less than it may). Small n are
// left out: a few hundred entries are within the heap's noise.
func TestEntryOverheadCoversHeap(t *testing.T) {
	for _, dim := range []int{1, 100, 384, 1000} {
		for _, n := range []int{900, 1800, 3600, 7300} { // around the map's growth points
			t.Run(fmt.Sprintf("dim %d n %d", dim, n), func(t *testing.T) {
				m := newMemory(1 << 40)
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				src := make([]float32, dim)
				for start := 0; start < n; start += 100 {
					keys := make([]Key, 0, 100)
					vecs := make([][]float32, 0, 100)
					costs := make([]int64, 0, 100)
					for i := start; i < min(start+100, n); i++ {
						v, c := ownCopy(src)
						keys, vecs, costs = append(keys, key(i)), append(vecs, v), append(costs, c)
					}
					m.put(keys, vecs, costs)
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				heap := float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
				counted := float64(m.used) / float64(n)
				runtime.KeepAlive(m)
				if heap > counted {
					t.Errorf("an entry costs %.0f bytes on the heap, the tier counts %.0f", heap, counted)
				}
				if counted > heap+128 {
					t.Errorf("the tier counts %.0f bytes an entry, the heap shows %.0f: too pessimistic", counted, heap)
				}
			})
		}
	}
}

// TestMemoryConcurrent runs gets and puts from many goroutines (for -race),
// and checks every hit is the vector stored under its key.
func TestMemoryConcurrent(t *testing.T) {
	const dim = 32
	c, _ := newMemoryCache(t, 40*costOf(dim))
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			for range 2000 {
				ns := []int{rng.IntN(100), rng.IntN(100), rng.IntN(100)}
				keys := []Key{key(ns[0]), key(ns[1]), key(ns[2])}
				if rng.IntN(2) == 0 {
					c.Put("m", keys, [][]float32{vec(ns[0], dim), vec(ns[1], dim), vec(ns[2], dim)})
					continue
				}
				got, st := c.Get(ctx, "m", dim, keys)
				if st.Memory+st.Misses != len(keys) {
					t.Errorf("Stats %+v for %d keys", st, len(keys))
					return
				}
				for i, v := range got {
					if v != nil && !slices.Equal(v, vec(ns[i], dim)) {
						t.Errorf("key %d: got another key's vector", ns[i])
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if b, _ := c.mem.size(); b > 40*costOf(dim) {
		t.Errorf("memory tier holds %d bytes, bound %d", b, 40*costOf(dim))
	}
}

func TestNoMemoryTier(t *testing.T) {
	c, _ := newMemoryCache(t, 0)
	c.Put("m", []Key{key(1)}, [][]float32{vec(1, 8)})
	if _, st := c.Get(context.Background(), "m", 8, []Key{key(1)}); st != (Stats{Misses: 1}) {
		t.Errorf("without tiers, Get = %+v, want a miss", st)
	}
}

func TestOptionsErrors(t *testing.T) {
	for _, o := range []Options{
		{MemoryBytes: -1},
		{TTL: -time.Second},
		{TTL: 500 * time.Millisecond},
		{Timeout: -1},
		{ProbeInterval: -1},
	} {
		if _, err := New(o, slog.New(slog.DiscardHandler), nil); err == nil {
			t.Errorf("New(%+v) succeeded, want an error", o)
		}
	}
}

func TestMetricsRegistration(t *testing.T) {
	reg := prometheus.NewRegistry()
	c, err := New(Options{MemoryBytes: 1 << 20}, slog.New(slog.DiscardHandler), reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{MemoryBytes: 1 << 20}, slog.New(slog.DiscardHandler), reg); err == nil {
		t.Error("a second cache on one registry succeeded, want a registration error")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c2, err := New(Options{MemoryBytes: 1 << 20}, slog.New(slog.DiscardHandler), reg)
	if err != nil {
		t.Fatalf("New after Close gave the series back: %v", err)
	}
	_ = c2.Close()
}
