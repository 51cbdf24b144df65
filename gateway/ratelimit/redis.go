package ratelimit

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
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
	addr   string // host:port, for logs; never the URL (it may hold a password)
	logger *slog.Logger
	m      redisMetrics

	down      atomic.Bool
	downSince atomic.Int64 // unix nanoseconds
	nextProbe atomic.Int64 // unix nanoseconds
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
	ro, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("ratelimit: redis url: %w", redact(err))
	}
	if opts.TLS != nil {
		ro.TLSConfig = opts.TLS
	}
	// One bounded attempt per call: go-redis' own retries, dial retries
	// and 5s timeouts would keep a request waiting on a dead Redis for
	// seconds; the per-call context deadline is the real bound.
	ro.MaxRetries = -1
	ro.DialerRetries = 1
	ro.DialTimeout = opts.Timeout
	ro.ReadTimeout = opts.Timeout
	ro.WriteTimeout = opts.Timeout
	ro.PoolTimeout = opts.Timeout
	ro.ContextTimeoutEnabled = true
	ro.DisableIdentity = true // CLIENT SETINFO is one more round trip per connection, and Redis < 7.2 refuses it
	ro.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}

	m, err := newRedisMetrics(reg, opts.FailClosed)
	if err != nil {
		return nil, err
	}
	client := redis.NewClient(ro)
	return &Redis{
		client: client,
		gcra:   redis_rate.NewLimiter(client),
		opts:   opts,
		addr:   ro.Addr,
		logger: logger,
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
	if r.down.Load() && !r.claimProbe() {
		return r.policy(), nil
	}
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
		r.markDown(err)
		return r.policy(), nil
	}
	r.markUp()
	// Remaining from the reset time, not redis_rate's: it reports 0 on a
	// refusal (a smaller charge may still fit, and clients size retries
	// from the header) and truncates float error (3.9999 → 3).
	if res.Allowed > 0 {
		return Result{Allowed: true, Limit: rt.burst, Remaining: rt.remainingAt(res.ResetAfter), Reset: res.ResetAfter}, nil
	}
	return Result{Limit: rt.burst, Remaining: rt.remainingAt(res.ResetAfter), Reset: res.ResetAfter, RetryAfter: res.RetryAfter}, nil
}

// claimProbe lets one caller per ProbeInterval try Redis while it is down.
func (r *Redis) claimProbe() bool {
	now := time.Now().UnixNano()
	next := r.nextProbe.Load()
	return now >= next && r.nextProbe.CompareAndSwap(next, now+int64(r.opts.ProbeInterval))
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

// markDown records an outage; only the call that flips the state logs, so
// an outage is one log line however many requests it meets.
func (r *Redis) markDown(err error) {
	now := time.Now()
	if !r.down.CompareAndSwap(false, true) {
		return
	}
	r.downSince.Store(now.UnixNano())
	r.nextProbe.Store(now.Add(r.opts.ProbeInterval).UnixNano())
	r.m.up.Set(0)
	r.m.changes.WithLabelValues("down").Inc()
	policy := "failing open: requests are not rate limited"
	if r.opts.FailClosed {
		policy = "failing closed: requests are refused with 429"
	}
	r.logger.Warn("rate limit redis unreachable, "+policy, "addr", r.addr, "err", err)
}

func (r *Redis) markUp() {
	if !r.down.Load() || !r.down.CompareAndSwap(true, false) {
		return
	}
	r.m.up.Set(1)
	r.m.changes.WithLabelValues("up").Inc()
	downFor := time.Since(time.Unix(0, r.downSince.Load())).Round(time.Millisecond)
	r.logger.Info("rate limit redis reachable again, limits apply", "addr", r.addr, "down_for", downFor.String())
}

// redact removes the password from a URL parse error, which quotes the
// whole URL.
func redact(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil {
			return &url.Error{Op: ue.Op, URL: u.Redacted(), Err: ue.Err}
		}
		return &url.Error{Op: ue.Op, URL: "(redacted)", Err: ue.Err}
	}
	return err
}

type redisMetrics struct {
	up        prometheus.Gauge
	errors    prometheus.Counter
	changes   *prometheus.CounterVec
	decisions *prometheus.CounterVec
}

func newRedisMetrics(reg prometheus.Registerer, failClosed bool) (redisMetrics, error) {
	m := redisMetrics{
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "embedgate_ratelimit_redis_up",
			Help: "1 while the rate limit Redis answers, 0 while it is unreachable.",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "embedgate_ratelimit_redis_errors_total",
			Help: "Rate limit calls to Redis that failed or timed out.",
		}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "embedgate_ratelimit_redis_state_changes_total",
			Help: "Times the rate limit Redis went down or came back, by new state.",
		}, []string{"state"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "embedgate_ratelimit_redis_unavailable_decisions_total",
			Help: "Rate limit checks answered by the fail-open/closed policy because Redis was unreachable, by decision.",
		}, []string{"decision"}),
	}
	m.up.Set(1) // until a call says otherwise
	m.changes.WithLabelValues("down")
	m.changes.WithLabelValues("up")
	if failClosed {
		m.decisions.WithLabelValues("refused")
	} else {
		m.decisions.WithLabelValues("allowed")
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.up, m.errors, m.changes, m.decisions} {
		if err := reg.Register(c); err != nil {
			return redisMetrics{}, fmt.Errorf("ratelimit: register metrics: %w", err)
		}
	}
	return m, nil
}

// LogRedisThrough sends go-redis' own log lines (dial errors, twice a
// second during an outage, in plain text whatever the log format) to
// logger at debug level: the limiter already logs each outage and recovery
// once, and counts errors in metrics. go-redis has one logger per process,
// so this is for main to call once.
func LogRedisThrough(logger *slog.Logger) {
	redis.SetLogger(redisLog{logger})
}

type redisLog struct{ logger *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	if l.logger.Enabled(ctx, slog.LevelDebug) {
		l.logger.DebugContext(ctx, fmt.Sprintf(format, v...), "from", "go-redis")
	}
}
