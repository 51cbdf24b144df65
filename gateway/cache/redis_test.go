package cache

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"

	"github.com/embedgate/embedgate/gateway/internal/redistest"
	"github.com/embedgate/embedgate/gateway/internal/testenv"
)

type redisFixture struct {
	c    *Cache
	reg  *prometheus.Registry
	logs *testenv.LogBuffer
}

// testOptions are fast to fail and to recover, for tests.
func testOptions(srv *redistest.Server, memoryBytes int64) Options {
	return Options{
		MemoryBytes:   memoryBytes,
		RedisURL:      srv.URL(),
		TTL:           time.Hour,
		Timeout:       100 * time.Millisecond,
		ProbeInterval: 50 * time.Millisecond,
	}
}

// newRedisCache is New (start: true) or newCache (the writer waits for
// Close) on opts, closed by the test's cleanup.
func newRedisCache(t *testing.T, opts Options, start bool) redisFixture {
	t.Helper()
	f := redisFixture{reg: prometheus.NewRegistry(), logs: &testenv.LogBuffer{}}
	logger := slog.New(slog.NewTextHandler(f.logs, nil))
	var err error
	if start {
		f.c, err = New(opts, logger, f.reg)
	} else {
		f.c, err = newCache(opts, logger, f.reg)
	}
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = f.c.Close() })
	return f
}

// inspect is a plain client, to look at and change what Redis holds.
func inspect(t *testing.T, srv *redistest.Server) *redis.Client {
	t.Helper()
	rc := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { _ = rc.Close() })
	return rc
}

