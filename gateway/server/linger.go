package server

import (
	"io"
	"net"
	"sync/atomic"
	"time"
)

// Lingering close, as nginx does it: a connection answered before its
// body was read (a 413, or a 400 about its framing) keeps reading and
// discarding what the client still sends, for a bounded time and number
// of bytes, before it closes. Closing with unread bytes in the kernel's
// buffer makes TCP send a reset, and a client that writes its whole body
// before reading (Python's httpx, which the OpenAI SDK uses; requests;
// http.client) then sees "connection reset by peer" instead of the JSON
// 413: 2 of 3 tries failed so before this.
const (
	lingerTime  = 2 * time.Second
	lingerBytes = 64 << 20
)

// lingerListener hands out connections that can linger on close.
type lingerListener struct{ net.Listener }

func (l lingerListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &lingerConn{Conn: c}, nil
}

// lingerConn lingers on Close once asked to.
type lingerConn struct {
	net.Conn
	linger atomic.Bool
}

// lingerOnClose makes the next Close linger.
func (c *lingerConn) lingerOnClose() { c.linger.Store(true) }

// Close closes at once, or, when asked to linger, sends FIN (the response
// is already written) and drains what the client still sends in the
// background: the server's worker goes back to its pool at once.
func (c *lingerConn) Close() error {
	if !c.linger.Load() {
		return c.Conn.Close()
	}
	cw, ok := c.Conn.(interface{ CloseWrite() error })
	if !ok {
		return c.Conn.Close()
	}
	if err := cw.CloseWrite(); err != nil {
		return c.Conn.Close()
	}
	go func() {
		_ = c.Conn.SetReadDeadline(time.Now().Add(lingerTime))
		_, _ = io.CopyN(io.Discard, c.Conn, lingerBytes)
		_ = c.Conn.Close()
	}()
	return nil
}

// markLinger asks conn, when it is one of ours, to linger on close.
func markLinger(conn net.Conn) {
	if lc, ok := conn.(*lingerConn); ok {
		lc.lingerOnClose()
	}
}
