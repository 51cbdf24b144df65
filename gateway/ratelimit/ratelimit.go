// Package ratelimit provides embedgate's rate limits: a request limit (rps
// with a burst) and an optional token limit (tokens per minute), per API key
// or per client IP, enforced by GCRA either in Redis (Redis, shared by every
// gateway replica, via github.com/go-redis/redis_rate/v10) or in process
// (Memory, for a single gateway). Both answer the same Result, from which
// the server writes OpenAI's x-ratelimit-* headers and Retry-After; the
// server's Limiter interface is what it needs of them.
//
// While Redis is unreachable, Redis answers by policy: fail open (the
// default) admits every request; fail closed refuses every request with 429
// RateLimited and Retry-After, not 503. A refusal here is still the rate
// limiter's "no": the model and the gateway are healthy, so /health and
// /ready stay 200 and load balancers keep the replicas (every replica shares
// the Redis and would be marked down at once on 503s), while every OpenAI
// SDK and TEI client already backs off on 429 as Retry-After says. The
// message names the cause, and the embedgate_ratelimit_redis_* metrics show it.
//
// ratelimit imports nothing else of ours but redisconn.
package ratelimit

import (
	"math"
	"time"
)

// Limit is what one subject (a key or a client IP) may do.
type Limit struct {
	RPS   float64 // requests per second, sustained; <= 0: no request limit
	Burst int     // requests admitted at once on top of the rate; < 1 counts as 1
	TPM   int     // tokens per minute; <= 0: no token limit. A full minute's worth may come at once.
}

// Or fills the zero fields of l from d: a key's own limits over the
// gateway's defaults.
func (l Limit) Or(d Limit) Limit {
	if l.RPS == 0 {
		l.RPS = d.RPS
	}
	if l.Burst == 0 {
		l.Burst = d.Burst
	}
	if l.TPM == 0 {
		l.TPM = d.TPM
	}
	return l
}

// Result is a limiter's answer for one request or one token charge.
type Result struct {
	Allowed bool
	// Limit is the most the subject may spend at once (the burst for
	// requests, TPM for tokens); 0 when no limit applied.
	Limit int
	// Remaining is what the subject may still spend at once, after this
	// charge when it was allowed.
	Remaining int
	// Reset is the time until Remaining is back to Limit.
	Reset time.Duration
	// RetryAfter, when not allowed, is the time until the same charge
	// would be allowed.
	RetryAfter time.Duration
	// StoreDown is set when Redis could not be asked: Allowed is then the
	// fail-open policy's answer and the counts are unknown (zero).
	StoreDown bool
}

// rate is one GCRA bucket: a cost of 1 is emitted every interval, and
// burst of them may be spent at once.
type rate struct {
	interval float64 // nanoseconds per unit
	burst    int
}

// requestRate is the request bucket of l; ok is false when l has no
// request limit.
func (l Limit) requestRate() (r rate, ok bool) {
	if !(l.RPS > 0) || math.IsInf(l.RPS, 0) {
		return rate{}, false
	}
	return rate{interval: float64(time.Second) / l.RPS, burst: max(l.Burst, 1)}, true
}

// tokenRate is the token bucket of l: TPM per minute, a minute's worth at
// once (as OpenAI's token limits allow).
func (l Limit) tokenRate() (r rate, ok bool) {
	if l.TPM <= 0 {
		return rate{}, false
	}
	return rate{interval: float64(time.Minute) / float64(l.TPM), burst: l.TPM}, true
}

// remainingAt is what the bucket could spend at once given the time until
// it is full again: the same formula for Memory and Redis, allowed or not.
// Redis' script does its arithmetic on float seconds since 2017, good to a
// fraction of a microsecond, so a reset within 1µs of a whole unit counts
// as that unit (else 4 remaining would sometimes show as 3).
func (r rate) remainingAt(reset time.Duration) int {
	rem := (float64(r.burst)*r.interval - float64(reset) + float64(time.Microsecond)) / r.interval
	return max(0, min(r.burst, int(math.Floor(rem))))
}
