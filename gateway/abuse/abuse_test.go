package abuse

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// serveFast serves a fasthttp server (the gateway's HTTP stack) with the
// given timeouts on loopback: /metrics answers 32 KB, anything else a
// short JSON.
func serveFast(t *testing.T, read, write, idle time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("x"), 32<<10)
	srv := &fasthttp.Server{Logger: quiet{}, ReadTimeout: read, WriteTimeout: write, IdleTimeout: idle,
		Handler: func(c *fasthttp.RequestCtx) {
			c.SetContentType("application/json")
			if string(c.Path()) == "/metrics" {
				c.SetBody(big)
				return
			}
			c.SetBodyString(`{"status":"ok"}`)
		}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return "http://" + ln.Addr().String()
}

// quiet is a fasthttp.Logger that drops the connection errors D3 causes.
type quiet struct{}

func (quiet) Printf(string, ...any) {}

func testProbe(t *testing.T, opts Options) *probe {
	t.Helper()
	p, err := newProbe(context.Background(), opts.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.close)
	return p
}

// D3 sees every kind of slow connection closed by a server with
// timeouts, and reports each one still open by a server without.
func TestSlowloris(t *testing.T) {
	t.Run("timeouts", func(t *testing.T) {
		base := serveFast(t, 300*time.Millisecond, 300*time.Millisecond, 300*time.Millisecond)
		p := testProbe(t, Options{BaseURL: base, SlowBound: 5 * time.Second})
		saw, err := slowlorisRow(context.Background(), p)
		if err != nil {
			t.Fatalf("D3 against a server with 300 ms timeouts: %v", err)
		}
		t.Log(saw)
		for _, name := range []string{"partial headers", "never send", "idle keep-alive", "short body", "never read"} {
			if !strings.Contains(saw, name+" closed after") {
				t.Errorf("D3 does not report %q: %s", name, saw)
			}
		}
	})
	t.Run("none", func(t *testing.T) {
		base := serveFast(t, 0, 0, 0)
		p := testProbe(t, Options{BaseURL: base, SlowBound: time.Second})
		start := time.Now()
		_, err := slowlorisRow(context.Background(), p)
		if err == nil {
			t.Fatal("D3 passed against a server without timeouts")
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("D3 took %v with a 1 s bound", took)
		}
		for _, name := range []string{"partial headers", "never send", "idle keep-alive", "short body", "never read"} {
			if !strings.Contains(err.Error(), name+": still open") {
				t.Errorf("D3 does not fail %q: %v", name, err)
			}
		}
	})
}

func TestRefusesRemote(t *testing.T) {
	for _, url := range []string{"http://192.0.2.1:8080", "http://[2001:db8::1]:8080"} {
		_, err := Run(context.Background(), Options{BaseURL: url})
		if err == nil || !strings.Contains(err.Error(), "--allow-remote") {
			t.Errorf("Run(%s) = %v, want a refusal naming --allow-remote", url, err)
		}
	}
	for _, host := range []string{"127.0.0.1", "::1", "localhost"} {
		if err := checkTarget(context.Background(), host, false); err != nil {
			t.Errorf("checkTarget(%s) = %v", host, err)
		}
	}
}

// The bomb is small, and inflates (all layers) to what was asked.
func TestGzipBomb(t *testing.T) {
	bomb, err := gzipBomb(8<<20, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(bomb) > 4<<10 {
		t.Errorf("bomb of 8 MiB is %d bytes", len(bomb))
	}
	if n := inflated(t, bomb, 3); n != 8<<20+len(`{"inputs":"x"}`) {
		t.Errorf("inflates to %d bytes", n)
	}
}

func TestReport(t *testing.T) {
	rep := Report{Results: []Result{{Name: "a", Status: Pass, Saw: "fine"}, {Name: "b", Status: Fail, Saw: "broke"}, {Name: "c", Status: Skip}}}
	if !rep.Failed() {
		t.Error("Failed() = false with a FAIL row")
	}
	var b strings.Builder
	if _, err := rep.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if lines := strings.Count(out, "\n"); lines != 4 {
		t.Errorf("%d lines, want 3 rows and a summary:\n%s", lines, out)
	}
	if !strings.Contains(out, "1 PASS, 1 FAIL, 1 SKIP") || !strings.Contains(out, "failed: b") {
		t.Errorf("summary:\n%s", out)
	}
}

// inflated is the size of b after gunzipping it layers times.
func inflated(t *testing.T, b []byte, layers int) int {
	t.Helper()
	for range layers {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if b, err = io.ReadAll(zr); err != nil {
			t.Fatal(err)
		}
	}
	return len(b)
}
