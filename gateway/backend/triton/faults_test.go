//go:build cgo

package triton_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/backend/triton"
	"github.com/embedgate/embedgate/gateway/backend/triton/tritontest"
)

// kindOf returns err's gateway kind, failing the test when err is not a
// *gateway.Error.
func kindOf(t *testing.T, err error) gateway.Kind {
	t.Helper()
	var gerr *gateway.Error
	if !errors.As(err, &gerr) {
		t.Fatalf("error %v (%T) is not a *gateway.Error", err, err)
	}
	return gerr.Kind
}

func TestFaults(t *testing.T) {
	srv := tritontest.Start(t, openONNX(t))
	opts := options(t, srv)
	opts.Timeout = 300 * time.Millisecond
	b := openTriton(t, opts)
	for _, tt := range []struct {
		name       string
		set        func()
		want       gateway.Kind
		retryAfter time.Duration
		unhealthy  bool // Health fails too
	}{
		{"QueueFull", func() { srv.SetFault(tritontest.QueueFull) }, gateway.Overloaded, time.Second, false},
		// A queue timeout is overload too, not an outage: /ready stays on.
		{"QueueTimeout", func() { srv.SetFault(tritontest.QueueTimeout) }, gateway.Overloaded, time.Second, false},
		{"InvalidArgument", func() { srv.SetFault(tritontest.InvalidArgument) }, gateway.Backend, 0, false},
		{"Internal", func() { srv.SetFault(tritontest.InternalError) }, gateway.Backend, 0, false},
		{"NotReady", func() { srv.SetFault(tritontest.NotReady) }, gateway.Unhealthy, 0, true},
		{"SlowPastTimeout", func() { srv.SetDelay(time.Second) }, gateway.Timeout, 0, false},
		// The model was reloaded as a TensorRT engine: Triton now wants INT32.
		{"DTypeChanged", func() { srv.SetInt32Inputs(true) }, gateway.Backend, 0, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.set()
			t.Cleanup(func() {
				srv.SetFault(tritontest.NoFault)
				srv.SetDelay(0)
				srv.SetInt32Inputs(false)
			})
			before := srv.InferCount()
			_, err := b.Embed(context.Background(), batch(4, 2))
			if err == nil {
				t.Fatal("Embed() = nil error, want one")
			}
			if got := kindOf(t, err); got != tt.want {
				t.Errorf("Embed() error kind = %v (%v), want %v", got, err, tt.want)
			}
			var gerr *gateway.Error
			errors.As(err, &gerr)
			if gerr.RetryAfter != tt.retryAfter {
				t.Errorf("RetryAfter = %v, want %v", gerr.RetryAfter, tt.retryAfter)
			}
			if n := srv.InferCount() - before; n != 1 {
				t.Errorf("Triton received %d calls, want 1 (no retry after Triton answered)", n)
			}
			herr := b.Health(context.Background())
			if tt.unhealthy {
				if herr == nil || kindOf(t, herr) != gateway.Unhealthy {
					t.Errorf("Health() = %v, want an Unhealthy error", herr)
				}
			} else if herr != nil {
				t.Errorf("Health() = %v, want nil", herr)
			}
		})
	}
	// Faults cleared: the same backend serves again.
	if _, err := b.Embed(context.Background(), batch(3)); err != nil {
		t.Fatalf("Embed after faults: %v", err)
	}
}

func TestDeadline(t *testing.T) {
	srv := tritontest.Start(t, openONNX(t))
	srv.SetDelay(time.Second)
	for _, tt := range []struct {
		name        string
		timeout     time.Duration // Options.Timeout
		ctxDeadline time.Duration // 0 = none
	}{
		{"OptionTimeout", 150 * time.Millisecond, 0},
		{"ContextDeadline", 5 * time.Second, 150 * time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			opts := options(t, srv)
			opts.Timeout = tt.timeout
			b := openTriton(t, opts)
			ctx := context.Background()
			if tt.ctxDeadline > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.ctxDeadline)
				defer cancel()
			}
			start := time.Now()
			_, err := b.Embed(ctx, batch(2))
			if got := kindOf(t, err); got != gateway.Timeout {
				t.Errorf("Embed() error kind = %v (%v), want Timeout", got, err)
			}
			if d := time.Since(start); d > 700*time.Millisecond {
				t.Errorf("Embed took %v, want about 150ms", d)
			}
		})
	}
}

// TestMaxInflight checks that calls beyond MaxInflight wait for a slot, and
// that the wait honours ctx.
func TestMaxInflight(t *testing.T) {
	srv := tritontest.Start(t, openONNX(t))
	opts := options(t, srv)
	opts.MaxInflight = 1
	b := openTriton(t, opts)
	srv.SetDelay(300 * time.Millisecond)
	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := b.Embed(context.Background(), batch(2)); err != nil {
			t.Errorf("first Embed: %v", err)
		}
	})
	// Wait until the first call holds the slot (it reached the server).
	for deadline := time.Now().Add(2 * time.Second); srv.InferCount() == 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := b.Embed(ctx, batch(2))
	if got := kindOf(t, err); got != gateway.Timeout {
		t.Errorf("second Embed error kind = %v (%v), want Timeout while waiting for a slot", got, err)
	}
	if n := srv.InferCount(); n != 1 {
		t.Errorf("Triton received %d calls, want 1: the second must wait for a slot", n)
	}
	wg.Wait()
}

