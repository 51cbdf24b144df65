package main

import (
	"net"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
)

// trackingListener remembers the connections it accepted so that shutdown
// can close them once no request is in flight. fasthttp's graceful shutdown
// closes idle keep-alive connections but waits for a connection that was
// opened and never sent a request (HTTP clients and load balancers open
// spare ones) until the grace period runs out.
type trackingListener struct {
	net.Listener
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func newTrackingListener(ln net.Listener) *trackingListener {
	return &trackingListener{Listener: ln, conns: make(map[net.Conn]struct{})}
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, l: l}
	l.mu.Lock()
	l.conns[tc] = struct{}{}
	l.mu.Unlock()
	return tc, nil
}

// CloseConns closes every connection still open. Call it only when no
// request is in flight: a connection is then idle or unused.
func (l *trackingListener) CloseConns() {
	l.mu.Lock()
	conns := make([]net.Conn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

type trackedConn struct {
	net.Conn
	l    *trackingListener
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// CloseWrite half-closes the connection, for the server's lingering close.
func (c *trackedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// shutdown stops app once no request is in flight: fasthttp closes the
// listener and idle connections, and the connections it would wait for
// (opened, never used) are closed here until it returns.
func shutdown(app *fiber.App, ln *trackingListener, timeout time.Duration) error {
	// When the stop comes before app.Listener(ln) has begun to serve,
	// fasthttp has no listener to close; closing ln here makes the Accept
	// that serving begins with fail, so Listener returns all the same.
	defer ln.Close()
	done := make(chan error, 1)
	go func() { done <- app.ShutdownWithTimeout(timeout) }()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-tick.C:
			ln.CloseConns()
		}
	}
}