// store puts keys' vectors in Redis through a cache of its own, and
// closes it: Close drains the writes, so they are in Redis on return.
func store(t *testing.T, srv *redistest.Server, keys []Key, vecs [][]float32) {
	t.Helper()
	c, err := New(testOptions(srv, 0), slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Put("m", keys, vecs)
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// dropped reads writes_dropped_total{reason} from the counter itself:
// Close gives the series back to the registry.
func dropped(t *testing.T, c *Cache, reason string) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.redis.m.dropped.WithLabelValues(reason).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// mgets is how many MGETs Redis has run.
func mgets(t *testing.T, rc *redis.Client) int {
	t.Helper()
	info, err := rc.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(info) {
		if rest, ok := strings.CutPrefix(line, "cmdstat_mget:calls="); ok {
			n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
			return n
		}
	}
	return 0
}

// TestRedisTiers: a vector stored through one cache is a Redis hit on
// another (two replicas), found with one MGET per Get, then a memory hit
// that does not touch Redis; the bits survive the trip.
func TestRedisTiers(t *testing.T) {
	srv := redistest.Start(t)
	rc := inspect(t, srv)
	odd := []float32{float32(math.Copysign(0, -1)), float32(math.Inf(1)), math.Float32frombits(0x7fc01234),
		math.Float32frombits(1), math.MaxFloat32, -1.5}
	store(t, srv, []Key{key(1), key(2)}, [][]float32{odd, vec(2, 6)})

	f := newRedisCache(t, testOptions(srv, 1<<20), true)
	ctx := context.Background()
	before := mgets(t, rc)
	got, st := f.c.Get(ctx, "m", 6, []Key{key(3), key(1), key(2)})
	if st != (Stats{Redis: 2, Misses: 1}) {
		t.Fatalf("first Get: %+v, want 2 Redis hits, 1 miss", st)
	}
	if n := mgets(t, rc) - before; n != 1 {
		t.Errorf("first Get ran %d MGETs, want 1", n)
	}
	if got[0] != nil || !slices.Equal(got[2], vec(2, 6)) {
		t.Errorf("Get = %v, want [nil, odd, vec 2]", got)
	}
	for i, x := range got[1] {
		if math.Float32bits(x) != math.Float32bits(odd[i]) {
			t.Errorf("value %d came back as %08x, stored %08x", i, math.Float32bits(x), math.Float32bits(odd[i]))
		}
	}

	_, st = f.c.Get(ctx, "m", 6, []Key{key(1), key(2)})
	if st != (Stats{Memory: 2}) {
		t.Errorf("second Get: %+v, want 2 memory hits (Redis hits fill memory)", st)
	}
	if n := mgets(t, rc) - before; n != 1 {
		t.Errorf("a Get served from memory ran an MGET (%d in all, want 1)", n)
	}
	for tier, want := range map[string]float64{"memory": 2, "redis": 2} {
		if n := testenv.Metric(t, f.reg, "embedgate_cache_hits_total", "tier", tier, "model", "m"); n != want {
			t.Errorf("hits{%s} = %v, want %v", tier, n, want)
		}
	}
	if n := testenv.Metric(t, f.reg, "embedgate_cache_redis_lookup_duration_seconds"); n != 1 {
		t.Errorf("lookup_duration count = %v, want 1", n)
	}
}

// TestRedisValueAndTTL: the value is the vector's fp32 little-endian bytes
// under embedgate:cache:<hex key>, set with the TTL.
func TestRedisValueAndTTL(t *testing.T) {
	srv := redistest.Start(t)
	rc := inspect(t, srv)
	v := vec(7, 3)
	store(t, srv, []Key{key(7)}, [][]float32{v})

	k := key(7)
	name := "embedgate:cache:" + hex.EncodeToString(k[:])
	raw, err := rc.Get(context.Background(), name).Bytes()
	if err != nil {
		t.Fatalf("GET %s: %v", name, err)
	}
	want := make([]byte, 0, 12)
	for _, x := range v {
		want = binary.LittleEndian.AppendUint32(want, math.Float32bits(x))
	}
	if !slices.Equal(raw, want) {
		t.Errorf("value % x, want % x", raw, want)
	}
	ttl, err := rc.TTL(context.Background(), name).Result()
	if err != nil {
		t.Fatal(err)
	}
	if ttl > time.Hour || ttl < time.Hour-time.Minute {
		t.Errorf("TTL %v, want about 1h", ttl)
	}
}

// TestRedisWrongLengthDeleted: a value of another length is a miss, is not
// put in memory, and is deleted.
func TestRedisWrongLengthDeleted(t *testing.T) {
	srv := redistest.Start(t)
	rc := inspect(t, srv)
	ctx := context.Background()
	short, long := redisKey(key(1)), redisKey(key(2))
	if err := rc.Set(ctx, short, make([]byte, 4*8-4), 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rc.Set(ctx, long, make([]byte, 4*8+1), 0).Err(); err != nil {
		t.Fatal(err)
	}
	store(t, srv, []Key{key(3)}, [][]float32{vec(3, 8)})

	f := newRedisCache(t, testOptions(srv, 1<<20), true)
	got, st := f.c.Get(ctx, "m", 8, []Key{key(1), key(2), key(3)})
	if st != (Stats{Redis: 1, Misses: 2}) || got[0] != nil || got[1] != nil {
		t.Fatalf("Get = %v, %+v; want the wrong lengths missed, key 3 a Redis hit", got, st)
	}
	if _, n := f.c.mem.size(); n != 1 {
		t.Errorf("memory holds %d entries, want 1 (the right-length hit)", n)
	}
	if err := f.c.Close(); err != nil { // drains the deletes
		t.Fatal(err)
	}
	if n, err := rc.Exists(ctx, short, long).Result(); err != nil || n != 0 {
		t.Errorf("after Close, %d of the wrong-length values remain (%v), want 0", n, err)
	}
	if n, err := rc.Exists(ctx, redisKey(key(3))).Result(); err != nil || n != 1 {
		t.Errorf("the right value is gone (%d, %v)", n, err)
	}
}

// TestRedisLookupTimeout: a Redis that does not answer costs a lookup its
// timeout, and the lookup is a miss; after breakerFailures of them the
// breaker opens, with one log line, and lookups skip Redis.
func TestRedisLookupTimeout(t *testing.T) {
	srv := redistest.Start(t)
	store(t, srv, []Key{key(1)}, [][]float32{vec(1, 4)})
	f := newRedisCache(t, testOptions(srv, 0), true)
	ctx := context.Background()
	if _, st := f.c.Get(ctx, "m", 4, []Key{key(1)}); st.Redis != 1 { // opens a pooled connection
		t.Fatalf("with Redis up: %+v, want a Redis hit", st)
	}

	srv.Pause()
	t.Cleanup(srv.Resume) // before Kill, which the server's cleanup does
	for i := range breakerFailures {
		start := time.Now()
		_, st := f.c.Get(ctx, "m", 4, []Key{key(1)})
		if st != (Stats{Misses: 1}) {
			t.Fatalf("lookup %d on a hung Redis: %+v, want a miss", i, st)
		}
		// A generous bound: the point is "the 100ms timeout, not the OS's".
		if d := time.Since(start); d > time.Second {
			t.Errorf("lookup %d on a hung Redis took %v", i, d)
		}
		wantUp := 1.0
		if i == breakerFailures-1 {
			wantUp = 0
		}
		if up := testenv.Metric(t, f.reg, "embedgate_cache_redis_up"); up != wantUp {
			t.Errorf("after %d timeouts, redis_up = %v, want %v", i+1, up, wantUp)
		}
	}
	if n := testenv.Metric(t, f.reg, "embedgate_cache_redis_errors_total"); n != breakerFailures {
		t.Errorf("errors_total = %v, want %d", n, breakerFailures)
	}
	if n := strings.Count(f.logs.String(), "unreachable"); n != 1 {
		t.Errorf("logged the outage %d times, want once:\n%s", n, f.logs)
	}
	srv.Resume()
	waitRedisHit(t, f.c, key(1), 4)
}

// waitRedisHit polls Get (each a probe once ProbeInterval has passed)
// until k is a Redis hit: go-redis redials on the next call.
func waitRedisHit(t *testing.T, c *Cache, k Key, dim int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, st := c.Get(context.Background(), "m", dim, []Key{k}); st.Redis == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no Redis hit 10s after Redis came back")
		}
		<-tick.C
	}
}

// TestRedisKilledAndRestarted: with Redis dead every lookup is a miss and
// writes are dropped, the memory tier goes on serving, the outage is one
// log line; once Redis is back, the breaker closes by itself and Redis
// hits come back.
func TestRedisKilledAndRestarted(t *testing.T) {
	srv := redistest.Start(t)
	store(t, srv, []Key{key(1)}, [][]float32{vec(1, 4)})
	f := newRedisCache(t, testOptions(srv, 1<<20), true)
	ctx := context.Background()

	srv.Kill()
	for i := range 20 {
		if _, st := f.c.Get(ctx, "m", 4, []Key{key(1)}); st != (Stats{Misses: 1}) {
			t.Fatalf("lookup %d with Redis dead: %+v, want a miss", i, st)
		}
	}
	if up := testenv.Metric(t, f.reg, "embedgate_cache_redis_up"); up != 0 {
		t.Errorf("redis_up = %v with Redis dead, want 0", up)
	}
	f.c.Put("m", []Key{key(2)}, [][]float32{vec(2, 4)})
	if n := testenv.Metric(t, f.reg, "embedgate_cache_writes_dropped_total", "reason", "redis_down"); n != 1 {
		t.Errorf("writes_dropped{redis_down} = %v, want 1", n)
	}
	if _, st := f.c.Get(ctx, "m", 4, []Key{key(2)}); st != (Stats{Memory: 1}) {
		t.Errorf("with Redis dead, a stored vector: %+v, want a memory hit", st)
	}

	srv.Restart() // empty: persistence is off
	store(t, srv, []Key{key(3)}, [][]float32{vec(3, 4)})
	waitRedisHit(t, f.c, key(3), 4)
	if up := testenv.Metric(t, f.reg, "embedgate_cache_redis_up"); up != 1 {
		t.Errorf("redis_up = %v after recovery, want 1", up)
	}
	for state, want := range map[string]float64{"down": 1, "up": 1} {
		if n := testenv.Metric(t, f.reg, "embedgate_cache_redis_state_changes_total", "state", state); n != want {
			t.Errorf("state_changes{%s} = %v, want %v", state, n, want)
		}
	}
	logs := f.logs.String()
	if strings.Count(logs, "unreachable") != 1 || strings.Count(logs, "reachable again") != 1 {
		t.Errorf("want one outage and one recovery line:\n%s", logs)
	}
	// Writes flow again.
	f.c.Put("m", []Key{key(4)}, [][]float32{vec(4, 4)})
	if err := f.c.Close(); err != nil {
		t.Fatal(err)
	}
	g := newRedisCache(t, testOptions(srv, 0), true)
	if _, st := g.c.Get(ctx, "m", 4, []Key{key(4)}); st != (Stats{Redis: 1}) {
		t.Errorf("a vector put after recovery: %+v on another cache, want a Redis hit", st)
	}
}

// TestRedisQueueFullAndCloseDrains: with the writer not yet running, Put
// queues up to writeQueue vectors and drops (and counts) the rest without
// waiting; Close then writes every queued vector.
func TestRedisQueueFullAndCloseDrains(t *testing.T) {
	srv := redistest.Start(t)
	rc := inspect(t, srv)
	f := newRedisCache(t, testOptions(srv, 0), false)
	const extra = 10
	keys := make([]Key, writeQueue+extra)
	vecs := make([][]float32, len(keys))
	for i := range keys {
		keys[i], vecs[i] = key(i), vec(i, 4)
	}
	f.c.Put("m", keys, vecs)
	if n := testenv.Metric(t, f.reg, "embedgate_cache_writes_dropped_total", "reason", "queue_full"); n != extra {
		t.Errorf("writes_dropped{queue_full} = %v, want %d", n, extra)
	}
	if err := f.c.Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := rc.DBSize(context.Background()).Result(); err != nil || n != writeQueue {
		t.Errorf("after Close, Redis holds %d keys (%v), want %d", n, err, writeQueue)
	}
	if n, err := rc.Exists(context.Background(), redisKey(keys[0]), redisKey(keys[writeQueue-1])).Result(); err != nil || n != 2 {
		t.Errorf("first and last queued vectors: %d of 2 in Redis (%v)", n, err)
	}
	// Close gave the series back to the registry; the counters remain.
	f.c.Put("m", keys[:1], vecs[:1])
	if n := dropped(t, f.c, dropClosing); n != 1 {
		t.Errorf("a Put after Close: writes_dropped{closing} = %v, want 1", n)
	}
}

// TestRedisCloseBounded: Close on a hung Redis gives up after about
// drainTimeout and counts what it could not write.
func TestRedisCloseBounded(t *testing.T) {
	srv := redistest.Start(t)
	f := newRedisCache(t, testOptions(srv, 0), false)
	f.c.Put("m", []Key{key(1), key(2)}, [][]float32{vec(1, 4), vec(2, 4)})
	srv.Pause()
	t.Cleanup(srv.Resume)
	start := time.Now()
	if err := f.c.Close(); err != nil {
		t.Fatal(err)
	}
	// Generous: the point is "bounded", not "the OS's TCP timeout".
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close on a hung Redis took %v", d)
	}
	lost := 0.0
	for _, reason := range []string{dropFailed, dropClosing} {
		lost += dropped(t, f.c, reason)
	}
	if lost != 2 {
		t.Errorf("writes dropped as failed or closing: %v, want 2", lost)
	}
	// A Get after Close is a miss that does not touch the closed client.
	if _, st := f.c.Get(context.Background(), "m", 4, []Key{key(1)}); st != (Stats{Misses: 1}) {
		t.Errorf("Get after Close: %+v, want a miss", st)
	}
	if strings.Contains(f.logs.String(), "unreachable") {
		t.Errorf("Get after Close logged an outage:\n%s", f.logs)
	}
}

