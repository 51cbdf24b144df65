package ratelimit

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/embedgate/embedgate/gateway/redisconn"
)

// RedisOptions configure a Redis limiter.
type RedisOptions struct {
	// Timeout bounds each limiter call to Redis, connecting included
	// (default 100ms): the most a slow or dead Redis adds to a request.
	Timeout time.Duration
	// FailClosed refuses requests while Redis is unreachable; the default
	// (false) admits them (--rate-limit-fail-open=true).
	FailClosed bool
	// ProbeInterval is how often, while Redis is down, one call tries it
	// again (default 500ms); the others get the policy's answer at once,
	// so a dead Redis costs most requests nothing at all.
	ProbeInterval time.Duration
	// TLS, when set, replaces the TLS config of a rediss:// URL (which
	// trusts the system roots), e.g. to trust a private CA.
	TLS *tls.Config
}

const (
	defaultRedisTimeout  = 100 * time.Millisecond
	defaultProbeInterval = 500 * time.Millisecond
	redisKeyPrefix       = "embedgate:" // redis_rate adds "rate:" in front
)

// Redis is a limiter backed by Redis with redis_rate's GCRA script, so
// every gateway replica sharing the Redis enforces the same limits. It is
// safe for concurrent use. See the package doc for what it answers while
// Redis is unreachable; it notices recovery by itself.
type Redis struct {
	client *redis.Client
	gcra   *redis_rate.Limiter
	opts   RedisOptions
	outage *redisconn.Outage
	m      redisMetrics
}

// NewRedis returns a Redis limiter for url (redis:// or rediss://, with
// user, password and database as go-redis' ParseURL reads them) and
// registers its metrics on reg (nil: not registered). It does not connect:
// the first call does, and an unreachable Redis is then handled like any
// outage.
func NewRedis(rawURL string, opts RedisOptions, logger *slog.Logger, reg prometheus.Registerer) (*Redis, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = defaultRedisTimeout
	}
	if opts.ProbeInterval <= 0 {
		opts.ProbeInterval = defaultProbeInterval
	}
	client, err := redisconn.NewClient(rawURL, opts.Timeout, opts.TLS)
	if err != nil {
		return nil, fmt.Errorf("ratelimit: %w", err)
	}
	policy := "failing open: requests are not rate limited"
	if opts.FailClosed {
		policy = "failing closed: requests are refused with 429"
	}
	outage := redisconn.NewOutage(redisconn.OutageOptions{
		Addr:          client.Options().Addr,
		ProbeInterval: opts.ProbeInterval,
		DownMessage:   "rate limit redis unreachable, " + policy,
		UpMessage:     "rate limit redis reachable again, limits apply",
		Up: prometheus.GaugeOpts{
			Name: "embedgate_ratelimit_redis_up",
			Help: "1 while the rate limit Redis answers, 0 while it is unreachable.",
		},
		Changes: prometheus.CounterOpts{
			Name: "embedgate_ratelimit_redis_state_changes_total",
			Help: "Times the rate limit Redis went down or came back, by new state.",
		},
	}, logger)
	m, err := newRedisMetrics(reg, opts.FailClosed, outage)
	if err != nil {
		_ = client.Close()
		return nil, err
	}
	return &Redis{
		client: client,
		gcra:   redis_rate.NewLimiter(client),
		opts:   opts,
		outage: outage,
		m:      m,
	}, nil
}

// Close closes the connections to Redis.
func (r *Redis) Close() error { return r.client.Close() }

// AllowRequest charges one request against l.RPS and l.Burst.
func (r *Redis) AllowRequest(ctx context.Context, key string, l Limit) (Result, error) {
	rt, ok := l.requestRate()
	if !ok {
		return Result{Allowed: true}, nil
	}
	// Whole requests per second when the rate is whole, so the Redis
	// script sees the same numbers an operator wrote.
	lim := redis_rate.Limit{Rate: 1, Period: time.Duration(rt.interval), Burst: rt.burst}
	if l.RPS == math.Trunc(l.RPS) && l.RPS <= math.MaxInt32 {
		lim = redis_rate.Limit{Rate: int(l.RPS), Period: time.Second, Burst: rt.burst}
	}
	return r.allow(ctx, redisKeyPrefix+"req:"+key, lim, rt, 1)
}

// AllowTokens charges tokens against l.TPM; over what remains, nothing
// is charged, so a smaller request may still pass.
func (r *Redis) AllowTokens(ctx context.Context, key string, l Limit, tokens int) (Result, error) {
	rt, ok := l.tokenRate()
	if !ok {
		return Result{Allowed: true}, nil
	}
	lim := redis_rate.Limit{Rate: l.TPM, Period: time.Minute, Burst: rt.burst}
	return r.allow(ctx, redisKeyPrefix+"tok:"+key, lim, rt, max(tokens, 0))
}

func (r *Redis) allow(ctx context.Context, key string, lim redis_rate.Limit, rt rate, cost int) (Result, error) {
	if r.outage.Skip() {
		return r.policy(), nil
	}
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	res, err := r.gcra.AllowN(cctx, key, lim, cost)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			// The request's own deadline or cancellation: says nothing
			// about Redis.
			return Result{}, fmt.Errorf("ratelimit: %w", ctx.Err())
		}
		r.m.errors.Inc()
		r.outage.MarkDown(err)
		return r.policy(), nil
	}
	r.outage.MarkUp(start)
	// Remaining from the reset time, not redis_rate's: it reports 0 on a
	// refusal (a smaller charge may still fit, and clients size retries
	// from the header) and truncates float error (3.9999 → 3).
	if res.Allowed > 0 {
		return Result{Allowed: true, Limit: rt.burst, Remaining: rt.remainingAt(res.ResetAfter), Reset: res.ResetAfter}, nil
	}
	return Result{Limit: rt.burst, Remaining: rt.remainingAt(res.ResetAfter), Reset: res.ResetAfter, RetryAfter: res.RetryAfter}, nil
}

// policy is the answer while Redis cannot be asked.
func (r *Redis) policy() Result {
	if r.opts.FailClosed {
		r.m.decisions.WithLabelValues("refused").Inc()
		return Result{StoreDown: true, RetryAfter: r.opts.ProbeInterval}
	}
	r.m.decisions.WithLabelValues("allowed").Inc()
	return Result{Allowed: true, StoreDown: true}
}

type redisMetrics struct {
	errors    prometheus.Counter
	decisions *prometheus.CounterVec
}

// newRedisMetrics makes the limiter's series and registers them with the
// outage's (up, state changes).
func newRedisMetrics(reg prometheus.Registerer, failClosed bool, outage *redisconn.Outage) (redisMetrics, error) {
	m := redisMetrics{
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "embedgate_ratelimit_redis_errors_total",
			Help: "Rate limit calls to Redis that failed or timed out.",
		}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "embedgate_ratelimit_redis_unavailable_decisions_total",
			Help: "Rate limit checks answered by the fail-open/closed policy because Redis was unreachable, by decision.",
		}, []string{"decision"}),
	}
	if failClosed {
		m.decisions.WithLabelValues("refused")
	} else {
		m.decisions.WithLabelValues("allowed")
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range append(outage.Collectors(), m.errors, m.decisions) {
		if err := reg.Register(c); err != nil {
			return redisMetrics{}, fmt.Errorf("ratelimit: register metrics: %w", err)
		}
	}
	return m, nil
}

// LogRedisThrough sends go-redis' own log lines to logger at debug level:
// see redisconn.LogThrough, which it is.
func LogRedisThrough(logger *slog.Logger) {
	redisconn.LogThrough(logger)
}
