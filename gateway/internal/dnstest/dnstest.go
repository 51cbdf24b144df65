// Package dnstest runs a tiny authoritative DNS server on a loopback UDP
// port for tests: the addresses a name resolves to are whatever the test
// last Set, so a test can add or remove a replica from a DNS answer the way
// a Kubernetes headless Service does when pods come and go. It answers A
// and AAAA queries from the names Set (TTL 0, so that nothing caches them),
// NOERROR with no answers for a known name's other types, and NXDOMAIN for
// every other name, so that a resolver trying search-domain variants first
// moves on. It serves UDP only: its answers are small and never truncated,
// so resolvers have no reason to retry over TCP. It imports only the
// standard library and golang.org/x/net/dns/dnsmessage.
package dnstest

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// Server is one running DNS server. Its methods are safe for concurrent
// use.
type Server struct {
	t    testing.TB
	conn net.PacketConn
	done chan struct{} // closed when the serve loop has returned

	mu      sync.Mutex
	addrs   map[string][]netip.Addr // by canonical name (lower case, trailing dot)
	queries map[string]int          // questions received, by canonical name
}

// Start runs a server on a free UDP port of 127.0.0.1 until the test ends.
// It knows no name until Set.
func Start(t testing.TB) *Server {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("dnstest: listen: %v", err)
	}
	s := &Server{t: t, conn: conn, done: make(chan struct{}),
		addrs: map[string][]netip.Addr{}, queries: map[string]int{}}
	go s.serve()
	t.Cleanup(func() {
		conn.Close()
		<-s.done
	})
	return s
}

// Addr is the server's host:port, for a resolver's Dial or a dns://
// authority.
func (s *Server) Addr() string { return s.conn.LocalAddr().String() }

// Set replaces the addresses name resolves to: IPv4 ones are its A
// records, IPv6 ones its AAAA records. With no ips the name is unknown
// again (NXDOMAIN). name is case-insensitive, with or without the trailing
// dot. An ip that does not parse fails the test (Fatalf: call Set from the
// test's goroutine).
func (s *Server) Set(name string, ips ...string) {
	s.t.Helper()
	parsed := make([]netip.Addr, 0, len(ips))
	for _, ip := range ips {
		a, err := netip.ParseAddr(ip)
		if err != nil {
			s.t.Fatalf("dnstest: Set(%q): %v", name, err)
		}
		parsed = append(parsed, a.Unmap())
	}
	key := canonical(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(parsed) == 0 {
		delete(s.addrs, key)
		return
	}
	s.addrs[key] = parsed
}

// Queries is how many questions about name (any type) the server has
// received: a resolver asks A and AAAA for each lookup.
func (s *Server) Queries(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries[canonical(name)]
}

func canonical(name string) string {
	return strings.ToLower(strings.TrimSuffix(name, ".")) + "."
}

// serve answers each datagram in turn until the connection is closed.
// One at a time is enough: an answer takes microseconds, and concurrent
// queries wait in the socket's buffer rather than in goroutines without
// bound.
func (s *Server) serve() {
	defer close(s.done)
	buf := make([]byte, 65535)
	for {
		n, from, err := s.conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // a transient read error (e.g. ICMP): keep serving
		}
		if resp, ok := s.answer(buf[:n]); ok {
			_, _ = s.conn.WriteTo(resp, from) // a lost answer is a resolver's retry
		}
	}
}

// answer builds the response to one query; ok is false for a datagram too
// broken to answer (no header), which is dropped.
func (s *Server) answer(query []byte) (resp []byte, ok bool) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil || h.Response {
		return nil, false
	}
	m := dnsmessage.Message{Header: dnsmessage.Header{ID: h.ID, Response: true, OpCode: h.OpCode,
		Authoritative: true, RecursionDesired: h.RecursionDesired, RecursionAvailable: true}}
	q, err := p.Question()
	if err != nil || h.OpCode != 0 {
		m.RCode = dnsmessage.RCodeFormatError
		if h.OpCode != 0 {
			m.RCode = dnsmessage.RCodeNotImplemented
		}
		b, err := m.Pack()
		return b, err == nil
	}
	m.Questions = []dnsmessage.Question{q}
	m.Answers, m.RCode = s.records(q)
	b, err := m.Pack()
	return b, err == nil
}

// records are the answers to q and the response code.
func (s *Server) records(q dnsmessage.Question) ([]dnsmessage.Resource, dnsmessage.RCode) {
	key := canonical(q.Name.String())
	s.mu.Lock()
	s.queries[key]++
	addrs, known := s.addrs[key]
	s.mu.Unlock()
	if !known {
		return nil, dnsmessage.RCodeNameError
	}
	var out []dnsmessage.Resource
	for _, a := range addrs {
		hdr := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 0}
		switch {
		case q.Type == dnsmessage.TypeA && a.Is4():
			hdr.Type = dnsmessage.TypeA
			out = append(out, dnsmessage.Resource{Header: hdr, Body: &dnsmessage.AResource{A: a.As4()}})
		case q.Type == dnsmessage.TypeAAAA && a.Is6():
			hdr.Type = dnsmessage.TypeAAAA
			out = append(out, dnsmessage.Resource{Header: hdr, Body: &dnsmessage.AAAAResource{AAAA: a.As16()}})
		}
	}
	return out, dnsmessage.RCodeSuccess
}
