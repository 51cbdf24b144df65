//go:build cgo

package triton_test

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/backend/triton"
	"github.com/embedgate/embedgate/gateway/backend/triton/tritontest"
)

// openReplicas balances over the stand-ins, a fixed list; the set closes
// with the test.
func openReplicas(t *testing.T, timeout time.Duration, srvs ...*tritontest.Server) *triton.Replicas {
	t.Helper()
	var addrs []string
	for _, srv := range srvs {
		addrs = append(addrs, srv.Addr())
	}
	return openTarget(t, triton.Target{Addrs: addrs}, srvs[0].Name(), timeout, 100*time.Millisecond)
}

// openTarget opens model on target's replicas, each on a client of its
// own with call timeout timeout, resolved again every interval.
func openTarget(t *testing.T, target triton.Target, model string, timeout, interval time.Duration) *triton.Replicas {
	t.Helper()
	r, err := triton.OpenReplicas(context.Background(), triton.ReplicaOptions{
		Target: target, Model: model, ResolveInterval: interval, Logger: testLogger(t),
		Open: func(ctx context.Context, addr string) (*triton.Backend, func(), error) {
			b, err := triton.Open(ctx, triton.Options{URL: addr, Model: model, Timeout: timeout,
				ReadyTimeout: 2 * time.Second, Logger: testLogger(t)})
			return b, nil, err
		},
	})
	if err != nil {
		t.Fatalf("OpenReplicas: %v", err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("Replicas Close: %v", err)
		}
	})
	return r
}

// waitFor polls cond until it holds, failing the test after a bound far
// above what it needs: no assertion rests on how long it took.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(20 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("gave up waiting for %s", what)
		}
	}
}

func embedOK(t *testing.T, r *triton.Replicas, b *gateway.Batch) {
	t.Helper()
	out, err := r.Embed(context.Background(), b)
	if err != nil {
		t.Fatalf("Embed: %v", err)
	}
	out.Release()
}

func TestParseTarget(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   string
		want triton.Target
		err  string
	}{
		{"a:8001", triton.Target{Addrs: []string{"a:8001"}}, ""},
		{"grpc://a:8001, b:8001", triton.Target{Addrs: []string{"a:8001", "b:8001"}}, ""},
		{"dns:///triton-headless:8001", triton.Target{Host: "triton-headless", Port: "8001"}, ""},
		{"dns://10.0.0.10/triton:8001", triton.Target{Host: "triton", Port: "8001", DNSServer: "10.0.0.10:53"}, ""},
		{"dns://127.0.0.1:5353/triton.test:8001", triton.Target{Host: "triton.test", Port: "8001", DNSServer: "127.0.0.1:5353"}, ""},
		{"dns:triton:8001", triton.Target{Host: "triton", Port: "8001"}, ""},
		{"dns://[fd00::a]/triton:8001", triton.Target{Host: "triton", Port: "8001", DNSServer: "[fd00::a]:53"}, ""},
		{"dns://[fd00::a]:5353/triton:8001", triton.Target{Host: "triton", Port: "8001", DNSServer: "[fd00::a]:5353"}, ""},
		{"a:8001,,b:8001", triton.Target{}, "empty address at position 2"},
		{"", triton.Target{}, "empty address at position 1"},
		{"a:8001,grpc://a:8001", triton.Target{}, "names a:8001 twice"},
		{"triton", triton.Target{}, `address "triton" is not host:port`},
		{"a:8001,b", triton.Target{}, `address "b" is not host:port`},
		{"[::1]:8001", triton.Target{Addrs: []string{"[::1]:8001"}}, ""},
		{"dns:///triton-headless", triton.Target{}, "want dns:///name:port"},
		{"dns://triton:8001", triton.Target{}, "want dns:///name:port"},
	} {
		got, err := triton.ParseTarget(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseTarget(%q) = %+v, %v; want error with %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseTarget(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
		if again, err := triton.ParseTarget(got.String()); err != nil || !reflect.DeepEqual(again, got) {
			t.Errorf("ParseTarget(%q.String() = %q) = %+v, %v", tt.in, got.String(), again, err)
		}
	}
	if _, err := triton.Dial(context.Background(), triton.ClientOptions{URL: "a:8001,b:8001"}); err == nil || !strings.Contains(err.Error(), "list of addresses") {
		t.Errorf("Dial of a list: %v, want the list-of-addresses error", err)
	}
}

// Equal loads rotate; a replica with tokens in flight gets no batch while
// another has none.
func TestReplicasLeastLoaded(t *testing.T) {
	model := openONNX(t)
	a, b := tritontest.Start(t, model), tritontest.Start(t, model)
	r := openReplicas(t, 10*time.Second, a, b)
	for range 10 {
		embedOK(t, r, batch(3, 2))
	}
	if a.InferCount() != 5 || b.InferCount() != 5 {
		t.Fatalf("sequential batches: %d on a, %d on b; want 5 and 5 (ties round robin)", a.InferCount(), b.InferCount())
	}
	// A big batch held on a: the small ones after it all go to b. The
	// round-robin cursor is back at the first member, in address order.
	if members, _ := r.Addrs(); members[0] != a.Addr() {
		a, b = b, a
	}
	a.SetDelay(5 * time.Second) // far longer than 8 small batches take
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		out, err := r.Embed(context.Background(), batch(16, 16, 16, 16, 16, 16, 16, 16))
		if err != nil {
			t.Errorf("big batch: %v", err)
			return
		}
		out.Release()
	}()
	waitFor(t, "the big batch to reach a", func() bool { return a.InferCount() == 6 })
	for range 8 {
		embedOK(t, r, batch(3, 2))
	}
	if got := b.InferCount(); got != 5+8 || a.InferCount() != 6 {
		t.Errorf("while a holds the big batch: a got %d, b %d batches; want every small one (8) on b", a.InferCount()-5, got-5)
	}
	wg.Wait()
}

