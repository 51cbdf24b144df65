package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// No flood of connections and no exhaustion of file descriptors may end
// the process. fasthttp's accept loop returns on any accept error but a
// timeout, and serve then stops everything: ~20,000 idle connections made
// accept fail with EMFILE and the gateway exit. So every listener is a
// limitListener, which holds Accept while its cap of connections is open
// (further clients wait in the kernel's listen backlog, as with
// golang.org/x/net/netutil.LimitListener) and retries failed accepts with
// backoff, as net/http's Server does.
//
// netutil.LimitListener itself does not fit: its connections hide
// CloseWrite, which the lingering close after a 413 needs, and it returns
// accept errors to the server.

const (
	// adminMaxConnections caps the --metrics-port listener: a scraper and
	// an operator's profiler need a few.
	adminMaxConnections = 64
	// fdReserve is the descriptors kept for all but the API's connections:
	// the admin listener's, the model and runtime files, Redis, OTLP and
	// hub connections, the lingering closes of refused uploads.
	fdReserve = 256
	// acceptBackoffMin and acceptBackoffMax bound the wait between
	// failed accepts: net/http's Server waits 5 ms, doubling up to 1 s.
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// acceptMetrics are the listeners' series, by listener ("api", "admin").
type acceptMetrics struct {
	errors *prometheus.CounterVec // embedgate_accept_errors_total{listener}
	waits  *prometheus.CounterVec // embedgate_connection_cap_waits_total{listener}
	open   *prometheus.GaugeVec   // embedgate_open_connections{listener}
}

func newAcceptMetrics(reg prometheus.Registerer) (*acceptMetrics, error) {
	m := &acceptMetrics{
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "embedgate_accept_errors_total",
			Help: "Failed accepts (EMFILE and the like), each retried after a backoff.",
		}, []string{"listener"}),
		waits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "embedgate_connection_cap_waits_total",
			Help: "Accepts held because the listener's cap of open connections (--max-connections) was reached.",
		}, []string{"listener"}),
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "embedgate_open_connections",
			Help: "Connections accepted and not yet closed.",
		}, []string{"listener"}),
	}
	for _, c := range []prometheus.Collector{m.errors, m.waits, m.open} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register listener metrics: %w", err)
		}
	}
	return m, nil
}

// limitListener holds Accept while max connections are open and retries
// failed accepts. Its connections free their slot on Close.
type limitListener struct {
	net.Listener
	name      string
	max       int
	logger    *slog.Logger
	slots     chan struct{} // one per open connection
	done      chan struct{} // closed by Close: ends waits and backoffs
	closeOnce sync.Once
	errors    prometheus.Counter
	waits     prometheus.Counter
	open      prometheus.Gauge

	// The episodes under way, each logged once as it begins and once as
	// it ends, not per accept: a flood would otherwise flood the log.
	mu      sync.Mutex
	atCap   episode // Accept waiting for a slot; count: accepts held
	failing episode // accepts failing; count: failed accepts
}

// episode is a stretch of trouble: when it began (zero: none under way)
// and how often it struck since.
type episode struct {
	since time.Time
	count int
}

// strike counts one more and says whether it began the episode.
func (e *episode) strike() (began bool) {
	e.count++
	if e.since.IsZero() {
		e.since = time.Now()
		return true
	}
	return false
}

// end closes the episode, if one is under way, and says how often it
// struck and for how long.
func (e *episode) end() (count int, took time.Duration, ended bool) {
	if e.since.IsZero() {
		return 0, 0, false
	}
	count, took = e.count, time.Since(e.since).Round(time.Millisecond)
	*e = episode{}
	return count, took, true
}

// newLimitListener wraps ln, named name in logs and metrics; m may be nil.
func newLimitListener(ln net.Listener, name string, max int, logger *slog.Logger, m *acceptMetrics) *limitListener {
	if m == nil {
		m, _ = newAcceptMetrics(prometheus.NewRegistry())
	}
	return &limitListener{Listener: ln, name: name, max: max, logger: logger,
		slots: make(chan struct{}, max), done: make(chan struct{}),
		errors: m.errors.WithLabelValues(name), waits: m.waits.WithLabelValues(name), open: m.open.WithLabelValues(name)}
}

// Accept waits for a free slot, then for a connection. It returns an
// error only once the listener is closed.
func (l *limitListener) Accept() (net.Conn, error) {
	if err := l.acquire(); err != nil {
		return nil, err
	}
	c, err := l.accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	l.open.Inc()
	return &limitConn{Conn: c, l: l}, nil
}

