package triton

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
)

// Target is where one model's Triton replicas are: a fixed list of
// addresses, or a DNS name whose address records are the replicas (a
// Kubernetes headless Service), resolved again and again so that new pods
// get traffic. gRPC's own DNS resolver would not do: it resolves again
// only after a connection breaks, at most every 30 s.
type Target struct {
	Addrs     []string // the fixed list, host:port each; nil for a DNS name
	Host      string   // the DNS name; "" for a fixed list
	Port      string   // the port of every replica of a DNS name
	DNSServer string   // host:port of the DNS server to ask; "" = the system's
}

// ParseTarget reads a Triton address as --triton-url takes it:
//
//	host:port                  one replica
//	a:8001,b:8001              a fixed list of replicas
//	dns:///name:8001           every address name resolves to, at port 8001
//	dns://10.0.0.10:53/name:8001   the same, asking that DNS server
//
// The dns: form is gRPC's naming syntax. A "grpc://" prefix on an address
// is allowed. An empty address, a repeated one, or an address or DNS name
// without a port is an error.
func ParseTarget(s string) (Target, error) {
	s = strings.TrimSpace(s)
	if rest, ok := strings.CutPrefix(s, "dns:"); ok {
		return parseDNSTarget(s, rest)
	}
	parts := strings.Split(s, ",")
	seen := make(map[string]bool, len(parts))
	for i, p := range parts {
		p = strings.TrimPrefix(strings.TrimSpace(p), "grpc://")
		if p == "" {
			return Target{}, fmt.Errorf("triton: address list %q has an empty address at position %d", s, i+1)
		}
		if host, port, err := net.SplitHostPort(p); err != nil || host == "" || port == "" {
			// gRPC would dial port 443; Triton's gRPC port is 8001.
			return Target{}, fmt.Errorf("triton: address %q is not host:port (Triton's gRPC port is 8001, e.g. triton:8001)", p)
		}
		if seen[p] {
			return Target{}, fmt.Errorf("triton: address list %q names %s twice", s, p)
		}
		seen[p] = true
		parts[i] = p
	}
	return Target{Addrs: parts}, nil
}

func parseDNSTarget(s, rest string) (Target, error) {
	var t Target
	if authority, name, ok := strings.Cut(strings.TrimPrefix(rest, "//"), "/"); ok && strings.HasPrefix(rest, "//") {
		t.DNSServer, rest = authority, name
		if t.DNSServer != "" {
			if _, _, err := net.SplitHostPort(t.DNSServer); err != nil {
				// An IPv6 server comes bracketed, as in a URL: [fd00::a].
				host := strings.TrimSuffix(strings.TrimPrefix(t.DNSServer, "["), "]")
				t.DNSServer = net.JoinHostPort(host, "53")
			}
		}
	} else if strings.HasPrefix(rest, "//") {
		return Target{}, fmt.Errorf("triton: %q: want dns:///name:port or dns://dns-server/name:port", s)
	}
	host, port, err := net.SplitHostPort(rest)
	if err != nil || host == "" || port == "" {
		return Target{}, fmt.Errorf("triton: %q: want dns:///name:port, the name and port of Triton's gRPC endpoint (e.g. dns:///triton-headless:8001)", s)
	}
	t.Host, t.Port = host, port
	return t, nil
}

// Dynamic says whether t is a DNS name, whose replicas change.
func (t Target) Dynamic() bool { return t.Host != "" }

// String is t as ParseTarget reads it.
func (t Target) String() string {
	if !t.Dynamic() {
		return strings.Join(t.Addrs, ",")
	}
	return "dns://" + t.DNSServer + "/" + net.JoinHostPort(t.Host, t.Port)
}

// Resolve lists t's replicas now, sorted: the fixed list, or an address
// for each of the name's address records (at least one, or an error).
func (t Target) Resolve(ctx context.Context) ([]string, error) {
	if !t.Dynamic() {
		return slices.Clone(t.Addrs), nil
	}
	r := net.DefaultResolver
	if t.DNSServer != "" {
		var d net.Dialer
		r = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, t.DNSServer)
		}}
	}
	ips, err := r.LookupHost(ctx, t.Host)
	if err != nil {
		return nil, fmt.Errorf("triton: resolve %s: %w", t, err)
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("triton: %s resolves to no address", t)
	}
	addrs := make([]string, 0, len(ips))
	for _, ip := range ips {
		addrs = append(addrs, net.JoinHostPort(ip, t.Port))
	}
	slices.Sort(addrs)
	return slices.Compact(addrs), nil
}

// ResolveURL lists the replicas of a Triton address as --triton-url takes
// it (ParseTarget), now (Resolve): for what asks one replica, such as
// discovery and tuning.
func ResolveURL(ctx context.Context, url string) ([]string, error) {
	t, err := ParseTarget(url)
	if err != nil {
		return nil, err
	}
	return t.Resolve(ctx)
}