// A replica stopped under load: no batch fails, it is ejected, the other
// keeps /ready up, and after a restart it takes traffic again.
func TestReplicasFailover(t *testing.T) {
	model := openONNX(t)
	srvs := []*tritontest.Server{tritontest.Start(t, model), tritontest.Start(t, model), tritontest.Start(t, model)}
	r := openReplicas(t, 2*time.Second, srvs...)
	down := srvs[1]
	done, stop := embedLoad(t, r, 4, 4, 3, 2)
	defer stop()
	waitFor(t, "load on every replica", func() bool {
		return srvs[0].InferCount() > 5 && down.InferCount() > 5 && srvs[2].InferCount() > 5
	})
	down.Stop()
	waitFor(t, "the stopped replica's ejection", func() bool { return slices.Equal(r.Ejected(), []string{down.Addr()}) })
	if err := r.Health(context.Background()); err != nil {
		t.Errorf("Health with one replica down: %v, want OK", err)
	}
	before := done.Load()
	waitFor(t, "batches on the other replicas", func() bool { return done.Load() > before+20 })
	if err := down.Restart(); err != nil {
		t.Fatal(err)
	}
	n := down.InferCount()
	waitFor(t, "traffic on the restarted replica", func() bool { return down.InferCount() > n+5 })
	if e := r.Ejected(); len(e) != 0 {
		t.Errorf("ejected after the restart: %v", e)
	}
}

// embedLoad has workers goroutines embed batches of lens on r, each until
// a batch fails (which fails the test) or stop, which waits for them, is
// called; done counts the batches served.
func embedLoad(t *testing.T, r *triton.Replicas, workers int, lens ...int) (done *atomic.Int64, stop func()) {
	done = new(atomic.Int64)
	quit := make(chan struct{})
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-quit:
					return
				default:
				}
				out, err := r.Embed(context.Background(), batch(lens...))
				if err != nil {
					t.Errorf("a batch failed: %v", err)
					return
				}
				out.Release()
				done.Add(1)
			}
		}()
	}
	var once sync.Once
	return done, func() { once.Do(func() { close(quit); wg.Wait() }) }
}

// With every replica down, batches and Health fail as Unhealthy, saying so.
func TestReplicasAllDown(t *testing.T) {
	model := openONNX(t)
	a, b := tritontest.Start(t, model), tritontest.Start(t, model)
	r := openReplicas(t, 2*time.Second, a, b)
	embedOK(t, r, batch(2))
	a.Stop()
	b.Stop()
	_, err := r.Embed(context.Background(), batch(2))
	if kindOf(t, err) != gateway.Unhealthy {
		t.Errorf("Embed with both down: %v, want Unhealthy", err)
	}
	waitFor(t, "both ejected", func() bool { return len(r.Ejected()) == 2 })
	_, err = r.Embed(context.Background(), batch(2))
	if kindOf(t, err) != gateway.Unhealthy || !strings.Contains(err.Error(), "all 2 replicas") {
		t.Errorf("Embed with both ejected: %v, want Unhealthy naming all 2 replicas", err)
	}
	err = r.Health(context.Background())
	var gerr *gateway.Error
	if !errors.As(err, &gerr) || gerr.Kind != gateway.Unhealthy {
		t.Errorf("Health with both down: %v, want Unhealthy", err)
	}
}

