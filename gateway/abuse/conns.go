package abuse

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// slow is one D3 connection: what it sends before falling silent.
type slow struct {
	name string
	// start sends what the connection sends; the wait for the gateway to
	// close it starts when it returns.
	start func(c *conn, p *probe) error
}

func slowConns() []slow {
	return []slow{
		{"partial headers", func(c *conn, p *probe) error {
			_, err := io.WriteString(c, "GET /health HTTP/1.1\r\nHost: "+p.base.Host+"\r\nX-Slow: ")
			return err
		}},
		{"never send", func(*conn, *probe) error { return nil }},
		{"idle keep-alive", func(c *conn, p *probe) error {
			if _, err := io.WriteString(c, "GET /health HTTP/1.1\r\nHost: "+p.base.Host+"\r\n\r\n"); err != nil {
				return err
			}
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				return fmt.Errorf("reading /health: %w", err)
			}
			_, err = readReply(resp)
			return err
		}},
		{"short body", func(c *conn, p *probe) error {
			_, err := io.WriteString(c, "POST /embed HTTP/1.1\r\nHost: "+p.base.Host+"\r\n"+p.authHeader()+
				"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"inputs\":")
			return err
		}},
	}
}

// slowlorisRow (D3): connections that send partial headers, nothing, a
// request then nothing, or part of a body; and one that never reads its
// answers. The gateway must close each within its own timeouts; the row
// fails a connection still open after SlowBound. They run side by side.
func slowlorisRow(ctx context.Context, p *probe) (string, error) {
	cases := slowConns()
	took := make([]time.Duration, len(cases)+1)
	errs := make([]error, len(cases)+1)
	var wg sync.WaitGroup
	for i, sc := range cases {
		wg.Go(func() { took[i], errs[i] = p.heldOpen(ctx, sc) })
	}
	wg.Go(func() { took[len(cases)], errs[len(cases)] = p.neverRead(ctx) })
	wg.Wait()
	var saw, failed []string
	for i, name := range append(names(cases), "never read") {
		if errs[i] != nil {
			failed = append(failed, name+": "+errs[i].Error())
			continue
		}
		saw = append(saw, fmt.Sprintf("%s closed after %s", name, took[i].Round(10*time.Millisecond)))
	}
	if len(failed) > 0 {
		return "", errors.New(strings.Join(append(failed, saw...), "; "))
	}
	return strings.Join(saw, ", "), nil
}

func names(cases []slow) []string {
	s := make([]string, len(cases))
	for i, c := range cases {
		s[i] = c.name
	}
	return s
}

