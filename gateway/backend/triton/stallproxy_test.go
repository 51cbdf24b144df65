//go:build cgo

package triton_test

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
)

// stallProxy forwards TCP to a stand-in until Stall, after which it holds
// every byte in both directions while keeping the connections open: a
// Triton that is stuck (a paused pod, a partitioned node) rather than
// down, whose calls neither fail nor answer.
type stallProxy struct {
	lis    net.Listener
	target string

	mu      sync.Mutex
	stalled chan struct{} // closed when the stall ends; nil while forwarding
	conns   []net.Conn
	closed  bool
	wg      sync.WaitGroup
}

// startStallProxy listens on addr and forwards to target until the test
// ends.
func startStallProxy(t *testing.T, addr, target string) *stallProxy {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("proxy listen: %v", err)
	}
	p := &stallProxy{lis: lis, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *stallProxy) Addr() string { return p.lis.Addr().String() }

// Stall holds every byte from now on.
func (p *stallProxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stalled == nil {
		p.stalled = make(chan struct{})
	}
}

func (p *stallProxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.lis.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			in.Close()
			out.Close()
			return
		}
		p.conns = append(p.conns, in, out)
		p.wg.Add(2)
		p.mu.Unlock()
		go p.pipe(out, in)
		go p.pipe(in, out)
	}
}

// pipe copies src to dst, each chunk once the proxy does not stall.
func (p *stallProxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			stalled := p.stalled
			p.mu.Unlock()
			if stalled != nil {
				<-stalled // until close
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				src.Close()
			}
			return
		}
	}
}

// close ends the stall and every connection, and waits for the copies.
func (p *stallProxy) close() {
	p.lis.Close()
	p.mu.Lock()
	p.closed = true
	if p.stalled == nil {
		p.stalled = make(chan struct{})
	}
	close(p.stalled)
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
