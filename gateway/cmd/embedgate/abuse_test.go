package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/embedgate/embedgate/gateway/abuse"
)

// TestAbuseDrill runs scripts/abuse's drill, every row of issue 11,
// against the gateway with short connection timeouts and a low
// connection cap: every row must pass, and this process (the gateway
// runs in it) must return to its baseline of RSS and file descriptors.
func TestAbuseDrill(t *testing.T) {
	const key = "sk-abuse-drill"
	env := baseEnv(t)
	env["API_KEY"] = key
	env["JSON_OUTPUT"] = "true"
	env["TRUST_PROXY_HEADERS"] = "true"
	env["METRICS_PORT"] = freePort(t)
	env["MAX_CONCURRENT_REQUESTS"] = "4"
	env["READ_TIMEOUT"], env["WRITE_TIMEOUT"], env["IDLE_TIMEOUT"] = "300ms", "300ms", "300ms"
	env["MAX_CONNECTIONS"] = "100" // D4 opens 300
	// Smaller bodies than the drill's 2 MB default, and a smaller bomb:
	// the race detector makes the tokenizer and compress/flate tens of
	// times slower, and the gateway's linger (2 s) must still drain a
	// too-large body on a busy machine.
	const payloadLimit = 500_000
	env["PAYLOAD_LIMIT"] = strconv.Itoa(payloadLimit)
	g := startGateway(t, env)
	metricsPort, _ := strconv.Atoi(env["METRICS_PORT"])

	var progress strings.Builder
	rep, err := abuse.Run(context.Background(), abuse.Options{
		BaseURL:           g.url,
		APIKey:            key,
		ExpectAuth:        true,
		RowTimeout:        15 * time.Second,
		RunTimeout:        50 * time.Second,
		MaxConns:          400,
		IdleConns:         300,
		SlowBound:         3 * time.Second,
		PayloadLimit:      payloadLimit,
		BombSize:          16 << 20,
		MetricsPort:       metricsPort,
		TrustProxyHeaders: true,
		ReadLog:           func() ([]byte, error) { return g.logs.Bytes(), nil },
		PID:               os.Getpid(), // the gateway runs in this process
		Signal:            g.sender(t), // not the OS: a real SIGHUP would reach the test binary
		Settle:            10 * time.Second,
		Progress:          &progress,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("drill:\n%s%s", progress.String(), rep.Summary())
	for _, res := range rep.Results {
		if res.Status != abuse.Pass {
			t.Errorf("%s: %s", res.Name, res.Saw)
		}
	}
	if rep.Took > time.Minute {
		t.Errorf("the drill took %v", rep.Took)
	}
}

// sender is run's signal channel as a func for abuse.Options.Signal,
// safe to call from any goroutine: signals reach this run only, and only
// those it subscribed to (for others the OS would apply its default
// action).
func (g *instance) sender(t *testing.T) func(os.Signal) error {
	t.Helper()
	if g.sub == nil {
		select {
		case sub := <-g.notified:
			g.sub = &sub
		case <-time.After(5 * time.Second):
			t.Fatal("run did not subscribe to signals")
		}
	}
	sub := *g.sub
	return func(sig os.Signal) error {
		if !slices.Contains(sub.sigs, sig) {
			return fmt.Errorf("run subscribed to %v, not %v: the OS would apply its default action", sub.sigs, sig)
		}
		select {
		case sub.c <- sig:
			return nil
		case <-time.After(5 * time.Second):
			return fmt.Errorf("run did not take %v", sig)
		}
	}
}
