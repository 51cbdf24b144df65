// Package abuse is the drill an operator points at their own gateway:
// every attack of issue 11 (gzip bombs, planted keys in malformed
// requests, slowloris, thousands of idle connections, parallel 2 MB
// /tokenize, a client that writes a too-large body before reading, and
// the weak spots after them) run in a row, each bounded in time and
// connections, each reported PASS, FAIL or SKIP with what it saw. With a
// process id it also checks that the gateway's RSS and open file
// descriptors come back to their baseline afterwards.
//
// Run aims at loopback only unless Options.AllowRemote says otherwise:
// the traffic is hostile by design.
package abuse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Options configure a run. Zero values take the defaults of Defaults.
type Options struct {
	// BaseURL is the gateway, e.g. http://127.0.0.1:8080.
	BaseURL string
	// AllowRemote lets BaseURL name a host that is not loopback.
	AllowRemote bool
	// APIKey is sent with every request that should pass authentication.
	APIKey string
	// ExpectAuth says the gateway requires keys: run the wrong-keys drill
	// (which locks this address out of the gateway for about a minute,
	// so it runs last).
	ExpectAuth bool
	// RowTimeout bounds each row; RunTimeout the whole run.
	RowTimeout, RunTimeout time.Duration
	// MaxConns bounds the connections this run holds open at once; keep
	// it well under the gateway's --max-connections.
	MaxConns int
	// IdleConns is how many idle connections D4 opens (at most MaxConns
	// less a few, for the checks made while they are open).
	IdleConns int
	// TokenizeParallel is how many 2 MB /tokenize requests D5 sends at once.
	TokenizeParallel int
	// SlowBound is how long D3 waits for the gateway to close a slow
	// connection before it fails the row: above the gateway's read,
	// write and idle timeouts.
	SlowBound time.Duration
	// PayloadLimit is the gateway's --payload-limit: it sizes the bodies
	// meant to fit (2 MB text) and those meant not to.
	PayloadLimit int
	// BombSize is what D1's gzip bomb inflates to.
	BombSize int64
	// MetricsPort is the gateway's --metrics-port, if it has one.
	MetricsPort int
	// TrustProxyHeaders says the gateway runs with --trust-proxy-headers.
	TrustProxyHeaders bool
	// ReadLog returns the gateway's log so far; nil: logs are not scanned.
	ReadLog func() ([]byte, error)
	// PID is the gateway's process: its RSS and file descriptors are
	// watched, and SIGHUP is sent to it. 0: neither.
	PID int
	// Signal sends a signal to the gateway; nil: to PID, when set.
	Signal func(os.Signal) error
	// Settle is how long to wait after the rows for RSS and file
	// descriptors to return to their baseline.
	Settle time.Duration
	// Progress, when set, gets each row's line as the row ends.
	Progress io.Writer
}

// Defaults are the values zero Options take.
var Defaults = Options{
	BaseURL:          "http://127.0.0.1:8080",
	RowTimeout:       15 * time.Second,
	RunTimeout:       5 * time.Minute,
	MaxConns:         2500,
	IdleConns:        2000,
	TokenizeParallel: 8,
	SlowBound:        90 * time.Second,
	PayloadLimit:     2_000_000,
	BombSize:         100 << 20,
	Settle:           10 * time.Second,
}

func (o Options) withDefaults() Options {
	d := Defaults
	set := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	if o.BaseURL == "" {
		o.BaseURL = d.BaseURL
	}
	set(&o.RowTimeout, d.RowTimeout)
	set(&o.RunTimeout, d.RunTimeout)
	set(&o.SlowBound, d.SlowBound)
	set(&o.Settle, d.Settle)
	for _, p := range []struct {
		v   *int
		def int
	}{{&o.MaxConns, d.MaxConns}, {&o.IdleConns, d.IdleConns},
		{&o.TokenizeParallel, d.TokenizeParallel}, {&o.PayloadLimit, d.PayloadLimit}} {
		if *p.v <= 0 {
			*p.v = p.def
		}
	}
	if o.BombSize <= 0 {
		o.BombSize = d.BombSize
	}
	return o
}

// Status is a row's verdict.
type Status string

const (
	Pass Status = "PASS"
	Fail Status = "FAIL"
	Skip Status = "SKIP" // not run: the gateway's setup or the options do not allow it
)

// Result is one row.
type Result struct {
	Name   string
	Status Status
	Saw    string // what the row saw, or why it failed or was skipped
	Took   time.Duration
}

func (r Result) String() string {
	return fmt.Sprintf("%-16s %s %7s  %s", r.Name, r.Status, r.Took.Round(time.Millisecond), r.Saw)
}

// Report is a whole run.
type Report struct {
	Results []Result
	Took    time.Duration
}

// Failed says whether any row failed.
func (r Report) Failed() bool {
	for _, res := range r.Results {
		if res.Status == Fail {
			return true
		}
	}
	return false
}

// Summary is the last line: counts of each verdict and the duration.
func (r Report) Summary() string {
	n := map[Status]int{}
	var failed []string
	for _, res := range r.Results {
		n[res.Status]++
		if res.Status == Fail {
			failed = append(failed, res.Name)
		}
	}
	s := fmt.Sprintf("%d rows: %d PASS, %d FAIL, %d SKIP in %s", len(r.Results), n[Pass], n[Fail], n[Skip], r.Took.Round(time.Millisecond))
	if len(failed) > 0 {
		s += "; failed: " + strings.Join(failed, ", ")
	}
	return s
}

