// Command abuse runs issue 11's attacks on a gateway, in a row, each
// bounded in time and connections, and reports PASS, FAIL or SKIP for
// each: gzip bombs, planted keys in malformed requests, slowloris,
// thousands of idle connections, parallel 2 MB /tokenize, a client that
// writes a too-large body before reading, then the weak spots (SIGHUP,
// client resets, oversized echoes, X-Forwarded-For, /metrics, NaN
// timeouts, failed authentications, unknown methods, upper-case paths,
// ambiguous framing). Point it at your own gateway; it refuses any host
// that is not loopback unless --allow-remote is given.
//
//	abuse [--url http://127.0.0.1:8080] [--pid PID] [--log-file F] ...
//
// The exit status is 1 if any row failed, 2 if the run could not start.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/embedgate/embedgate/gateway/abuse"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is main without the process: it returns the exit status.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	opts, err := parse(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "abuse:", err)
		return 2
	}
	opts.Progress = stdout
	rep, err := abuse.Run(ctx, opts)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	fmt.Fprintln(stdout, rep.Summary())
	if rep.Failed() {
		return 1
	}
	return 0
}

func parse(args []string, getenv func(string) string, stderr io.Writer) (abuse.Options, error) {
	o := abuse.Defaults
	var logFile string
	fs := flag.NewFlagSet("abuse", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: abuse [flags]\n\nRuns issue 11's attacks on your own gateway, each bounded in time and connections;\nexit status 1 if any row fails, 2 if the run cannot start.\n\nFlags:")
		fs.PrintDefaults()
	}
	fs.StringVar(&o.BaseURL, "url", o.BaseURL, "the gateway's base URL")
	fs.BoolVar(&o.AllowRemote, "allow-remote", false, "allow a host that is not loopback (only one you operate)")
	fs.StringVar(&o.APIKey, "api-key", getenv("ABUSE_API_KEY"), "a key the gateway accepts (default $ABUSE_API_KEY)")
	fs.BoolVar(&o.ExpectAuth, "expect-auth", false, "the gateway requires keys: send 300 wrong ones last (locks this address out for a minute)")
	fs.DurationVar(&o.RowTimeout, "row-timeout", o.RowTimeout, "time cap of each row")
	fs.DurationVar(&o.RunTimeout, "timeout", o.RunTimeout, "time cap of the whole run")
	fs.IntVar(&o.MaxConns, "max-conns", o.MaxConns, "connections open at once; keep it well under the gateway's --max-connections")
	fs.IntVar(&o.IdleConns, "idle-conns", o.IdleConns, "idle connections D4 opens (≤ --max-conns)")
	fs.IntVar(&o.TokenizeParallel, "tokenize-parallel", o.TokenizeParallel, "2 MB /tokenize requests D5 sends at once")
	fs.DurationVar(&o.SlowBound, "slow-bound", o.SlowBound, "D3 fails a slow connection the gateway still holds open after this (above its read, write and idle timeouts)")
	fs.IntVar(&o.PayloadLimit, "payload-limit", o.PayloadLimit, "the gateway's --payload-limit (sizes the bodies)")
	fs.Int64Var(&o.BombSize, "bomb-size", o.BombSize, "bytes D1's gzip bomb inflates to")
	fs.IntVar(&o.MetricsPort, "metrics-port", 0, "the gateway's --metrics-port, if set")
	fs.BoolVar(&o.TrustProxyHeaders, "trust-proxy-headers", false, "the gateway runs with --trust-proxy-headers: check X-Forwarded-For")
	fs.StringVar(&logFile, "log-file", "", "the gateway's log: scan it for the planted key and text")
	fs.IntVar(&o.PID, "pid", 0, "the gateway's process id: send it SIGHUP, watch its RSS and file descriptors")
	fs.DurationVar(&o.Settle, "settle", o.Settle, "time for RSS and file descriptors to return to their baseline")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if logFile != "" {
		if _, err := os.Stat(logFile); err != nil {
			return o, fmt.Errorf("--log-file: %w", err)
		}
		o.ReadLog = func() ([]byte, error) { return os.ReadFile(logFile) }
	}
	return o, nil
}
