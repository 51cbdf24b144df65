package main

import (
	"context"
	"fmt"
	"path/filepath"
)

// Workloads of the cache runs (issue 13).
const (
	workRepeat  = "all repeat"
	workHalfNew = "half new"
	workKill    = "half new, Redis killed half way"
)

// Cache setups: the gateway's cache flags in each cached run.
const (
	setupBoth      = "memory + Redis"
	setupRedisOnly = "Redis only (CACHE_MEMORY_MB=0)"
)

// warmWorkers is how many pool requests warm-up sends at a time.
const warmWorkers = 8

// CacheRun is one cache workload on one backend, measured with the cache
// on and with it off (CACHE=false) at the same clients.
type CacheRun struct {
	Workload, Backend, Setup string
	Cached, Uncached         *Level
	Warm                     map[string]int // x-embedgate-cache of warm-up's last check pass
}

// cachePoolMix is the pool the cache workloads repeat: the default mix's
// lengths, batch sizes and routes, n requests.
func cachePoolMix(seed uint64, n int) MixOptions {
	o := DefaultMix(seed)
	o.Requests = n
	return o
}

// cacheRuns measures the cache workloads on backend (onnx, or triton
// against the in-process stand-in) with three gateways: the cache off
// (the baselines); memory + Redis, warmed with the pool, for the
// all-repeat and half-new workloads; and Redis alone, warmed, whose
// redis-server is killed half way through the half-new workload: with a
// memory tier in front, the kill would only touch the misses. Each cached
// gateway has its own fresh redis-server, so no run finds another's
// entries. The runs are added to rep before they run, so that what was
// measured is reported even if a later part fails.
func (b *bench) cacheRuns(ctx context.Context, rep *Report, backend string) error {
	o := b.o
	pool, err := NewMix(cachePoolMix(o.seed, o.cachePool))
	if err != nil {
		return err
	}
	half, err := newHalfNew(pool, o.seed, DefaultMix(o.seed).Model)
	if err != nil {
		return err
	}
	env := map[string]string{}
	var m model
	if backend == "triton" {
		m = &oneInstance{model: b.ort}
	} else {
		env["BACKEND"] = "onnx"
	}
	repeat := &CacheRun{Workload: workRepeat, Backend: backend, Setup: setupBoth}
	halfRun := &CacheRun{Workload: workHalfNew, Backend: backend, Setup: setupBoth}
	kill := &CacheRun{Workload: workKill, Backend: backend, Setup: setupRedisOnly}
	rep.Cache = append(rep.Cache, repeat, halfRun, kill)
	rep.CachePool = len(pool.Requests)
	opts := func(name string) levelOptions {
		return levelOptions{Name: backend + ", " + name, Clients: o.cacheClients, Warmup: o.warmup, Window: o.window, BackendHere: m != nil}
	}

	err = b.withGateway(ctx, "cache-off-"+backend, withEnv(env, "CACHE", "false"), m, func(g *child) error {
		var err error
		if repeat.Uncached, err = b.level(ctx, g, pool, opts("cache off: "+workRepeat)); err != nil {
			return err
		}
		halfRun.Uncached, err = b.level(ctx, g, half, opts("cache off: "+workHalfNew))
		kill.Uncached = halfRun.Uncached
		return err
	})
	if err != nil {
		return err
	}

	err = b.withRedis(ctx, "cache-"+backend, func(r *redisServer) error {
		env := withEnv(env, "CACHE", "true", "CACHE_REDIS_URL", r.URL())
		return b.withGateway(ctx, "cache-"+backend, env, m, func(g *child) error {
			var err error
			if repeat.Warm, err = b.warm(ctx, g, pool); err != nil {
				return err
			}
			halfRun.Warm = repeat.Warm
			lo := opts("cache on, " + setupBoth + ": " + workRepeat)
			lo.Profile = b.profilePath("cache-"+backend, o.cacheClients)
			if repeat.Cached, err = b.level(ctx, g, pool, lo); err != nil {
				return err
			}
			halfRun.Cached, err = b.level(ctx, g, half, opts("cache on, "+setupBoth+": "+workHalfNew))
			return err
		})
	})
	if err != nil {
		return err
	}

	return b.withRedis(ctx, "cache-kill-"+backend, func(r *redisServer) error {
		env := withEnv(env, "CACHE", "true", "CACHE_MEMORY_MB", "0", "CACHE_REDIS_URL", r.URL())
		return b.withGateway(ctx, "cache-kill-"+backend, env, m, func(g *child) error {
			var err error
			if kill.Warm, err = b.warm(ctx, g, pool); err != nil {
				return err
			}
			lo := opts("cache on, " + setupRedisOnly + ": " + workKill)
			lo.Midway = func() string {
				b.log.Info("killing redis-server", "addr", r.addr)
				r.kill()
				return "redis-server killed"
			}
			kill.Cached, err = b.level(ctx, g, half, lo)
			return err
		})
	})
}

// withRedis starts a redis-server (its log named for run), runs fn and
// kills the server whatever happens.
func (b *bench) withRedis(ctx context.Context, run string, fn func(*redisServer) error) error {
	logPath := filepath.Join(b.o.logs, run+"-redis.log")
	r, err := startRedis(ctx, b.o.redisServer, logPath)
	if err != nil {
		return err
	}
	defer r.kill()
	b.log.Info("started redis-server", "run", run, "url", r.URL(), "log", logPath)
	return fn(r)
}

// warm fills g's cache with the pool and logs what the check pass saw.
func (b *bench) warm(ctx context.Context, g *child, pool *Mix) (map[string]int, error) {
	b.log.Info("warming the cache", "requests", len(pool.Requests))
	counts, err := warm(ctx, g.url, pool, warmWorkers)
	if err != nil {
		return nil, err
	}
	b.log.Info("warm", "check", fmtCache(counts))
	if counts["hit"] != len(pool.Requests) {
		b.log.Warn("the pool is not all hits after warm-up", "check", fmtCache(counts))
	}
	return counts, nil
}

// withEnv is base plus the pairs kv (KEY, VALUE, ...), a new map.
func withEnv(base map[string]string, kv ...string) map[string]string {
	out := make(map[string]string, len(base)+len(kv)/2)
	for k, v := range base {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// cacheRatio is cached ÷ uncached tokens/s, and whether both were measured.
func (c *CacheRun) cacheRatio() (float64, bool) {
	if c.Cached == nil || c.Uncached == nil || c.Uncached.Tokens <= 0 {
		return 0, false
	}
	return c.Cached.Tokens / c.Uncached.Tokens, true
}

// p99Ratio is cached ÷ uncached latency p99, and whether both were measured.
func (c *CacheRun) p99Ratio() (float64, bool) {
	if c.Cached == nil || c.Uncached == nil || c.Uncached.Latency.P99 <= 0 || c.Cached.Latency.N == 0 {
		return 0, false
	}
	return float64(c.Cached.Latency.P99) / float64(c.Uncached.Latency.P99), true
}

// noCacheHeader reports whether the cached level got answers but none
// carried x-embedgate-cache: the gateway has no cache.
func (c *CacheRun) noCacheHeader() bool {
	if c.Cached == nil || len(c.Cached.Cache) == 0 {
		return false
	}
	_, ok := c.Cached.Cache[""]
	return ok && len(c.Cached.Cache) == 1
}

func (c *CacheRun) String() string {
	return fmt.Sprintf("%s, %s; cache: %s", c.Backend, c.Workload, c.Setup)
}