// heldOpen opens sc's connection and waits, reading and discarding, for
// the gateway to close it: took is the silence it took.
func (p *probe) heldOpen(ctx context.Context, sc slow) (took time.Duration, err error) {
	c, err := p.dialer.dial(ctx, p.addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if err := sc.start(c, p); err != nil {
		return 0, err
	}
	start := time.Now()
	_ = c.SetReadDeadline(deadlineOf(ctx, p.opts.SlowBound))
	_, err = io.Copy(io.Discard, c) // nil at EOF; a reset is a close too
	took = time.Since(start)
	if timedOut(err) {
		return took, fmt.Errorf("still open after %s", took.Round(time.Second))
	}
	return took, nil
}

// neverRead pipelines requests on a connection with a small receive
// buffer and never reads: the gateway's writes block once the buffers
// between are full, and it must give up (a write timeout) and close.
// The close shows as a write error here: the gateway resets a connection
// it closes with requests unread.
func (p *probe) neverRead(ctx context.Context) (time.Duration, error) {
	c, err := p.dialer.dialSmallWindow(ctx, p.addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	// /metrics answers tens of KB to a few bytes. Where it is elsewhere,
	// /tokenize of an input past most models' max input length: tens of
	// KB to 4 KB, so that a few hundred requests (and log lines) fill the
	// buffers, not thousands.
	req := "GET /metrics HTTP/1.1\r\nHost: " + p.base.Host + "\r\n\r\n"
	if p.opts.MetricsPort != 0 {
		body := `{"inputs":"` + text(4<<10) + `"}`
		req = "POST /tokenize HTTP/1.1\r\nHost: " + p.base.Host + "\r\n" + p.authHeader() +
			"Content-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	}
	chunk := strings.Repeat(req, 4)
	start, bound := time.Now(), deadlineOf(ctx, p.opts.SlowBound)
	var stalled time.Time // when our writes stopped going through
	for time.Now().Before(bound) {
		_ = c.SetWriteDeadline(time.Now().Add(250 * time.Millisecond))
		_, err := io.WriteString(c, chunk)
		switch {
		case err == nil:
			stalled = time.Time{}
		case timedOut(err):
			if stalled.IsZero() {
				stalled = time.Now()
			}
		default:
			if stalled.IsZero() {
				stalled = start
			}
			return time.Since(stalled), nil
		}
	}
	return time.Since(start), fmt.Errorf("still open after %s without a read", time.Since(start).Round(time.Second))
}

// idleConnsRow (D4): IdleConns connections that send nothing, held open
// while /health is asked on a new connection; the gateway must answer it
// then, and after they are closed, and keep running.
func idleConnsRow(ctx context.Context, p *probe) (string, error) {
	n := min(p.opts.IdleConns, p.opts.MaxConns-8)
	if n <= 0 {
		return "", skip("--max-conns %d leaves no room for idle connections", p.opts.MaxConns)
	}
	p.transport.CloseIdleConnections() // their slots are D4's now
	conns, refused := p.openIdle(ctx, n)
	if p.watch != nil {
		_, _ = p.watch.sample() // the peak of file descriptors is now
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	during, err := p.healthOnNewConn(ctx)
	if err != nil {
		return "", fmt.Errorf("%d idle connections open (%d not opened): /health: %w", len(conns), refused, err)
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	after, err := p.healthOnNewConn(ctx)
	if err != nil {
		return "", fmt.Errorf("after closing %d idle connections: /health: %w", n-refused, err)
	}
	return fmt.Sprintf("%d idle connections (%d not opened): /health 200 in %s while open, %s after",
		n-refused, refused, during.Round(time.Millisecond), after.Round(time.Millisecond)), nil
}

// openIdle opens n connections, 64 at a time, each given 3 s; those the
// gateway's backlog refused are counted, not an error.
func (p *probe) openIdle(ctx context.Context, n int) (conns []*conn, refused int) {
	var mu sync.Mutex
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			c, err := p.dialer.dial(dctx, p.addr)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				refused++
				return
			}
			conns = append(conns, c)
		})
	}
	wg.Wait()
	return conns, refused
}

// healthOnNewConn asks /health on a connection of its own until it gets
// a 200 or ctx ends, and returns how long that took. A gateway at its
// connection cap may delay the connection (it waits in the listen
// backlog, so it is given until ctx's deadline: a new one would queue
// behind every other) or refuse it (then it is tried again).
func (p *probe) healthOnNewConn(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	raw := []byte("GET /health HTTP/1.1\r\nHost: " + p.base.Host + "\r\nConnection: close\r\n\r\n")
	var last error
	for ctx.Err() == nil {
		r, err := p.exchangeWithin(ctx, raw, time.Minute)
		if err == nil && r.status == http.StatusOK {
			return time.Since(start), nil
		}
		if err == nil {
			err = fmt.Errorf("%d: %s", r.status, clip(r.body))
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return time.Since(start), fmt.Errorf("no 200 in %s: %w", time.Since(start).Round(time.Millisecond), last)
}

// resetRow: a client that resets its connection mid-body is a client
// abort, counted as 499 on /metrics, not a 500; and the gateway keeps
// answering.
func resetRow(ctx context.Context, p *probe) (string, error) {
	before, metricsErr := p.count499(ctx)
	c, err := p.dialer.dial(ctx, p.addr)
	if err != nil {
		return "", err
	}
	_, err = io.WriteString(c, "POST /embed HTTP/1.1\r\nHost: "+p.base.Host+"\r\n"+p.authHeader()+
		"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"inputs\":\"")
	if err != nil {
		c.Close()
		return "", err
	}
	time.Sleep(100 * time.Millisecond) // the gateway is reading the body
	_ = c.SetLinger(0)
	c.Close() // RST
	if _, err := p.healthOnNewConn(ctx); err != nil {
		return "", fmt.Errorf("after the reset: /health: %w", err)
	}
	if metricsErr != nil {
		return "gateway still answers; 499 not checked: " + metricsErr.Error(), nil
	}
	for wait := time.Now().Add(5 * time.Second); ; {
		after, err := p.count499(ctx)
		if err != nil {
			return "", fmt.Errorf("/metrics after the reset: %w", err)
		}
		if after > before {
			return fmt.Sprintf("reset counted: 499s %g → %g on /metrics; gateway still answers", before, after), nil
		}
		if time.Now().After(wait) || ctx.Err() != nil {
			return "", fmt.Errorf("/metrics shows no new 499 5 s after a client reset (still %g)", after)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
