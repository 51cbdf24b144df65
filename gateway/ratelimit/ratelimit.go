// Package ratelimit provides embedgate's rate limits: a request limit (rps
// with a burst) and an optional token limit (tokens per minute), per API key
// or per client IP, enforced by GCRA either in Redis (Redis, shared by every
// gateway replica, via github.com/go-redis/redis_rate/v10) or in process
// (Memory, for a single gateway). Both answer the same Result, from which
// SetHeaders writes OpenAI's x-ratelimit-* headers and Retry-After. The
// fiber middleware (Middleware, ChargeTokens) applies them to requests.
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
// ratelimit imports gateway (for the error type) and nothing else of ours.
package ratelimit

import (
	"context"
	"math"
	"strconv"
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

// Limiter is what the middleware needs from a limiter; Redis and Memory
// implement it. key names the subject ("key:alice", "ip:10.0.0.7"); the
// request and token limits of one key are kept apart.
type Limiter interface {
	// AllowRequest charges one request against l.RPS and l.Burst.
	AllowRequest(ctx context.Context, key string, l Limit) (Result, error)
	// AllowTokens charges tokens against l.TPM. When tokens exceed what
	// remains, the charge is not allowed and nothing is charged, so a
	// smaller request may still pass.
	AllowTokens(ctx context.Context, key string, l Limit, tokens int) (Result, error)
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

// Kind selects which header set SetHeaders writes.
type Kind int

const (
	Requests Kind = iota // x-ratelimit-*-requests
	Tokens               // x-ratelimit-*-tokens
)

var headerNames = [...][3]string{
	Requests: {"x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"},
	Tokens:   {"x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"},
}

// SetHeaders writes r as OpenAI's rate-limit headers through set (fiber's
// c.Set fits): x-ratelimit-limit-<kind>, -remaining-<kind> and
// -reset-<kind>, the reset as a Go duration rounded up to the millisecond
// ("1s", "6m0s", "120ms", as OpenAI sends it), and, when r is not allowed,
// Retry-After in whole seconds rounded up (at least 1) plus retry-after-ms,
// which the OpenAI SDKs prefer when present. Nothing is written for a
// result with no limit, and only the retry headers while Redis is down.
func SetHeaders(set func(key, value string), r Result, kind Kind) {
	if r.Limit > 0 && !r.StoreDown && int(kind) < len(headerNames) {
		names := headerNames[kind]
		set(names[0], strconv.Itoa(r.Limit))
		set(names[1], strconv.Itoa(r.Remaining))
		set(names[2], ceilTo(r.Reset, time.Millisecond).String())
	}
	if !r.Allowed {
		set("Retry-After", strconv.Itoa(RetryAfterSeconds(r.RetryAfter)))
		set("retry-after-ms", strconv.FormatInt(max(1, ceilTo(r.RetryAfter, time.Millisecond).Milliseconds()), 10))
	}
}

// RetryAfterSeconds is d as a Retry-After value: whole seconds, rounded up,
// at least 1, so a client never retries before it would be admitted.
func RetryAfterSeconds(d time.Duration) int {
	return max(1, int(ceilTo(d, time.Second)/time.Second))
}

// ceilTo rounds d up to a multiple of unit; negative d becomes 0.
func ceilTo(d, unit time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return (d + unit - 1) / unit * unit
}
