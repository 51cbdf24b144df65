package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// dial opens a raw connection to g.
func (g *instance) dial(t *testing.T) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(g.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedWithin reads c, discarding what comes, until the server closes it,
// and returns how long that took; it fails the test if c is still open
// after limit.
func closedWithin(t *testing.T, c net.Conn, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(limit))
	_, err := io.Copy(io.Discard, c)
	took := time.Since(start)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %v", limit)
	}
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("reading until the close: %v", err)
	}
	return took
}

// TestConnectionTimeouts: connections that send nothing, part of their
// headers (slowloris), or part of their body are closed after
// --read-timeout; an idle keep-alive connection after --idle-timeout; a
// client that stops reading its answer is cut after --write-timeout. The
// metrics port has the same bounds. Before, each was held open for ever:
// no timeout was set.
func TestConnectionTimeouts(t *testing.T) {
	t.Parallel()
	const read, idle, write = 2 * time.Second, 200 * time.Millisecond, 500 * time.Millisecond
	env := baseEnv(t)
	env["METRICS_PORT"] = freePort(t)
	g := startGateway(t, env, "--read-timeout="+read.String(), "--idle-timeout="+idle.String(), "--write-timeout="+write.String())

	for _, tt := range []struct{ name, send string }{
		{"sends nothing", ""},
		{"partial headers", "POST /embed HTTP/1.1\r\nHost: gateway\r\nContent-Type: appl"},
		{"headers a byte at a time", "slow:POST /embed HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"},
		{"short body", "POST /embed HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"inputs\":"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := g.dial(t)
			if slow, ok := strings.CutPrefix(tt.send, "slow:"); ok {
				// One byte every 100 ms keeps each read short of any
				// per-read timeout: only a deadline on the whole request
				// ends it.
				go func() {
					for i := range len(slow) {
						if _, err := c.Write([]byte{slow[i]}); err != nil {
							return
						}
						time.Sleep(100 * time.Millisecond)
					}
				}()
			} else if _, err := io.WriteString(c, tt.send); err != nil {
				t.Fatal(err)
			}
			took := closedWithin(t, c, 3*read)
			if took < read-100*time.Millisecond {
				t.Errorf("closed after %v, before the read timeout of %v", took, read)
			}
		})
	}

	t.Run("metrics port", func(t *testing.T) {
		t.Parallel()
		c, err := net.Dial("tcp", "127.0.0.1:"+env["METRICS_PORT"])
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: gate"); err != nil {
			t.Fatal(err)
		}
		if took := closedWithin(t, c, 3*read); took < read-100*time.Millisecond {
			t.Errorf("closed after %v, before the read timeout of %v", took, read)
		}
	})

	t.Run("idle keep-alive", func(t *testing.T) {
		t.Parallel()
		c := g.dial(t)
		br := bufio.NewReader(c)
		// Two requests: fasthttp's idle timeout applies between requests.
		for range 2 {
			if _, err := io.WriteString(c, "GET /ready HTTP/1.1\r\nHost: gateway\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.Close {
				t.Fatalf("GET /ready = %d (close %v), want 200 keep-alive", resp.StatusCode, resp.Close)
			}
		}
		// Well before the read timeout: only the idle timeout closes it.
		if took := closedWithin(t, c, read-500*time.Millisecond); took < idle-50*time.Millisecond {
			t.Errorf("idle connection closed after %v, before the idle timeout of %v", took, idle)
		}
	})

	t.Run("client does not read", func(t *testing.T) {
		t.Parallel()
		// A small receive window, set before connecting, and a large
		// answer: the server's writes block once the socket buffers fill.
		d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
			return errors.Join(err, serr)
		}}
		c, err := d.Dial("tcp", strings.TrimPrefix(g.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// 1000 inputs of 202 tokens: about 14 MB of tokens as JSON.
		input := fmt.Sprintf("%q", strings.Repeat("hello world ", 100))
		body := `{"inputs":[` + strings.Repeat(input+",", 999) + input + `]}`
		if _, err := fmt.Fprintf(c, "POST /tokenize HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body); err != nil {
			t.Fatal(err)
		}
		// The status line comes once the handler has returned: the write
		// timeout runs from there.
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		br := bufio.NewReaderSize(c, 512)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK || resp.ContentLength < 8<<20 {
			t.Fatalf("POST /tokenize = %d with %d bytes, want 200 with more than 8 MiB", resp.StatusCode, resp.ContentLength)
		}
		time.Sleep(write + time.Second)
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		n, err := io.Copy(io.Discard, resp.Body)
		if err == nil {
			t.Fatalf("read the whole answer (%d bytes) after not reading for %v: want the connection cut after the write timeout of %v", n, write+time.Second, write)
		}
		if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("the connection is still open after %d of %d bytes", n, resp.ContentLength)
		}
		t.Logf("cut after %d of %d bytes: %v", n, resp.ContentLength, err)
	})
}

// TestMaxConnections: with --max-connections=4 and 7 connections open,
// the first 4 are served, the other 3 wait in the listen backlog until
// some close, and the gateway keeps running.
func TestMaxConnections(t *testing.T) {
	t.Parallel()
	const max, extra = 4, 3
	g := startGateway(t, baseEnv(t), fmt.Sprintf("--max-connections=%d", max))
	// The readiness check's keep-alive connection would hold a slot.
	http.DefaultClient.CloseIdleConnections()
	time.Sleep(100 * time.Millisecond)

	conns := make([]net.Conn, max+extra)
	for i := range conns {
		conns[i] = g.dial(t)
	}
	request := func(c net.Conn) {
		t.Helper()
		const body = `{"inputs":"hello"}`
		if _, err := fmt.Fprintf(c, "POST /embed HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body); err != nil {
			t.Fatal(err)
		}
	}
	answered := func(c net.Conn, within time.Duration) {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(within))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("no answer within %v: %v", within, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /embed = %d, want 200", resp.StatusCode)
		}
	}

	request(conns[0])
	answered(conns[0], 10*time.Second)

	last := conns[len(conns)-1]
	request(last)
	_ = last.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if n, err := last.Read(make([]byte, 1)); n > 0 || err == nil || !os.IsTimeout(err) {
		t.Fatalf("a connection past the cap of %d got %d bytes, %v: want it held", max, n, err)
	}
	if !strings.Contains(g.logs.String(), "connection cap reached") {
		t.Errorf("the log does not say the cap was reached:\n%s", g.logs)
	}

	for _, c := range conns[1 : 1+extra] {
		c.Close()
	}
	answered(last, 10*time.Second)

	select {
	case <-g.done:
		t.Fatalf("run returned %v while connections were held", g.err)
	default:
	}
	for _, c := range conns[max : max+extra-1] {
		request(c)
		answered(c, 10*time.Second)
	}
}