// acquire takes a slot, waiting while every slot is taken.
func (l *limitListener) acquire() error {
	select {
	case l.slots <- struct{}{}:
		// The episode ends once a tenth of the slots are free, not at the
		// first: while a flood ends, closes and accepts alternate at the
		// cap, and each would log.
		if len(l.slots) <= l.max*9/10 {
			l.endCapEpisode()
		}
		return nil
	case <-l.done:
		return net.ErrClosed
	default:
	}
	l.beginCapEpisode()
	select {
	case l.slots <- struct{}{}:
		return nil
	case <-l.done:
		return net.ErrClosed
	}
}

// accept retries every failure but the listener's close. EMFILE, ENFILE,
// ENOBUFS and ENOMEM pass once connections or memory are released; Linux's
// accept also reports network errors of the pending connection (EPROTO,
// EHOSTUNREACH, ...) and firewall refusals (EPERM), which concern that
// connection only. None is a reason to stop serving the others.
func (l *limitListener) accept() (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			l.endFailures()
			return c, nil
		}
		if errors.Is(err, net.ErrClosed) {
			return nil, err
		}
		select {
		case <-l.done:
			return nil, net.ErrClosed
		default:
		}
		l.errors.Inc()
		delay = min(max(2*delay, acceptBackoffMin), acceptBackoffMax)
		l.beginFailures(err, delay)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-l.done:
			t.Stop()
			return nil, net.ErrClosed
		}
	}
}

// Close closes the listener and ends Accepts waiting for a slot or a retry.
func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

func (l *limitListener) release() {
	<-l.slots
	l.open.Dec()
}

func (l *limitListener) beginCapEpisode() {
	l.waits.Inc()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.atCap.strike() {
		l.logger.Warn("connection cap reached: new connections wait in the listen backlog until others close",
			"listener", l.name, "max_connections", l.max)
	}
}

func (l *limitListener) endCapEpisode() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if held, took, ok := l.atCap.end(); ok {
		l.logger.Info("below the connection cap again", "listener", l.name, "held_accepts", held, "took", took)
	}
}

func (l *limitListener) beginFailures(err error, delay time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failing.strike() {
		l.logger.Warn("accept failed: retrying with backoff, the gateway keeps serving open connections",
			"listener", l.name, "err", err, "retry_in", delay)
	}
}

func (l *limitListener) endFailures() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if failed, took, ok := l.failing.end(); ok {
		l.logger.Info("accepting connections again", "listener", l.name, "failed_accepts", failed, "took", took)
	}
}

// limitConn frees its listener's slot on its first Close.
type limitConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.l.release)
	return err
}

// CloseWrite half-closes the connection, for the server's lingering close.
func (c *limitConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// connGuard wraps the bound listeners of serve in their caps.
type connGuard struct {
	maxConns int // the API listener's cap: --max-connections, perhaps lowered
	logger   *slog.Logger
	metrics  *acceptMetrics
}

// newConnGuard raises the limit of open files as far as it goes and
// lowers --max-connections, with a warning, when the limit cannot hold it
// plus fdReserve: the cap must bind before the descriptors run out.
func newConnGuard(maxConns int, logger *slog.Logger, reg prometheus.Registerer) (connGuard, error) {
	m, err := newAcceptMetrics(reg)
	if err != nil {
		return connGuard{}, err
	}
	soft, hard, raised, err := raiseFileLimit()
	if err != nil {
		logger.Debug("limit of open files unknown", "err", err, "soft", soft, "hard", hard)
	} else {
		logger.Debug("limit of open files", "soft", soft, "hard", hard, "raised_to_hard", raised)
	}
	capped := connectionCap(maxConns, soft)
	if capped < maxConns {
		logger.Warn("--max-connections lowered to fit the limit of open files: raise the hard limit (ulimit -Hn, LimitNOFILE=, docker --ulimit nofile=) to allow more",
			"max_connections", maxConns, "lowered_to", capped, "open_files_limit", soft, "reserve", fdReserve)
	}
	return connGuard{maxConns: capped, logger: logger, metrics: m}, nil
}

// connectionCap is want, lowered when soft, the limit of open files (0:
// unknown), cannot hold it plus fdReserve.
func connectionCap(want int, soft uint64) int {
	if soft == 0 || soft >= uint64(want)+fdReserve {
		return want
	}
	room := soft / 2
	if soft > 2*fdReserve {
		room = soft - fdReserve
	}
	return int(max(room, 1))
}

// api wraps the API listener.
func (g connGuard) api(ln net.Listener) net.Listener {
	return newLimitListener(ln, "api", g.maxConns, g.logger, g.metrics)
}

// admin wraps the --metrics-port listener.
func (g connGuard) admin(ln net.Listener) net.Listener {
	return newLimitListener(ln, "admin", adminMaxConnections, g.logger, g.metrics)
}
