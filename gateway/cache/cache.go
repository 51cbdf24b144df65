// Package cache keeps pooled embeddings per input, keyed on what the model
// sees: the model's identity, the cache scope, and the exact token ids and
// type ids after the prompt and truncation. Two tiers: an in-process LRU
// bounded in bytes (Memory), and Redis shared by every replica (Redis).
// A cache never fails a request: every error is a miss.
package cache

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Key names one cached vector.
type Key [sha256.Size]byte

// NewKey hashes what decides an input's vector: the model's identity (its
// name, hub commit or files' digest, backend model version and pooling:
// see infer), the scope (an API key's name, or "" when shared), and the
// token ids and type ids the model is fed. Lengths are written before
// each part, so no two different inputs hash the same bytes.
func NewKey(identity, scope string, ids, typeIDs []int32) Key {
	h := sha256.New()
	var n [8]byte
	writeString := func(s string) {
		binary.LittleEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	writeInts := func(v []int32) {
		binary.LittleEndian.PutUint64(n[:], uint64(len(v)))
		h.Write(n[:])
		buf := make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(buf[4*i:], uint32(x))
		}
		h.Write(buf)
	}
	writeString(identity)
	writeString(scope)
	writeInts(ids)
	writeInts(typeIDs)
	var k Key
	h.Sum(k[:0])
	return k
}

// Options configure a Cache. Zero durations take the defaults.
type Options struct {
	// MemoryBytes bounds the memory tier (--cache-memory-mb << 20); 0 = no
	// memory tier.
	MemoryBytes int64
	// RedisURL is the Redis tier's redis:// or rediss:// URL; "" = no
	// Redis tier.
	RedisURL string
	// TTL is how long a Redis entry lives (--cache-ttl, default 7 days).
	TTL time.Duration
	// Timeout bounds one Redis lookup, connecting included (--cache-timeout,
	// default 20ms): a slower lookup is a miss.
	Timeout time.Duration
	// ProbeInterval is how often, while Redis is down, one call tries it
	// again (default 500ms); the others skip Redis at once.
	ProbeInterval time.Duration
}

const (
	defaultTTL           = 7 * 24 * time.Hour
	defaultTimeout       = 20 * time.Millisecond
	defaultProbeInterval = 500 * time.Millisecond
)

// withDefaults fills the zero durations and refuses what cannot work.
func (o Options) withDefaults() (Options, error) {
	switch {
	case o.MemoryBytes < 0:
		return o, fmt.Errorf("cache: memory bound %d bytes is negative", o.MemoryBytes)
	case o.TTL < 0 || (o.TTL > 0 && o.TTL < time.Second):
		return o, fmt.Errorf("cache: ttl %v is below a second", o.TTL)
	case o.Timeout < 0:
		return o, fmt.Errorf("cache: timeout %v is negative", o.Timeout)
	case o.ProbeInterval < 0:
		return o, fmt.Errorf("cache: probe interval %v is negative", o.ProbeInterval)
	}
	if o.TTL == 0 {
		o.TTL = defaultTTL
	}
	if o.Timeout == 0 {
		o.Timeout = defaultTimeout
	}
	if o.ProbeInterval == 0 {
		o.ProbeInterval = defaultProbeInterval
	}
	return o, nil
}

// Stats counts where Get found each key.
type Stats struct {
	Memory, Redis, Misses int
}

// Cache is the two tiers. It is safe for concurrent use.
type Cache struct {
	mem      *memory    // nil: no memory tier
	redis    *redisTier // nil: no Redis tier
	logger   *slog.Logger
	m        *metrics
	close    sync.Once
	closeErr error
}

// New returns a cache with the tiers opts ask for, its metrics registered
// on reg (nil: not registered), logging to logger (nil: nowhere). It does
// not connect to Redis: the first lookup or write does, and an unreachable
// Redis is then an outage like any other.
func New(opts Options, logger *slog.Logger, reg prometheus.Registerer) (*Cache, error) {
	c, err := newCache(opts, logger, reg)
	if err != nil {
		return nil, err
	}
	if c.redis != nil {
		c.redis.start()
	}
	return c, nil
}

