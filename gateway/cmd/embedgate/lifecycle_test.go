package main

import (
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/embedgate/embedgate/gateway/internal/testenv"
)

// TestPortInUse: a port that cannot be bound fails run before anything
// starts, so run returns its error with no goroutine left behind (the
// batch loop included) and every port it bound closed again.
func TestPortInUse(t *testing.T) {
	for _, tt := range []struct{ name, busy string }{
		{"api port", "PORT"},
		{"metrics port", "METRICS_PORT"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			busy, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer busy.Close()
			env := baseEnv(t)
			env["HOSTNAME"], env["PORT"], env["METRICS_PORT"] = "127.0.0.1", freePort(t), freePort(t)
			_, env[tt.busy], _ = net.SplitHostPort(busy.Addr().String())

			before, existing := goroutines(), goleak.IgnoreCurrent()
			logs := &testenv.LogBuffer{}
			err = run(context.Background(), []string{"embedgate"}, func(k string) string { return env[k] }, nil, io.Discard, logs, noSignals)
			if !errors.Is(err, syscall.EADDRINUSE) {
				t.Errorf("run() = %v, want address in use\n%s", err, logs.String())
			}
			// At once, not after goleak's retries: no actor may still be
			// winding down, nor be about to start.
			for id, stack := range goroutines() {
				if _, ok := before[id]; !ok {
					t.Errorf("goroutine still running after run returned:\n%s", stack)
				}
			}
			goleak.VerifyNone(t, append(testenv.FasthttpLeaks(), existing)...)
			// Calibration is the batch loop's first act.
			if strings.Contains(logs.String(), "calibrat") {
				t.Errorf("the batch loop ran although a port was in use:\n%s", logs.String())
			}
			for _, name := range []string{"PORT", "METRICS_PORT"} {
				if name == tt.busy {
					continue
				}
				ln, err := net.Listen("tcp", "127.0.0.1:"+env[name])
				if err != nil {
					t.Errorf("%s still bound after run returned: %v", name, err)
					continue
				}
				ln.Close()
			}
		})
	}
}

// TestSIGHUPWithoutKeysFile: with nothing to reload, SIGHUP is logged and
// the gateway goes on serving.
func TestSIGHUPWithoutKeysFile(t *testing.T) {
	g := startGateway(t, baseEnv(t))
	g.signal(t, syscall.SIGHUP)
	waitFor(t, func() bool { return strings.Contains(g.logs.String(), "SIGHUP: nothing to reload") }, "the SIGHUP log line")
	if r := g.post(t, "/embed", `{"inputs":"still here"}`); r.status != 200 {
		t.Errorf("POST /embed after SIGHUP = %d %s, want 200", r.status, r.body)
	}
	select {
	case <-g.done:
		t.Fatalf("run() returned after SIGHUP: %v", g.err)
	default:
	}
}

// TestSIGTERM: SIGTERM drains the gateway and run returns nil.
func TestSIGTERM(t *testing.T) {
	g := startGateway(t, baseEnv(t))
	g.signal(t, syscall.SIGTERM)
	select {
	case <-g.done:
		if g.err != nil {
			t.Errorf("run() after SIGTERM = %v, want nil", g.err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run() did not return after SIGTERM")
	}
	for _, want := range []string{"draining", "stopped"} {
		if !strings.Contains(g.logs.String(), "msg="+want) {
			t.Errorf("log has no %q line", want)
		}
	}
}

// TestMetricsPort: with --metrics-port, /metrics and the profiler are
// served there, and the profiler is not on the public port.
func TestMetricsPort(t *testing.T) {
	env := baseEnv(t)
	env["METRICS_PORT"], env["PPROF"] = freePort(t), "true"
	g := startGateway(t, env)
	admin := &instance{url: "http://127.0.0.1:" + env["METRICS_PORT"]}
	if r := admin.get(t, "/metrics"); r.status != 200 || !strings.Contains(string(r.body), "embedgate_") {
		t.Errorf("GET /metrics on the metrics port = %d, want 200 with embedgate_ series", r.status)
	}
	if r := admin.get(t, "/debug/pprof/"); r.status != 200 {
		t.Errorf("GET /debug/pprof/ on the metrics port = %d, want 200", r.status)
	}
	if r := g.get(t, "/debug/pprof/"); r.status != 404 {
		t.Errorf("GET /debug/pprof/ on the public port = %d, want 404", r.status)
	}
}

// allStacks is every goroutine's stack, as runtime.Stack writes them.
func allStacks() []byte {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	return buf
}

// goroutines are the stacks of every goroutine but the caller's, by id.
func goroutines() map[string]string {
	buf := allStacks()
	out := make(map[string]string)
	for i, g := range strings.Split(string(buf), "\n\n") {
		if i == 0 {
			continue // the caller's own
		}
		id, _, _ := strings.Cut(strings.TrimPrefix(g, "goroutine "), " ")
		if _, frames, _ := strings.Cut(g, "\n"); strings.HasPrefix(frames, "runtime.goexit1(") {
			// Its function has returned; only the runtime's exit is left
			// (prometheus' Unregister of a wrapped collector starts one).
			continue
		}
		out[id] = g
	}
	return out
}

// TestStopBeforeServing: a stop that comes while the actors start (here,
// before: ctx is already done) still stops every one of them, the HTTP
// servers included, which may not have begun to serve yet.
func TestStopBeforeServing(t *testing.T) {
	existing := goleak.IgnoreCurrent()
	env := baseEnv(t)
	env["HOSTNAME"], env["PORT"], env["METRICS_PORT"] = "127.0.0.1", freePort(t), freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	logs := &testenv.LogBuffer{}
	if err := run(ctx, []string{"embedgate"}, func(k string) string { return env[k] }, nil, io.Discard, logs, noSignals); err != nil {
		t.Logf("run() = %v", err) // a step may notice ctx first; returning is what counts
	}
	goleak.VerifyNone(t, append(testenv.FasthttpLeaks(), existing)...)
}