// WriteTo writes one line per row, then the summary.
func (r Report) WriteTo(w io.Writer) (int64, error) {
	var b strings.Builder
	for _, res := range r.Results {
		b.WriteString(res.String() + "\n")
	}
	b.WriteString(r.Summary() + "\n")
	n, err := io.WriteString(w, b.String())
	return int64(n), err
}

// skipped is a row's reason for not running.
type skipped struct{ why string }

func (s skipped) Error() string { return s.why }

func skip(format string, args ...any) error { return skipped{fmt.Sprintf(format, args...)} }

// row is one named check: it returns what it saw, or an error saying what
// went wrong (a skipped error to skip).
type row struct {
	name string
	// timeout overrides Options.RowTimeout for rows that must wait
	// longer (D3 waits for the gateway's own timeouts).
	timeout func(Options) time.Duration
	run     func(ctx context.Context, p *probe) (string, error)
}

// rows is every row, in order. The wrong-keys drill comes last: it locks
// this address out of the gateway's authentication for a minute.
func rows() []row {
	return []row{
		{name: "D1-gzip-bomb", run: gzipBombRow},
		{name: "D2-planted-key", run: plantedKeyRow},
		{name: "D5-tokenize", run: tokenizeRow},
		{name: "413-write-first", run: writeFirstRow},
		{name: "prompt-name-huge", run: promptNameRow},
		{name: "timeout-NaN", run: nanTimeoutRow},
		{name: "method-BREW", run: brewRow},
		{name: "upper-case-path", run: upperPathRow},
		{name: "framing", run: framingRow},
		{name: "reset-mid-body", run: resetRow},
		{name: "metrics-port", run: metricsPortRow},
		{name: "xff-unknown-hop", run: forwardedRow},
		{name: "SIGHUP", run: hangupRow},
		{name: "D3-slowloris", run: slowlorisRow, timeout: func(o Options) time.Duration { return o.SlowBound + 5*time.Second }},
		{name: "D4-idle-conns", run: idleConnsRow},
		{name: "wrong-keys", run: wrongKeysRow},
	}
}

// Run runs every row against opts.BaseURL, then, with a PID, checks the
// gateway's resources. The error is for a run that cannot start (a bad
// or remote URL, a gateway that does not answer /health); a row that
// fails is in the report.
func Run(ctx context.Context, opts Options) (Report, error) {
	opts = opts.withDefaults()
	p, err := newProbe(ctx, opts)
	if err != nil {
		return Report{}, err
	}
	defer p.close()
	if err := p.preflight(ctx); err != nil {
		return Report{}, err
	}
	if opts.Progress != nil {
		fmt.Fprintf(opts.Progress, "abuse: %s, up to %d connections, each row within %s, the run within %s\n",
			opts.BaseURL, opts.MaxConns, opts.RowTimeout, opts.RunTimeout)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, opts.RunTimeout)
	defer cancel()
	var watch *watcher
	if opts.PID > 0 {
		if watch, err = startWatcher(opts.PID); err != nil {
			return Report{}, err
		}
		defer watch.stop()
	}
	var rep Report
	add := func(res Result) {
		rep.Results = append(rep.Results, res)
		if opts.Progress != nil {
			fmt.Fprintln(opts.Progress, res)
		}
	}
	p.watch = watch
	for _, r := range rows() {
		add(runRow(ctx, p, r))
	}
	p.close() // our own connections must not count against the gateway's file descriptors
	if watch != nil {
		add(watch.settle(opts.Settle))
	}
	rep.Took = time.Since(start)
	return rep, nil
}

// runRow runs r under its timeout; a row still running at its deadline
// fails, and the run stops waiting for it (its connections close as its
// context ends).
func runRow(ctx context.Context, p *probe, r row) Result {
	start := time.Now()
	res := Result{Name: r.name}
	if ctx.Err() != nil {
		res.Status, res.Saw = Fail, "not run: the run's time cap was reached"
		return res
	}
	timeout := p.opts.RowTimeout
	if r.timeout != nil {
		timeout = r.timeout(p.opts)
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if p.watch != nil {
		p.watch.startRow()
	}
	type outcome struct {
		saw string
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		saw, err := r.run(rctx, p)
		done <- outcome{saw, err}
	}()
	var out outcome
	select {
	case out = <-done:
	case <-rctx.Done():
		out.err = fmt.Errorf("row still running after %s", timeout)
		select { // give it a moment to report what it saw
		case o := <-done:
			if o.err != nil {
				out.err = fmt.Errorf("row timed out after %s: %w", timeout, o.err)
			}
		case <-time.After(time.Second):
		}
	}
	res.Took = time.Since(start)
	var sk skipped
	switch {
	case errors.As(out.err, &sk):
		res.Status, res.Saw = Skip, sk.why
	case out.err != nil:
		res.Status, res.Saw = Fail, out.err.Error()
	default:
		res.Status, res.Saw = Pass, out.saw
	}
	res.Saw = strings.ReplaceAll(res.Saw, "\n", "; ") // errors.Join's lines
	if p.watch != nil {
		if grew := p.watch.rowGrowth(); grew >= 10<<20 {
			res.Saw += fmt.Sprintf(" [gateway RSS +%d MB]", grew>>20)
		}
	}
	return res
}
