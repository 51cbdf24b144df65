package redisconn

import (
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// OutageOptions configure an Outage.
type OutageOptions struct {
	// Addr is Redis' host:port, for logs: never the URL (it may hold a
	// password).
	Addr string
	// ProbeInterval is how often, while Redis is down, one call may try it.
	ProbeInterval time.Duration
	// Failures is how many calls in a row must fail before Redis counts as
	// down; < 1 counts as 1.
	Failures int
	// DownMessage is logged (warn, with addr and err) when Redis goes down;
	// UpMessage (info, with addr and down_for) when it answers again.
	DownMessage, UpMessage string
	// Up names the gauge that is 1 while Redis answers and 0 while down;
	// Changes the counter of state changes, which gets a "state" label
	// (down, up).
	Up      prometheus.GaugeOpts
	Changes prometheus.CounterOpts
}

// Outage tracks whether a Redis answers, from what the calls to it see.
// While it is down, callers skip it except one per ProbeInterval; only the
// call that changes the state logs, so an outage is two log lines however
// many calls it meets. It is safe for concurrent use.
type Outage struct {
	opts    OutageOptions
	logger  *slog.Logger
	up      prometheus.Gauge
	changes *prometheus.CounterVec

	down      atomic.Bool
	failures  atomic.Int64 // calls failed in a row
	downSince atomic.Int64 // unix nanoseconds
	nextProbe atomic.Int64 // unix nanoseconds
}

// NewOutage returns a tracker for a Redis that is up until a call fails.
func NewOutage(opts OutageOptions, logger *slog.Logger) *Outage {
	opts.Failures = max(opts.Failures, 1)
	o := &Outage{
		opts:    opts,
		logger:  logger,
		up:      prometheus.NewGauge(opts.Up),
		changes: prometheus.NewCounterVec(opts.Changes, []string{"state"}),
	}
	o.up.Set(1) // until a call says otherwise
	o.changes.WithLabelValues("down")
	o.changes.WithLabelValues("up")
	return o
}

// Collectors are the gauge and the counter, for the caller to register.
func (o *Outage) Collectors() []prometheus.Collector {
	return []prometheus.Collector{o.up, o.changes}
}

// Down reports whether Redis counts as down.
func (o *Outage) Down() bool { return o.down.Load() }

// Skip reports whether a call should leave Redis alone: while it is down,
// every call but one per ProbeInterval.
func (o *Outage) Skip() bool {
	return o.down.Load() && !o.claimProbe()
}

// claimProbe lets one caller per ProbeInterval try Redis while it is down.
func (o *Outage) claimProbe() bool {
	now := time.Now().UnixNano()
	next := o.nextProbe.Load()
	return now >= next && o.nextProbe.CompareAndSwap(next, now+int64(o.opts.ProbeInterval))
}

// MarkDown records a failed call; after Failures in a row Redis is down.
func (o *Outage) MarkDown(err error) {
	if o.failures.Add(1) < int64(o.opts.Failures) {
		return
	}
	now := time.Now()
	if !o.down.CompareAndSwap(false, true) {
		return
	}
	o.downSince.Store(now.UnixNano())
	o.nextProbe.Store(now.Add(o.opts.ProbeInterval).UnixNano())
	o.up.Set(0)
	o.changes.WithLabelValues("down").Inc()
	o.logger.Warn(o.opts.DownMessage, "addr", o.opts.Addr, "err", err)
}

// MarkUp records a call, begun at start, that Redis answered. A call
// begun before Redis was marked down says nothing of it now: one already
// on the wire when Redis died can still succeed, and would turn it up
// again only for the next call to turn it down.
func (o *Outage) MarkUp(start time.Time) {
	// Loads first: on the hot path Redis is up, and a store per call
	// would bounce the cache line between cores.
	if o.failures.Load() != 0 {
		o.failures.Store(0)
	}
	if !o.down.Load() || start.UnixNano() < o.downSince.Load() || !o.down.CompareAndSwap(true, false) {
		return
	}
	o.up.Set(1)
	o.changes.WithLabelValues("up").Inc()
	downFor := time.Since(time.Unix(0, o.downSince.Load())).Round(time.Millisecond)
	o.logger.Info(o.opts.UpMessage, "addr", o.opts.Addr, "down_for", downFor.String())
}