// A replica that is stuck, its health call never answering, does not turn
// Health off while another replica is ready: the engine's probe gives
// Health a short deadline, and a stuck first member used it all up, so
// that /ready went 503 (and Kubernetes took every gateway out of its
// Service) though another replica served.
func TestReplicasHealthStuckReplica(t *testing.T) {
	model := openONNX(t)
	a := tritontest.StartOn(t, "127.0.0.2:0", model)
	b := tritontest.StartOn(t, "127.0.0.3:0", model)
	stuck := startStallProxy(t, "127.0.0.1:0", a.Addr()) // first in address order
	r := openTarget(t, triton.Target{Addrs: []string{stuck.Addr(), b.Addr()}}, a.Name(), 2*time.Second, time.Hour)
	if members, _ := r.Addrs(); len(members) != 2 || members[0] != stuck.Addr() {
		t.Fatalf("members: %v, want the stuck replica first, then b", members)
	}
	stuck.Stall()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second) // as the engine's probe
	defer cancel()
	if err := r.Health(ctx); err != nil {
		t.Errorf("Health with the first replica stuck and b ready: %v, want OK", err)
	}
	if e := r.Ejected(); slices.Contains(e, b.Addr()) {
		t.Errorf("ejected: %v; b is ready", e)
	}
}

// A full or slow queue on every replica is overload, not failure: no
// replica is ejected; the batch, which never reached the model, is tried
// once more on another replica, which serves it if it has room.
func TestReplicasOverloadNoEjection(t *testing.T) {
	model := openONNX(t)
	a, b := tritontest.Start(t, model), tritontest.Start(t, model)
	r := openReplicas(t, 2*time.Second, a, b)
	for _, f := range []tritontest.Fault{tritontest.QueueFull, tritontest.QueueTimeout} {
		a.SetFault(f)
		b.SetFault(f)
		n := a.InferCount() + b.InferCount()
		for range 4 {
			if _, err := r.Embed(context.Background(), batch(3)); kindOf(t, err) != gateway.Overloaded {
				t.Errorf("%v: %v, want Overloaded", f, err)
			}
		}
		if got := a.InferCount() + b.InferCount() - n; got != 8 {
			t.Errorf("%v: %d calls for 4 batches, want each tried once more on the other replica", f, got)
		}
		if e := r.Ejected(); len(e) != 0 {
			t.Errorf("%v: ejected %v under overload", f, e)
		}
		// One replica full, the other with room: every batch is served.
		b.SetFault(tritontest.NoFault)
		for range 4 {
			embedOK(t, r, batch(3))
		}
		if e := r.Ejected(); len(e) != 0 {
			t.Errorf("%v on a alone: ejected %v", f, e)
		}
	}
}

// A call that timed out while its batch still had time is retried on
// another replica, and the stuck one is ejected; one that ran out of the
// batch's own time is neither.
func TestReplicasTimeoutRetry(t *testing.T) {
	model := openONNX(t)
	a := tritontest.StartOn(t, "127.0.0.1:0", model)
	b := tritontest.StartOn(t, "127.0.0.2:0", model)
	r := openTarget(t, triton.Target{Addrs: []string{a.Addr(), b.Addr()}}, a.Name(), 300*time.Millisecond, time.Hour)
	a.SetDelay(time.Minute)
	b.SetDelay(time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	_, err := r.Embed(ctx, batch(3))
	cancel()
	if kindOf(t, err) != gateway.Timeout {
		t.Errorf("Embed past the batch's deadline: %v, want Timeout", err)
	}
	if got := a.InferCount() + b.InferCount(); got != 1 {
		t.Errorf("%d calls for a batch whose own deadline passed, want 1 (no retry)", got)
	}
	if e := r.Ejected(); len(e) != 0 {
		t.Errorf("ejected %v for the batch's own deadline", e)
	}
	// The race window of the above made deterministic: the deadline has
	// passed, the ctx's timer has not fired yet.
	_, err = r.Embed(pastDeadline{context.Background()}, batch(3))
	if kindOf(t, err) != gateway.Timeout {
		t.Errorf("Embed past the batch's deadline, its timer not fired: %v, want Timeout", err)
	}
	if e := r.Ejected(); len(e) != 0 {
		t.Errorf("ejected %v for a batch's own deadline, its timer not fired", e)
	}
	if err := r.Health(pastDeadline{context.Background()}); err == nil {
		t.Error("Health past its deadline: OK")
	}
	if e := r.Ejected(); len(e) != 0 {
		t.Errorf("ejected %v for a health check's own deadline, its timer not fired", e)
	}
	b.SetDelay(0)
	for range 2 { // round robin: one of them starts on a
		embedOK(t, r, batch(3))
	}
	if got := r.Ejected(); !slices.Equal(got, []string{a.Addr()}) {
		t.Errorf("ejected %v, want the stuck a", got)
	}
}

// pastDeadline is a ctx whose deadline has passed, its timer not fired
// yet (Err nil): as gRPC may end a call before ctx says it is done.
type pastDeadline struct{ context.Context }

func (pastDeadline) Deadline() (time.Time, bool) { return time.Now().Add(-time.Millisecond), true }