// newCache is New without starting the Redis writer.
func newCache(opts Options, logger *slog.Logger, reg prometheus.Registerer) (*Cache, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &Cache{logger: logger}
	if opts.MemoryBytes > 0 {
		c.mem = newMemory(opts.MemoryBytes)
	}
	if opts.RedisURL != "" {
		if c.redis, err = newRedisTier(opts, logger); err != nil {
			return nil, err
		}
	}
	var extra []prometheus.Collector
	if c.redis != nil {
		extra = c.redis.collectors()
	}
	if c.m, err = newMetrics(reg, c.mem, extra); err != nil {
		if c.redis != nil {
			_ = c.redis.client.Close()
		}
		return nil, err
	}
	return c, nil
}

// Get looks keys up, memory first, then Redis for the rest (bounded by
// Timeout; an error, a timeout or an open breaker is a miss). dim is the
// model's vector length: a value of another length is a miss and is
// deleted. vecs[i] nil is a miss. Redis hits are put in the memory tier.
// The vectors returned are the cache's own: callers copy before changing
// them. model labels the metrics.
func (c *Cache) Get(ctx context.Context, model string, dim int, keys []Key) (vecs [][]float32, st Stats) {
	vecs = make([][]float32, len(keys))
	// No vector has length <= 0: with such a dim every entry would look
	// wrong and be deleted, so a caller's mistake is only misses.
	if dim > 0 && c.mem != nil {
		st.Memory = c.mem.get(dim, keys, vecs)
	}
	if dim > 0 && c.redis != nil && st.Memory < len(keys) {
		st.Redis = c.getRedis(ctx, dim, keys, vecs)
	}
	st.Misses = len(keys) - st.Memory - st.Redis
	c.m.count(model, st)
	return vecs, st
}

// getRedis looks up in Redis the keys vecs has no vector for, fills
// vecs with the hits and puts them in the memory tier.
func (c *Cache) getRedis(ctx context.Context, dim int, keys []Key, vecs [][]float32) (found int) {
	idx := make([]int, 0, len(keys))
	missing := make([]Key, 0, len(keys))
	for i, v := range vecs {
		if v == nil {
			idx, missing = append(idx, i), append(missing, keys[i])
		}
	}
	got, costs, found := c.redis.lookup(ctx, dim, missing)
	if found == 0 {
		return 0
	}
	hitKeys := make([]Key, 0, found)
	hits := make([][]float32, 0, found)
	hitCosts := make([]int64, 0, found)
	for j, v := range got {
		if v != nil {
			vecs[idx[j]] = v
			hitKeys, hits, hitCosts = append(hitKeys, missing[j]), append(hits, v), append(hitCosts, costs[j])
		}
	}
	if c.mem != nil {
		c.mem.put(hitKeys, hits, hitCosts)
	}
	return found
}

// Put stores vecs under keys: copies of them, in memory at once and to
// Redis in the background; it never blocks the caller. Empty vectors are
// not stored; keys and vecs of different lengths store nothing.
func (c *Cache) Put(model string, keys []Key, vecs [][]float32) {
	if len(keys) != len(vecs) {
		c.logger.Error("cache: put with unequal numbers of keys and vectors, nothing stored",
			"model", model, "keys", len(keys), "vectors", len(vecs))
		return
	}
	if c.mem == nil && c.redis == nil {
		return
	}
	ks := make([]Key, 0, len(keys))
	own := make([][]float32, 0, len(keys))
	costs := make([]int64, 0, len(keys))
	for i, v := range vecs {
		if len(v) == 0 {
			continue
		}
		cp, cost := ownCopy(v)
		ks, own, costs = append(ks, keys[i]), append(own, cp), append(costs, cost)
	}
	if c.mem != nil {
		c.mem.put(ks, own, costs)
	}
	if c.redis != nil {
		ws := make([]write, len(ks))
		for i := range ks {
			ws[i] = write{key: ks[i], vec: own[i]}
		}
		c.redis.enqueue(ws)
	}
}

// Close drains the pending Redis writes (for a second at most), closes the
// Redis client and gives back the metrics. Get and Put still work after
// it, on the memory tier alone.
func (c *Cache) Close() error {
	c.close.Do(func() {
		if c.redis != nil {
			c.closeErr = c.redis.close()
		}
		c.m.unregister()
	})
	return c.closeErr
}
