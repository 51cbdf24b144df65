package ratelimit

import (
	"context"
	"math"
	"sync"
	"time"
)

// MemoryOptions configure a Memory limiter.
type MemoryOptions struct {
	// MaxKeys bounds the subjects tracked at once (default 100000). Past
	// it, a subject near its full allowance is forgotten to make room:
	// forgetting one only gives it back its burst.
	MaxKeys int
}

const (
	defaultMaxKeys = 100_000
	// sweepEvery is how often a call also drops every bucket that is full
	// again. One sweep of 100k buckets takes about a millisecond.
	sweepEvery = 10 * time.Second
	// evictSample is how many buckets are looked at to pick one to forget
	// when MaxKeys is reached (Redis' approximated LRU does the same).
	evictSample = 8
)

// Memory is an in-process limiter with the same GCRA arithmetic as the
// Redis script, for a single gateway (no --redis-url). It is safe for
// concurrent use and starts no goroutine: idle buckets are dropped during
// calls.
//
// A bucket is dropped once it is full again (its theoretical arrival time
// has passed), which is at most one refill window (burst / rate) after the
// subject's last request, so well within "idle for twice the window". A
// full bucket and no bucket answer alike, so dropping one changes no answer.
type Memory struct {
	mu        sync.Mutex
	tat       map[string]time.Time // theoretical arrival time per bucket
	maxKeys   int
	lastSweep time.Time
	now       func() time.Time // time.Now; tests move time by hand
}

// NewMemory returns an empty Memory limiter.
func NewMemory(opts MemoryOptions) *Memory {
	if opts.MaxKeys <= 0 {
		opts.MaxKeys = defaultMaxKeys
	}
	return &Memory{tat: make(map[string]time.Time), maxKeys: opts.MaxKeys, now: time.Now}
}

// AllowRequest charges one request against l.RPS and l.Burst.
func (m *Memory) AllowRequest(_ context.Context, key string, l Limit) (Result, error) {
	r, ok := l.requestRate()
	if !ok {
		return Result{Allowed: true}, nil
	}
	return m.allow("req:"+key, r, 1), nil
}

// AllowTokens charges tokens against l.TPM; over what remains, nothing
// is charged, so a smaller request may still pass.
func (m *Memory) AllowTokens(_ context.Context, key string, l Limit, tokens int) (Result, error) {
	r, ok := l.tokenRate()
	if !ok {
		return Result{Allowed: true}, nil
	}
	return m.allow("tok:"+key, r, max(tokens, 0)), nil
}

// Len is the number of buckets held, for tests and debugging.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.tat)
}

// allow is GCRA as in redis_rate's allowN script, with times relative to
// now: the bucket is full when tat <= now; a cost fits when the new tat is
// no more than burst intervals ahead of now.
func (m *Memory) allow(key string, r rate, cost int) Result {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if now.Sub(m.lastSweep) >= sweepEvery {
		m.sweep(now)
	}
	ahead := 0.0 // tat - now, in nanoseconds
	tat, known := m.tat[key]
	if known && tat.After(now) {
		ahead = float64(tat.Sub(now))
	}
	newAhead := ahead + r.interval*float64(cost)
	allowAt := newAhead - r.interval*float64(r.burst) // relative to now
	if allowAt > 0 {
		reset := durationOf(ahead)
		return Result{Limit: r.burst, Remaining: r.remainingAt(reset), Reset: reset, RetryAfter: durationOf(allowAt)}
	}
	reset := durationOf(newAhead)
	if reset > 0 {
		if !known && len(m.tat) >= m.maxKeys {
			m.makeRoom(now)
		}
		m.tat[key] = now.Add(reset)
	} else if known {
		delete(m.tat, key)
	}
	return Result{Allowed: true, Limit: r.burst, Remaining: r.remainingAt(reset), Reset: reset}
}

// sweep drops every bucket that is full again.
func (m *Memory) sweep(now time.Time) {
	m.lastSweep = now
	for k, tat := range m.tat {
		if !tat.After(now) {
			delete(m.tat, k)
		}
	}
}

// makeRoom frees one slot: full buckets first (a sweep, at most once a
// second, so a flood of new subjects does not sweep on every call), else
// the fullest of a few buckets picked by map order, which Go randomizes.
func (m *Memory) makeRoom(now time.Time) {
	if now.Sub(m.lastSweep) >= time.Second {
		m.sweep(now)
		if len(m.tat) < m.maxKeys {
			return
		}
	}
	var victim string
	var earliest time.Time
	n := 0
	for k, tat := range m.tat {
		if n == 0 || tat.Before(earliest) {
			victim, earliest = k, tat
		}
		if n++; n == evictSample {
			break
		}
	}
	delete(m.tat, victim)
}

// durationOf converts float nanoseconds to a Duration, rounding up so a
// client told to wait that long is admitted.
func durationOf(ns float64) time.Duration {
	if ns <= 0 {
		return 0
	}
	return time.Duration(math.Ceil(ns))
}