// TestRedisConcurrent: gets and puts from many goroutines on two caches
// sharing one Redis (for -race); every hit is the vector of its key.
func TestRedisConcurrent(t *testing.T) {
	srv := redistest.Start(t)
	const dim = 16
	caches := []*Cache{
		newRedisCache(t, testOptions(srv, 20*costOf(dim)), true).c,
		newRedisCache(t, testOptions(srv, 0), true).c,
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Go(func() {
			c := caches[g%2]
			for i := range 300 {
				ns := []int{(g*7 + i) % 50, (g + i*3) % 50}
				keys := []Key{key(ns[0]), key(ns[1])}
				if i%2 == 0 {
					c.Put("m", keys, [][]float32{vec(ns[0], dim), vec(ns[1], dim)})
					continue
				}
				got, _ := c.Get(ctx, "m", dim, keys)
				for j, v := range got {
					if v != nil && !slices.Equal(v, vec(ns[j], dim)) {
						t.Errorf("key %d: got another key's vector", ns[j])
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

func TestRedisURLErrors(t *testing.T) {
	for _, url := range []string{"http://localhost:6379", "redis://:hunter2@local host:6379", "redis://:hunter2@localhost:6379/x"} {
		_, err := New(Options{RedisURL: url}, slog.New(slog.DiscardHandler), nil)
		if err == nil {
			t.Errorf("New(%q) succeeded, want an error", url)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("New(%q) error %q shows the password", url, err)
		}
	}
}

func TestRedisMetricsRegistered(t *testing.T) {
	f := newRedisCache(t, Options{RedisURL: "redis://127.0.0.1:1"}, true)
	// Hits and misses appear with their model label on first use.
	for _, name := range []string{
		"embedgate_cache_memory_bytes", "embedgate_cache_memory_entries",
		"embedgate_cache_redis_lookup_duration_seconds", "embedgate_cache_redis_errors_total",
		"embedgate_cache_redis_up", "embedgate_cache_redis_state_changes_total", "embedgate_cache_writes_dropped_total",
	} {
		if testenv.Metric(t, f.reg, name) < 0 {
			t.Errorf("%s not exported", name)
		}
	}
}

// TestRedisCallerCancelIsNotAnOutage: a lookup cut short by the caller's
// own context is a miss that says nothing about Redis.
func TestRedisCallerCancelIsNotAnOutage(t *testing.T) {
	srv := redistest.Start(t)
	store(t, srv, []Key{key(1)}, [][]float32{vec(1, 4)})
	f := newRedisCache(t, testOptions(srv, 0), true)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for i := range 2 * breakerFailures {
		if _, st := f.c.Get(ctx, "m", 4, []Key{key(1)}); st != (Stats{Misses: 1}) {
			t.Fatalf("lookup %d with a canceled context: %+v, want a miss", i, st)
		}
	}
	if n := testenv.Metric(t, f.reg, "embedgate_cache_redis_errors_total"); n != 0 {
		t.Errorf("errors_total = %v, want 0", n)
	}
	if _, st := f.c.Get(context.Background(), "m", 4, []Key{key(1)}); st != (Stats{Redis: 1}) {
		t.Errorf("then with a live context: %+v, want a Redis hit (breaker closed)", st)
	}
}
