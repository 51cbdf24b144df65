package dnstest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// resolver asks s only, as Go's own resolver would a name server.
func resolver(s *Server) *net.Resolver {
	var d net.Dialer
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, s.Addr())
	}}
}

func lookup(t *testing.T, r *net.Resolver, name string) ([]string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ips, err := r.LookupHost(ctx, name)
	slices.Sort(ips)
	return ips, err
}

func wantHosts(t *testing.T, r *net.Resolver, name string, want ...string) {
	t.Helper()
	got, err := lookup(t, r, name)
	if err != nil {
		t.Fatalf("LookupHost(%q): %v", name, err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("LookupHost(%q) = %v, want %v", name, got, want)
	}
}

func wantNotFound(t *testing.T, r *net.Resolver, name string) {
	t.Helper()
	got, err := lookup(t, r, name)
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) || !dnsErr.IsNotFound {
		t.Fatalf("LookupHost(%q) = %v, %v; want a not-found error", name, got, err)
	}
}

func TestLookupFollowsSet(t *testing.T) {
	s := Start(t)
	r := resolver(s)
	wantNotFound(t, r, "triton.test")

	s.Set("triton.test", "127.0.0.2", "127.0.0.1")
	wantHosts(t, r, "triton.test", "127.0.0.1", "127.0.0.2")
	wantHosts(t, r, "TRITON.test.", "127.0.0.1", "127.0.0.2")

	s.Set("Triton.Test.", "127.0.0.1", "127.0.0.2", "127.0.0.3")
	wantHosts(t, r, "triton.test", "127.0.0.1", "127.0.0.2", "127.0.0.3")

	s.Set("triton.test", "127.0.0.3")
	wantHosts(t, r, "triton.test", "127.0.0.3")

	s.Set("v6.test", "::1", "127.0.0.9")
	wantHosts(t, r, "v6.test", "127.0.0.9", "::1")

	wantNotFound(t, r, "other.test")
	s.Set("triton.test")
	wantNotFound(t, r, "triton.test")

	// A lookup asks A and AAAA, each at least once.
	if n := s.Queries("triton.test."); n < 2*6 {
		t.Errorf("Queries(triton.test.) = %d after 6 lookups, want at least 12", n)
	}
	if n := s.Queries("never.test"); n != 0 {
		t.Errorf("Queries(never.test) = %d, want 0", n)
	}
}

func TestConcurrentLookups(t *testing.T) {
	s := Start(t)
	s.Set("triton.test", "127.0.0.1", "127.0.0.2")
	r := resolver(s)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 32 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ips, err := r.LookupHost(ctx, "triton.test")
			if err == nil && len(ips) != 2 {
				err = fmt.Errorf("got %v, want two addresses", ips)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// Garbage, a response and an unsupported opcode get no answer or an error
// code, and the server goes on answering.
func TestBadQueries(t *testing.T) {
	s := Start(t)
	s.Set("triton.test", "127.0.0.1")
	c, err := net.Dial("udp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	exchange := func(q []byte) (dnsmessage.Header, bool) {
		t.Helper()
		if _, err := c.Write(q); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		buf := make([]byte, 512)
		n, err := c.Read(buf)
		if err != nil {
			return dnsmessage.Header{}, false
		}
		var p dnsmessage.Parser
		h, err := p.Start(buf[:n])
		if err != nil {
			t.Fatalf("unparsable answer: %v", err)
		}
		return h, true
	}
	if _, answered := exchange([]byte{1, 2, 3}); answered {
		t.Error("a 3-byte datagram was answered")
	}
	pack := func(m dnsmessage.Message) []byte {
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if _, answered := exchange(pack(dnsmessage.Message{Header: dnsmessage.Header{ID: 7, Response: true}})); answered {
		t.Error("a response was answered")
	}
	if h, answered := exchange(pack(dnsmessage.Message{Header: dnsmessage.Header{ID: 8}})); !answered || h.RCode != dnsmessage.RCodeFormatError || h.ID != 8 {
		t.Errorf("a query without a question: %+v answered=%v, want FORMERR with ID 8", h, answered)
	}
	q := dnsmessage.Question{Name: dnsmessage.MustNewName("triton.test."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}
	if h, answered := exchange(pack(dnsmessage.Message{Header: dnsmessage.Header{ID: 9, OpCode: 2}, Questions: []dnsmessage.Question{q}})); !answered || h.RCode != dnsmessage.RCodeNotImplemented {
		t.Errorf("a STATUS query: %+v answered=%v, want NOTIMP", h, answered)
	}
	q.Type = dnsmessage.TypeMX
	if h, answered := exchange(pack(dnsmessage.Message{Header: dnsmessage.Header{ID: 10}, Questions: []dnsmessage.Question{q}})); !answered || h.RCode != dnsmessage.RCodeSuccess {
		t.Errorf("an MX query of a known name: %+v answered=%v, want NOERROR", h, answered)
	}
	wantHosts(t, resolver(s), "triton.test", "127.0.0.1")
}
