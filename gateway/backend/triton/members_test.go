//go:build cgo

package triton_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/embedgate/embedgate/gateway/backend/triton"
	"github.com/embedgate/embedgate/gateway/backend/triton/tritontest"
	"github.com/embedgate/embedgate/gateway/internal/dnstest"
	"github.com/embedgate/embedgate/gateway/testmodel"
)

// A replica down at start does not hold the model back: the others serve,
// and it joins once it is up.
func TestReplicasDownAtStart(t *testing.T) {
	model := openONNX(t)
	a, b := tritontest.Start(t, model), tritontest.Start(t, model)
	b.Stop()
	r := openReplicas(t, 2*time.Second, a, b)
	if members, _ := r.Addrs(); !slices.Equal(members, []string{a.Addr()}) {
		t.Fatalf("members with b down at start: %v, want only a", members)
	}
	embedOK(t, r, batch(3))
	if err := b.Restart(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b to join", func() bool { members, _ := r.Addrs(); return len(members) == 2 })
	n := b.InferCount()
	for range 4 {
		embedOK(t, r, batch(3))
	}
	if b.InferCount() == n {
		t.Errorf("b joined but got none of 4 batches")
	}
}

// With no replica up, the model does not open, and the error names why.
func TestReplicasNoneAtStart(t *testing.T) {
	model := openONNX(t)
	a := tritontest.Start(t, model)
	a.Stop()
	_, err := triton.OpenReplicas(context.Background(), triton.ReplicaOptions{
		Target: triton.Target{Addrs: []string{a.Addr()}}, Model: a.Name(), Logger: testLogger(t),
		Open: func(ctx context.Context, addr string) (*triton.Backend, func(), error) {
			b, err := triton.Open(ctx, triton.Options{URL: addr, Model: a.Name(), ReadyTimeout: 500 * time.Millisecond})
			return b, nil, err
		},
	})
	if err == nil || !strings.Contains(err.Error(), "no replica of "+a.Name()+" opened") {
		t.Fatalf("OpenReplicas with its one replica down: %v, want the no-replica error", err)
	}
}

// The per-replica series count each replica's batches and tokens, show an
// ejection, and the capacity follows the replicas in the rotation.
func TestReplicasMetrics(t *testing.T) {
	model := openONNX(t)
	a, b := tritontest.Start(t, model), tritontest.Start(t, model)
	r := openReplicas(t, 2*time.Second, a, b)
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(r); err != nil {
		t.Fatal(err)
	}
	if got := r.MaxInflight(); got != 8 {
		t.Errorf("MaxInflight with 2 replicas: %d, want 2 × 4", got)
	}
	for range 6 {
		embedOK(t, r, batch(3, 2)) // 2 rows × 3 = 6 padded tokens
	}
	for _, srv := range []*tritontest.Server{a, b} {
		if got := replicaValue(t, reg, "embedgate_triton_replica_batches_total", srv.Addr()); got != 3 {
			t.Errorf("batches of %s: %v, want 3", srv.Addr(), got)
		}
		if got := replicaValue(t, reg, "embedgate_triton_replica_tokens_total", srv.Addr()); got != 18 {
			t.Errorf("tokens of %s: %v, want 3 × 6", srv.Addr(), got)
		}
	}
	b.Stop()
	waitFor(t, "b ejected", func() bool {
		_, err := r.Embed(context.Background(), batch(2))
		return err == nil && slices.Equal(r.Ejected(), []string{b.Addr()})
	})
	if got := replicaValue(t, reg, "embedgate_triton_replica_ejected", b.Addr()); got != 1 {
		t.Errorf("ejected gauge of b: %v, want 1", got)
	}
	if got := replicaValue(t, reg, "embedgate_triton_replica_errors_total", b.Addr()); got < 1 {
		t.Errorf("errors of b: %v, want at least 1", got)
	}
	if got := r.MaxInflight(); got != 4 {
		t.Errorf("MaxInflight with b ejected: %d, want 4", got)
	}
}

// replicaValue is the value of name's series for replica addr.
func replicaValue(t *testing.T, reg *prometheus.Registry, name, addr string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "replica" && l.GetValue() == addr {
					return m.GetCounter().GetValue() + m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s series for replica %s", name, addr)
	return 0
}

// dnsReplicas starts a stand-in on each of 127.0.0.1, .2 and .3 at one
// port, and a DNS server that knows none of them yet.
func dnsReplicas(t *testing.T) (srvs []*tritontest.Server, dns *dnstest.Server, port string) {
	t.Helper()
	model := openONNX(t)
	first := tritontest.StartOn(t, "127.0.0.1:0", model)
	_, port, _ = net.SplitHostPort(first.Addr())
	srvs = []*tritontest.Server{first,
		tritontest.StartOn(t, "127.0.0.2:"+port, model),
		tritontest.StartOn(t, "127.0.0.3:"+port, model)}
	return srvs, dnstest.Start(t), port
}

// The replicas of a DNS name follow its answer: an address added gets
// traffic within the resolve interval, one removed leaves once its
// batches are done.
func TestReplicasDNS(t *testing.T) {
	srvs, dns, port := dnsReplicas(t)
	a, b, c := srvs[0], srvs[1], srvs[2]
	dns.Set("triton.test", "127.0.0.1", "127.0.0.2")
	r := openTarget(t, triton.Target{Host: "triton.test", Port: port, DNSServer: dns.Addr()}, a.Name(), 2*time.Second, 100*time.Millisecond)
	if members, _ := r.Addrs(); !slices.Equal(members, []string{a.Addr(), b.Addr()}) && !slices.Equal(members, []string{b.Addr(), a.Addr()}) {
		t.Fatalf("members: %v, want a and b, the DNS answer", members)
	}
	dns.Set("triton.test", "127.0.0.1", "127.0.0.2", "127.0.0.3")
	waitFor(t, "c to join", func() bool { members, _ := r.Addrs(); return len(members) == 3 })
	for range 6 {
		embedOK(t, r, batch(3))
	}
	if c.InferCount() == 0 {
		t.Errorf("c joined but got none of 6 batches")
	}
	dns.Set("triton.test", "127.0.0.2", "127.0.0.3")
	waitFor(t, "a to leave", func() bool { members, _ := r.Addrs(); return !slices.Contains(members, a.Addr()) })
	n := a.InferCount()
	for range 6 {
		embedOK(t, r, batch(3))
	}
	if a.InferCount() != n {
		t.Errorf("a left the answer but got %d more batches", a.InferCount()-n)
	}
	// A failed resolution keeps the replicas: a DNS outage must not take
	// the model down.
	dns.Set("triton.test")
	queries := dns.Queries("triton.test")
	waitFor(t, "a resolution that fails", func() bool { return dns.Queries("triton.test") > queries+2 })
	embedOK(t, r, batch(3))
	if members, _ := r.Addrs(); len(members) != 2 {
		t.Errorf("members after NXDOMAIN: %v, want b and c kept", members)
	}
}

// An ejected replica has the name resolved at once, without waiting for
// the interval: a pod that failed has often been replaced.
func TestReplicasDNSOnFailure(t *testing.T) {
	srvs, dns, port := dnsReplicas(t)
	a, b, c := srvs[0], srvs[1], srvs[2]
	dns.Set("triton.test", "127.0.0.1", "127.0.0.2")
	r := openTarget(t, triton.Target{Host: "triton.test", Port: port, DNSServer: dns.Addr()}, a.Name(), 2*time.Second, time.Hour)
	dns.Set("triton.test", "127.0.0.2", "127.0.0.3") // a replaced by c
	a.Stop()
	waitFor(t, "c to replace a", func() bool {
		if _, err := r.Embed(context.Background(), batch(3)); err != nil {
			t.Fatalf("a batch failed while a was replaced: %v", err)
		}
		members, _ := r.Addrs()
		return len(members) == 2 && slices.Contains(members, c.Addr()) && slices.Contains(members, b.Addr())
	})
}

// An address that leaves the answer and comes back while its old replica
// still has a batch in flight is a new member; the old one, closed once
// its batch is done, must not take the new member's series with it.
func TestReplicasRejoinKeepsSeries(t *testing.T) {
	srvs, dns, port := dnsReplicas(t)
	a, b := srvs[0], srvs[1]
	dns.Set("triton.test", "127.0.0.1")
	r := openTarget(t, triton.Target{Host: "triton.test", Port: port, DNSServer: dns.Addr()}, a.Name(), time.Minute, 50*time.Millisecond)
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(r); err != nil {
		t.Fatal(err)
	}
	a.SetDelay(time.Minute) // held until cancelled
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	held := make(chan error, 1)
	go func() {
		_, err := r.Embed(ctx, batch(3))
		held <- err
	}()
	waitFor(t, "the held batch to reach a", func() bool { return a.InferCount() == 1 })
	dns.Set("triton.test", "127.0.0.2")
	waitFor(t, "a to leave for b", func() bool { members, _ := r.Addrs(); return slices.Equal(members, []string{b.Addr()}) })
	dns.Set("triton.test", "127.0.0.1", "127.0.0.2")
	waitFor(t, "a to come back", func() bool { members, _ := r.Addrs(); return len(members) == 2 })
	cancel()
	if err := <-held; err == nil {
		t.Fatal("the cancelled batch succeeded")
	}
	a.SetDelay(0)
	for _, name := range []string{"embedgate_triton_replica_batches_total", "embedgate_triton_replica_ejected"} {
		replicaValue(t, reg, name, a.Addr()) // fails the test without the series
	}
}

// Addresses coming and going many times, under load, leave nothing behind:
// every replica Open gave is released once, the series are those of the
// members, and Close leaves no goroutine.
func TestReplicasDNSChurn(t *testing.T) {
	srvs, dns, port := dnsReplicas(t)
	ignore := goleak.IgnoreCurrent()
	dns.Set("triton.test", "127.0.0.1")
	var opened, released atomic.Int64
	model := srvs[0].Name()
	r, err := triton.OpenReplicas(context.Background(), triton.ReplicaOptions{
		Target: triton.Target{Host: "triton.test", Port: port, DNSServer: dns.Addr()}, Model: model,
		ResolveInterval: 10 * time.Millisecond, Logger: testLogger(t),
		Open: func(ctx context.Context, addr string) (*triton.Backend, func(), error) {
			b, err := triton.Open(ctx, triton.Options{URL: addr, Model: model, Timeout: 2 * time.Second, ReadyTimeout: 2 * time.Second})
			if err != nil {
				return nil, nil, err
			}
			opened.Add(1)
			var once sync.Once
			return b, func() { once.Do(func() { released.Add(1) }) }, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(r); err != nil {
		t.Fatal(err)
	}
	_, stop := embedLoad(t, r, 3, 3, 2)
	defer stop()
	answers := [][]string{{"127.0.0.2"}, {"127.0.0.1", "127.0.0.3"}, {"127.0.0.3"}, {"127.0.0.1", "127.0.0.2", "127.0.0.3"}, {"127.0.0.1"}}
	for i := range 20 {
		answer := answers[i%len(answers)]
		dns.Set("triton.test", answer...)
		want := make([]string, len(answer))
		for j, ip := range answer {
			want[j] = net.JoinHostPort(ip, port)
		}
		waitFor(t, fmt.Sprintf("members %v", want), func() bool { members, _ := r.Addrs(); return slices.Equal(members, want) })
	}
	stop()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if n := len(f.GetMetric()); n > 3 {
			t.Errorf("%s has %d series after the churn, more than the 3 addresses", f.GetName(), n)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if opened.Load() != released.Load() || opened.Load() < 20 {
		t.Errorf("%d replicas opened, %d released", opened.Load(), released.Load())
	}
	goleak.VerifyNone(t, ignore)
}

// A target without an address is refused with an error that says so.
func TestReplicasEmptyTarget(t *testing.T) {
	_, err := triton.OpenReplicas(context.Background(), triton.ReplicaOptions{Model: "embed",
		Open: func(context.Context, string) (*triton.Backend, func(), error) { return nil, nil, nil }})
	if err == nil || strings.Contains(err.Error(), "%!") || !strings.Contains(err.Error(), "no address") {
		t.Fatalf("OpenReplicas of an empty target: %v, want an error naming the missing address", err)
	}
}

// A DNS name that lists no replica yet at start (Kubernetes lists a
// Triton pod once it is ready) is resolved again until it does, as a
// single address waits for its Triton, rather than failing the model at
// once and the gateway with it.
func TestReplicasDNSEmptyAtStart(t *testing.T) {
	srvs, dns, port := dnsReplicas(t)
	opened := make(chan error, 1)
	var r *triton.Replicas
	go func() {
		var err error
		r, err = triton.OpenReplicas(context.Background(), triton.ReplicaOptions{
			Target: triton.Target{Host: "triton.test", Port: port, DNSServer: dns.Addr()}, Model: srvs[0].Name(), Logger: testLogger(t),
			Open: func(ctx context.Context, addr string) (*triton.Backend, func(), error) {
				b, err := triton.Open(ctx, triton.Options{URL: addr, Model: srvs[0].Name(), ReadyTimeout: 2 * time.Second})
				return b, nil, err
			},
		})
		opened <- err
	}()
	waitFor(t, "the name to be asked again", func() bool {
		select {
		case err := <-opened:
			t.Fatalf("OpenReplicas ended before the name listed a replica: %v", err)
		default:
		}
		return dns.Queries("triton.test") > 4
	})
	dns.Set("triton.test", "127.0.0.2")
	if err := <-opened; err != nil {
		t.Fatalf("OpenReplicas once the name lists a replica: %v", err)
	}
	defer r.Close()
	if members, _ := r.Addrs(); !slices.Equal(members, []string{srvs[1].Addr()}) {
		t.Errorf("members: %v, want the one the name lists", members)
	}
}

// At start a replica may take as long to open as a single address does
// (its client's ready timeout: Triton loading its models), not the
// shorter bound of a replica that joins later, which a DNS answer lists
// once it is ready.
func TestReplicasStartOpenUnbounded(t *testing.T) {
	a := tritontest.Start(t, openONNX(t))
	bounded := make(chan bool, 1)
	r, err := triton.OpenReplicas(context.Background(), triton.ReplicaOptions{
		Target: triton.Target{Addrs: []string{a.Addr()}}, Model: a.Name(), Logger: testLogger(t),
		Open: func(ctx context.Context, addr string) (*triton.Backend, func(), error) {
			_, ok := ctx.Deadline()
			bounded <- ok
			b, err := triton.Open(ctx, triton.Options{URL: addr, Model: a.Name(), ReadyTimeout: 2 * time.Second})
			return b, nil, err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if <-bounded {
		t.Error("the open at start has a deadline of its own: a Triton loading its models for longer fails the model, where a single address waits for it")
	}
}

// A replica that serves another model than the others is refused, and not
// opened again at every resolve (each open logs the model and its config's
// warnings).
func TestReplicasUnlike(t *testing.T) {
	a := tritontest.StartOn(t, "127.0.0.1:0", openONNX(t))
	_, port, _ := net.SplitHostPort(a.Addr())
	c := tritontest.StartOn(t, "127.0.0.3:"+port, openONNX(t, testmodel.WithHidden(16)))
	dns := dnstest.Start(t)
	dns.Set("triton.test", "127.0.0.1")
	var opensOfC atomic.Int32
	r, err := triton.OpenReplicas(context.Background(), triton.ReplicaOptions{
		Target: triton.Target{Host: "triton.test", Port: port, DNSServer: dns.Addr()}, Model: a.Name(),
		ResolveInterval: 20 * time.Millisecond, Logger: testLogger(t),
		Open: func(ctx context.Context, addr string) (*triton.Backend, func(), error) {
			if addr == c.Addr() {
				opensOfC.Add(1)
			}
			b, err := triton.Open(ctx, triton.Options{URL: addr, Model: a.Name(), Logger: testLogger(t)})
			return b, nil, err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	dns.Set("triton.test", "127.0.0.1", "127.0.0.3")
	waitFor(t, "c opened", func() bool { return opensOfC.Load() == 1 })
	queries := dns.Queries("triton.test")
	waitFor(t, "ten more resolutions", func() bool { return dns.Queries("triton.test") >= queries+20 })
	if n := opensOfC.Load(); n != 1 {
		t.Errorf("c, serving hidden 16 beside hidden 32, was opened %d times in ten resolutions, want once", n)
	}
	if members, _ := r.Addrs(); !slices.Equal(members, []string{a.Addr()}) {
		t.Errorf("members: %v, want only a", members)
	}
	embedOK(t, r, batch(3))
}
