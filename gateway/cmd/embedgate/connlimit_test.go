package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/embedgate/embedgate/gateway/internal/testenv"
)

// fakeListener returns, from Accept, the errors in errs one by one, then
// the connections sent on conns; Close ends it.
type fakeListener struct {
	errs   chan error
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newFakeListener(errs ...error) *fakeListener {
	l := &fakeListener{errs: make(chan error, len(errs)), conns: make(chan net.Conn, 16), closed: make(chan struct{})}
	for _, e := range errs {
		l.errs <- e
	}
	return l
}

func (l *fakeListener) Accept() (net.Conn, error) {
	select {
	case err := <-l.errs:
		return nil, err
	default:
	}
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *fakeListener) Close() error   { l.once.Do(func() { close(l.closed) }); return nil }
func (l *fakeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// pipeConn is one end of a net.Pipe; the other end is closed with the test.
func pipeConn(t *testing.T) net.Conn {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return a
}

func acceptErr(errno syscall.Errno) error {
	return &net.OpError{Op: "accept", Net: "tcp", Err: &osSyscallError{"accept4", errno}}
}

// osSyscallError is os.SyscallError's shape, as net's accept wraps errno.
type osSyscallError struct {
	call string
	err  error
}

func (e *osSyscallError) Error() string { return e.call + ": " + e.err.Error() }
func (e *osSyscallError) Unwrap() error { return e.err }

// value reads a counter's or a gauge's value.
func value(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

func newTestLimitListener(t *testing.T, ln net.Listener, max int) (*limitListener, *testenv.LogBuffer, *acceptMetrics) {
	t.Helper()
	logs := &testenv.LogBuffer{}
	m, err := newAcceptMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	l := newLimitListener(ln, "api", max, slog.New(slog.NewTextHandler(logs, nil)), m)
	t.Cleanup(func() { l.Close() })
	return l, logs, m
}

// TestAcceptRetriesErrors: EMFILE and the other accept errors of a
// process short of descriptors or memory are retried with backoff, and
// Accept returns the connection that comes once they pass; one log line
// says the accepts fail (not one per error), one that they work again.
// Before, the first EMFILE went to fasthttp, which stopped serving, and
// the gateway exited.
func TestAcceptRetriesErrors(t *testing.T) {
	t.Parallel()
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.EPROTO, syscall.EPERM} {
		t.Run(errno.Error(), func(t *testing.T) {
			errs := make([]error, 5)
			for i := range errs {
				errs[i] = acceptErr(errno)
			}
			fake := newFakeListener(errs...)
			want := pipeConn(t)
			fake.conns <- want
			l, logs, m := newTestLimitListener(t, fake, 4)

			start := time.Now()
			c, err := l.Accept()
			if err != nil {
				t.Fatalf("Accept() error = %v, want the connection after the errors", err)
			}
			if c.(*limitConn).Conn != want {
				t.Errorf("Accept() = %v, want the fake's connection", c)
			}
			// 5 + 10 + 20 + 40 + 80 ms.
			if took := time.Since(start); took < 155*time.Millisecond || took > 2*time.Second {
				t.Errorf("Accept took %v, want the backoff of 5 ms doubling (155 ms)", took)
			}
			if n := strings.Count(logs.String(), "accept failed"); n != 1 {
				t.Errorf("%d log lines of failed accepts, want 1 for the episode:\n%s", n, logs)
			}
			if !strings.Contains(logs.String(), errno.Error()) {
				t.Errorf("the log does not name the error %q:\n%s", errno.Error(), logs)
			}
			if n := strings.Count(logs.String(), "accepting connections again"); n != 1 {
				t.Errorf("%d log lines of recovery, want 1:\n%s", n, logs)
			}
			if got := value(t, m.errors.WithLabelValues("api")); got != 5 {
				t.Errorf("embedgate_accept_errors_total = %v, want 5", got)
			}
			if got := value(t, m.open.WithLabelValues("api")); got != 1 {
				t.Errorf("embedgate_open_connections = %v, want 1", got)
			}
			c.Close()
			c.Close() // frees the slot once
			if got := value(t, m.open.WithLabelValues("api")); got != 0 {
				t.Errorf("embedgate_open_connections after Close = %v, want 0", got)
			}
		})
	}
}

// TestAcceptBackoffBounded: the backoff doubles up to 1 s, and Close ends
// it at once with the error fasthttp takes for a clean stop.
func TestAcceptBackoffBounded(t *testing.T) {
	t.Parallel()
	errs := make([]error, 12)
	for i := range errs {
		errs[i] = acceptErr(syscall.EMFILE)
	}
	l, logs, m := newTestLimitListener(t, newFakeListener(errs...), 4)
	done := make(chan error, 1)
	go func() {
		_, err := l.Accept()
		done <- err
	}()
	// 5+10+...+640 ms = 1275 ms for the first 8 errors; then 1 s each.
	time.Sleep(2500 * time.Millisecond)
	got := value(t, m.errors.WithLabelValues("api"))
	if got < 7 || got > 10 {
		t.Errorf("%v failed accepts in 2.5 s, want 8 to 10 with the backoff capped at 1 s", got)
	}
	start := time.Now()
	l.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close = %v, want net.ErrClosed", err)
		}
		if took := time.Since(start); took > 100*time.Millisecond {
			t.Errorf("Accept returned %v after Close, want at once", took)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Accept still waiting after Close")
	}
	if n := strings.Count(logs.String(), "accept failed"); n != 1 {
		t.Errorf("%d log lines of failed accepts, want 1:\n%s", n, logs)
	}
}

// TestAcceptAtCap: with max connections open, Accept waits until one
// closes, logs that once, and counts the wait; Close ends the wait.
func TestAcceptAtCap(t *testing.T) {
	t.Parallel()
	fake := newFakeListener()
	l, logs, m := newTestLimitListener(t, fake, 2)
	var open []net.Conn
	for range 2 {
		fake.conns <- pipeConn(t)
		c, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
	}
	fake.conns <- pipeConn(t)
	fake.conns <- pipeConn(t)
	accepted := make(chan net.Conn)
	go func() {
		for range 2 {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	select {
	case <-accepted:
		t.Fatal("a third connection was accepted with the cap of 2 open")
	case <-time.After(200 * time.Millisecond):
	}
	open[0].Close()
	var third net.Conn
	select {
	case third = <-accepted:
	case <-time.After(2 * time.Second):
		t.Fatal("no connection accepted after one of 2 closed")
	}
	select {
	case <-accepted:
		t.Fatal("a fourth connection was accepted with the cap of 2 open")
	case <-time.After(200 * time.Millisecond):
	}
	if n := strings.Count(logs.String(), "connection cap reached"); n != 1 {
		t.Errorf("%d log lines of the cap, want 1 for the episode:\n%s", n, logs)
	}
	if got := value(t, m.waits.WithLabelValues("api")); got != 2 {
		t.Errorf("embedgate_connection_cap_waits_total = %v, want 2", got)
	}
	if got := value(t, m.open.WithLabelValues("api")); got != 2 {
		t.Errorf("embedgate_open_connections = %v, want 2", got)
	}
	third.Close()
	open[1].Close()
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(2 * time.Second):
		t.Fatal("no fourth connection accepted after two closed")
	}
}

// TestAcceptAtCapClose: Close ends an Accept waiting for a slot.
func TestAcceptAtCapClose(t *testing.T) {
	t.Parallel()
	fake := newFakeListener()
	l, _, _ := newTestLimitListener(t, fake, 1)
	fake.conns <- pipeConn(t)
	if _, err := l.Accept(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := l.Accept()
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	l.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Accept still waiting for a slot after Close")
	}
}

// TestLimitConnCloseWrite: the connections keep TCP's half-close under
// the tracking listener, as served, which the lingering close after a 413
// needs.
func TestLimitConnCloseWrite(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l, _, _ := newTestLimitListener(t, ln, 1)
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c, err := newTrackingListener(l).Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatalf("CloseWrite: %v", err)
	}
	// Half-closed: the client reads EOF and can still write.
	_ = client.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := client.Read(make([]byte, 1)); n != 0 || err == nil || !strings.Contains(err.Error(), "EOF") {
		t.Errorf("client Read after CloseWrite = %d, %v, want EOF", n, err)
	}
	if _, err := client.Write([]byte("x")); err != nil {
		t.Errorf("client Write after the server's CloseWrite: %v", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 1 || err != nil {
		t.Errorf("server Read after CloseWrite = %d, %v, want the byte", n, err)
	}
}

func TestConnectionCap(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		want int
		soft uint64
		cap  int
	}{
		{10000, 0, 10000},       // unknown limit
		{10000, 1 << 20, 10000}, // systemd, docker
		{10000, 20000, 10000},
		{10000, 10256, 10000},
		{10000, 10255, 9999},
		{10000, 4096, 3840},
		{10000, 1024, 768},
		{10000, 512, 256},
		{10000, 256, 128},
		{10000, 1, 1},
		{64, 1024, 64},
	} {
		t.Run(fmt.Sprint(tt.want, "/", tt.soft), func(t *testing.T) {
			if got := connectionCap(tt.want, tt.soft); got != tt.cap {
				t.Errorf("connectionCap(%d, %d) = %d, want %d", tt.want, tt.soft, got, tt.cap)
			}
		})
	}
}

// TestNewConnGuard: the limit of open files is at its hard limit after
// the guard is made (Go's runtime raises it too), and a cap it cannot hold
// is lowered with a warning.
func TestNewConnGuard(t *testing.T) {
	logs := &testenv.LogBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	g, err := newConnGuard(1<<40, logger, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	soft, hard, _, err := raiseFileLimit()
	if err != nil {
		t.Skipf("no limit of open files here: %v", err)
	}
	if soft != hard {
		t.Errorf("soft limit %d, want the hard limit %d", soft, hard)
	}
	if want := connectionCap(1<<40, soft); g.maxConns != want {
		t.Errorf("cap = %d, want %d", g.maxConns, want)
	}
	for _, w := range []string{"limit of open files", "--max-connections lowered", "lowered_to=" + fmt.Sprint(g.maxConns)} {
		if !strings.Contains(logs.String(), w) {
			t.Errorf("log lacks %q:\n%s", w, logs)
		}
	}
}