// TestMaxInflightBytes checks that calls wait for their response bytes
// within MaxInflightBytes even with slots free, that the wait honours ctx,
// and that a batch larger than the whole budget still runs (alone).
func TestMaxInflightBytes(t *testing.T) {
	srv := tritontest.Start(t, openONNX(t))
	const one = 1 * 2 * 32 * 4 // batch(2): 1 row of 2 tokens, hidden 32, FP32
	t.Run("Waits", func(t *testing.T) {
		opts := options(t, srv)
		opts.MaxInflight = 4
		opts.MaxInflightBytes = one + one/2 // room for one such response
		b := openTriton(t, opts)
		srv.SetDelay(300 * time.Millisecond)
		t.Cleanup(func() { srv.SetDelay(0) })
		before := srv.InferCount()
		var wg sync.WaitGroup
		wg.Go(func() {
			if _, err := b.Embed(context.Background(), batch(2)); err != nil {
				t.Errorf("first Embed: %v", err)
			}
		})
		for deadline := time.Now().Add(2 * time.Second); srv.InferCount() == before && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := b.Embed(ctx, batch(2))
		if got := kindOf(t, err); got != gateway.Timeout || !errors.Is(err, gateway.ErrNotCalled) {
			t.Errorf("second Embed error = %v (kind %v), want Timeout and ErrNotCalled while waiting for response bytes", err, got)
		}
		if n := srv.InferCount() - before; n != 1 {
			t.Errorf("Triton received %d calls, want 1: the second must wait for the byte budget", n)
		}
		wg.Wait()
		// The budget is whole again.
		if out, err := b.Embed(context.Background(), batch(2)); err != nil {
			t.Errorf("Embed after the first returned: %v", err)
		} else {
			out.Free()
		}
	})
	t.Run("LargerThanBudget", func(t *testing.T) {
		opts := options(t, srv)
		opts.MaxInflightBytes = one / 4
		b := openTriton(t, opts)
		var wg sync.WaitGroup
		for range 3 {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				out, err := b.Embed(ctx, batch(2))
				if err != nil {
					t.Errorf("Embed of a batch larger than MaxInflightBytes: %v", err)
					return
				}
				out.Free()
			})
		}
		wg.Wait()
	})
}

func TestOpenWaitsForReady(t *testing.T) {
	srv := tritontest.Start(t, openONNX(t))
	srv.SetFault(tritontest.NotReady)
	timer := time.AfterFunc(200*time.Millisecond, func() { srv.SetFault(tritontest.NoFault) })
	defer timer.Stop()
	start := time.Now()
	b := openTriton(t, options(t, srv))
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("Open returned after %v, before the server was ready", d)
	}
	if _, err := b.Embed(context.Background(), batch(3)); err != nil {
		t.Fatalf("Embed: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	srv := tritontest.Start(t, openONNX(t))
	notReady := tritontest.Start(t, openONNX(t))
	notReady.SetFault(tritontest.NotReady)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := lis.Addr().String()
	lis.Close() // nothing listens there now
	for _, tt := range []struct {
		name string
		opts triton.Options
		want string // in the error
	}{
		{"NoURL", triton.Options{Model: "embed"}, "no URL"},
		{"NoModel", triton.Options{URL: srv.Addr()}, "no model"},
		{"Negative", triton.Options{URL: srv.Addr(), Model: "embed", Conns: -1}, "negative"},
		{"ConnectionRefused", triton.Options{URL: refused, Model: "embed", ReadyTimeout: 300 * time.Millisecond}, "connection refused"},
		{"NotReady", triton.Options{URL: notReady.Addr(), Model: "embed", ReadyTimeout: 300 * time.Millisecond}, "not ready after 300ms"},
		{"UnknownModel", triton.Options{URL: srv.Addr(), Model: "nope", ReadyTimeout: 300 * time.Millisecond}, "unknown model: 'nope'"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			b, err := triton.Open(context.Background(), tt.opts)
			if err == nil {
				b.Close()
				t.Fatalf("Open(%+v) = nil error, want one", tt.opts)
			}
			t.Logf("Open() error: %v", err)
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Open() error = %q, want it to contain %q", err, tt.want)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("Open took %v, want it bounded by ReadyTimeout", d)
			}
		})
	}
}

// TestRestart stops Triton under a running backend: calls fail Unhealthy
// while it is down, then succeed again without reopening.
func TestRestart(t *testing.T) {
	srv := tritontest.Start(t, openONNX(t))
	b := openTriton(t, options(t, srv))
	if _, err := b.Embed(context.Background(), batch(3)); err != nil {
		t.Fatalf("Embed before restart: %v", err)
	}
	srv.Stop()
	if _, err := b.Embed(context.Background(), batch(3)); err == nil || kindOf(t, err) != gateway.Unhealthy {
		t.Errorf("Embed while down = %v, want an Unhealthy error", err)
	}
	if err := b.Health(context.Background()); err == nil || kindOf(t, err) != gateway.Unhealthy {
		t.Errorf("Health while down = %v, want an Unhealthy error", err)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := b.Embed(context.Background(), batch(3))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Embed still failing 5s after restart: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := b.Health(context.Background()); err != nil {
		t.Errorf("Health after restart = %v, want nil", err)
	}
}

func TestClosed(t *testing.T) {
	srv := tritontest.Start(t, openONNX(t))
	b, err := triton.Open(context.Background(), options(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := b.Embed(context.Background(), batch(2)); err == nil || kindOf(t, err) != gateway.Unhealthy {
		t.Errorf("Embed after Close = %v, want an Unhealthy error", err)
	}
	if err := b.Health(context.Background()); err == nil || kindOf(t, err) != gateway.Unhealthy {
		t.Errorf("Health after Close = %v, want an Unhealthy error", err)
	}
}
