package main

import (
	"strings"
	"syscall"
	"testing"
	"time"
)

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
