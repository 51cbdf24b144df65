//go:build cgo

package triton_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/backend/backendtest"
	"github.com/embedgate/embedgate/gateway/backend/triton"
	"github.com/embedgate/embedgate/gateway/backend/triton/tritontest"
	"github.com/embedgate/embedgate/gateway/testmodel"
)

// dial makes a client on srv with test defaults changed by opts; it closes
// with the test.
func dial(t *testing.T, srv *tritontest.Server, opts triton.ClientOptions) *triton.Client {
	t.Helper()
	opts.URL = srv.Addr()
	opts.Timeout = cmpOr(opts.Timeout, 2*time.Second)
	opts.ReadyTimeout = cmpOr(opts.ReadyTimeout, 2*time.Second)
	opts.Logger = testLogger(t)
	c, err := triton.Dial(context.Background(), opts)
	if err != nil {
		t.Fatalf("triton.Dial: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("client Close: %v", err)
		}
	})
	return c
}

func cmpOr(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// openOn opens model on c; the backend closes with the test.
func openOn(t *testing.T, c *triton.Client, model string) *triton.Backend {
	t.Helper()
	b, err := c.Open(context.Background(), model, "")
	if err != nil {
		t.Fatalf("Client.Open(%s): %v", model, err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("backend Close: %v", err)
		}
	})
	return b
}

// twoModels serves a tiny BERT with last_hidden_state [.,.,32] as "bert"
// and meanOfIDs, pooled with hidden size 2 and no token_type_ids, as "sum".
func twoModels(t *testing.T, opts ...tritontest.Option) *tritontest.Server {
	return tritontest.StartMulti(t, append([]tritontest.Option{
		tritontest.WithModel("bert", openONNX(t), tritontest.ModelParameters(map[string]string{"hf_model_id": "org/bert"})),
		tritontest.WithModel("sum", meanOfIDs{}, tritontest.ModelMaxBatchSize(8)),
	}, opts...)...)
}

// sumBatch is a batch for meanOfIDs: no token_type_ids.
func sumBatch(lens ...int) *gateway.Batch {
	b := batch(lens...)
	b.TokenTypeIDs = nil
	return b
}

// waitInfers waits until srv has received n ModelInfer calls.
func waitInfers(t *testing.T, srv *tritontest.Server, n int64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); srv.InferCount() < n; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("InferCount() = %d after 10s, want %d", srv.InferCount(), n)
		}
	}
}

func TestClientOpensManyModels(t *testing.T) {
	t.Parallel()
	srv := twoModels(t)
	c := dial(t, srv, triton.ClientOptions{})
	bert, sum := openOn(t, c, "bert"), openOn(t, c, "sum")
	if s := bert.Spec(); s.Name != "bert" || s.Hidden != 32 || s.Output != gateway.Hidden || !s.HasTokenTypeIDs || s.MaxBatch != 32 {
		t.Errorf("bert Spec() = %+v", s)
	}
	if s := sum.Spec(); s.Name != "sum" || s.Hidden != 2 || s.Output != gateway.Pooled || s.HasTokenTypeIDs || s.MaxBatch != 8 {
		t.Errorf("sum Spec() = %+v", s)
	}
	out, err := sum.Embed(context.Background(), sumBatch(3, 2))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Free()
	if want := fmt.Sprint(batchSums(sumBatch(3, 2))); fmt.Sprint(out.Data) != want {
		t.Errorf("sum Embed() = %v, want %v", out.Data, want)
	}
	// Closing one backend leaves the other, and the client, working.
	if err := sum.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := sum.Embed(context.Background(), sumBatch(2)); err == nil || kindOf(t, err) != gateway.Unhealthy {
		t.Errorf("Embed after the backend's Close = %v, want Unhealthy", err)
	}
	if out, err := bert.Embed(context.Background(), batch(4)); err != nil {
		t.Errorf("bert Embed after sum's Close = %v", err)
	} else {
		out.Free()
	}
	if err := bert.Health(context.Background()); err != nil {
		t.Errorf("bert Health after sum's Close = %v", err)
	}
	again := openOn(t, c, "sum")
	if err := again.Health(context.Background()); err != nil {
		t.Errorf("sum reopened: Health() = %v", err)
	}
	// Closing the client ends every backend on it.
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := bert.Embed(context.Background(), batch(4)); err == nil || kindOf(t, err) != gateway.Unhealthy {
		t.Errorf("Embed after the client's Close = %v, want Unhealthy", err)
	}
	if err := again.Health(context.Background()); err == nil || kindOf(t, err) != gateway.Unhealthy {
		t.Errorf("Health after the client's Close = %v, want Unhealthy", err)
	}
	if _, err := c.Open(context.Background(), "bert", ""); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Open after the client's Close = %v, want a closed error", err)
	}
	if _, err := c.Index(context.Background()); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Index after the client's Close = %v, want a closed error", err)
	}
}

// batchSums is meanOfIDs's answer for b.
func batchSums(b *gateway.Batch) []float32 {
	out, _ := meanOfIDs{}.Embed(context.Background(), b)
	return out.Data
}

// TestClientSharesBudget holds one model's call in Triton and checks that
// the other model's call, within the shared budget, never reaches it: with
// a budget per backend it would.
func TestClientSharesBudget(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		opts triton.ClientOptions
	}{
		{"MaxInflight", triton.ClientOptions{MaxInflight: 1}},
		{"MaxInflightBytes", triton.ClientOptions{MaxInflight: 4, MaxInflightBytes: 1}}, // every call takes all of it
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := twoModels(t)
			tt.opts.Timeout = time.Minute // the held call ends when the test says
			c := dial(t, srv, tt.opts)
			bert, sum := openOn(t, c, "bert"), openOn(t, c, "sum")

			srv.SetDelay(time.Minute)
			held, release := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				_, err := bert.Embed(held, batch(5))
				done <- err
			}()
			waitInfers(t, srv, 1)

			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			_, err := sum.Embed(ctx, sumBatch(2))
			if !errors.Is(err, gateway.ErrNotCalled) {
				t.Errorf("second model's Embed while the first holds the budget = %v, want it to wait and never be sent (ErrNotCalled)", err)
			}
			if n := srv.InferCount(); n != 1 {
				t.Errorf("InferCount() = %d, want 1: the second model's call reached Triton", n)
			}

			release()
			if err := <-done; err == nil {
				t.Error("held Embed succeeded, want it cancelled")
			}
			srv.SetDelay(0)
			out, err := sum.Embed(context.Background(), sumBatch(2))
			if err != nil {
				t.Fatalf("second model's Embed once the budget is free = %v", err)
			}
			out.Free()
		})
	}
}

// TestCloseEndsOwnCalls: a backend's Close fails its calls in flight, not
// those of another model on the same connections.
func TestCloseEndsOwnCalls(t *testing.T) {
	t.Parallel()
	srv := twoModels(t)
	c := dial(t, srv, triton.ClientOptions{Timeout: 10 * time.Second}) // a call Close fails to end fails the test then
	bert, sum := openOn(t, c, "bert"), openOn(t, c, "sum")
	srv.SetDelay(time.Minute)
	bertDone, sumDone := make(chan error, 1), make(chan error, 1)
	go func() {
		_, err := bert.Embed(context.Background(), batch(3))
		bertDone <- err
	}()
	sumCtx, cancelSum := context.WithCancel(context.Background())
	defer cancelSum()
	go func() {
		_, err := sum.Embed(sumCtx, sumBatch(3))
		sumDone <- err
	}()
	waitInfers(t, srv, 2)
	if err := bert.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-bertDone; err == nil || kindOf(t, err) != gateway.Unhealthy || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Embed in flight at Close = %v, want the closed error", err)
	}
	// The other call runs on until its caller gives up: it ends cancelled,
	// not closed, nor cut off with the connections.
	cancelSum()
	var gerr *gateway.Error
	if err := <-sumDone; !errors.As(err, &gerr) || gerr.Kind != gateway.Backend || gerr.Msg != "triton: call cancelled" {
		t.Errorf("the other model's call = %v, want it cancelled by its caller", err)
	}
	if err := sum.Health(context.Background()); err != nil {
		t.Errorf("other model's Health after the first's Close = %v", err)
	}
}

func TestIndex(t *testing.T) {
	t.Parallel()
	srv := twoModels(t, tritontest.WithModel("later", meanOfIDs{}, tritontest.ModelUnloaded(),
		tritontest.ModelParameters(map[string]string{"hf_model_id": "org/later", "aliases": "a,b"})))
	c := dial(t, srv, triton.ClientOptions{})
	index := func() string {
		t.Helper()
		models, err := c.Index(context.Background())
		if err != nil {
			t.Fatalf("Index() = %v", err)
		}
		var parts []string
		for _, m := range models {
			parts = append(parts, fmt.Sprintf("%s@%s%v", m.Name, m.Version, m.Parameters))
		}
		return strings.Join(parts, " ")
	}
	if got, want := index(), "bert@1map[hf_model_id:org/bert] sum@1map[]"; got != want {
		t.Errorf("Index() = %q, want %q", got, want)
	}
	if err := srv.Load("later"); err != nil {
		t.Fatal(err)
	}
	if got, want := index(), "bert@1map[hf_model_id:org/bert] later@1map[aliases:a,b hf_model_id:org/later] sum@1map[]"; got != want {
		t.Errorf("Index() after Load = %q, want %q", got, want)
	}
	if err := srv.Unload("bert"); err != nil {
		t.Fatal(err)
	}
	if got, want := index(), "later@1map[aliases:a,b hf_model_id:org/later] sum@1map[]"; got != want {
		t.Errorf("Index() after Unload = %q, want %q", got, want)
	}
	srv.SetFault(tritontest.NotReady) // every model (re)loading
	if got := index(); got != "" {
		t.Errorf("Index() while Triton loads = %q, want none", got)
	}
}

func TestIndexUnreachable(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nothing listens there now
	c, err := triton.Dial(context.Background(), triton.ClientOptions{URL: addr, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Index(context.Background()); err == nil || !strings.Contains(err.Error(), "repository index of "+addr) {
		t.Errorf("Index() of nothing = %v, want an error naming the address", err)
	}
}

// TestUnloadedModel: a model Triton unloads turns its backend unhealthy,
// with Triton's reason, and healthy again once reloaded; a model not
// loaded cannot be opened.
func TestUnloadedModel(t *testing.T) {
	t.Parallel()
	srv := twoModels(t, tritontest.WithModel("later", meanOfIDs{}, tritontest.ModelUnloaded()))
	c := dial(t, srv, triton.ClientOptions{ReadyTimeout: 300 * time.Millisecond})
	if b, err := c.Open(context.Background(), "later", ""); err == nil {
		b.Close()
		t.Error("Open(never loaded model) = nil error, want one")
	} else if !strings.Contains(err.Error(), `did Triton load model "later"`) || !strings.Contains(err.Error(), "'later' is not found") {
		t.Errorf("Open(never loaded model) = %v, want not ready with Triton's reason", err)
	}

	sum := openOn(t, c, "sum")
	if err := srv.Unload("sum"); err != nil {
		t.Fatal(err)
	}
	if err := sum.Health(context.Background()); err == nil || kindOf(t, err) != gateway.Unhealthy ||
		!strings.Contains(err.Error(), "model sum not ready") || !strings.Contains(err.Error(), "has no available versions") {
		t.Errorf("Health of an unloaded model = %v, want Unhealthy naming the model and Triton's reason", err)
	}
	_, err := sum.Embed(context.Background(), sumBatch(2))
	if err == nil || kindOf(t, err) != gateway.Unhealthy || !strings.Contains(err.Error(), "'sum' has no available versions") {
		t.Errorf("Embed on an unloaded model = %v, want Unhealthy with Triton's reason", err)
	}
	if err := srv.Load("sum"); err != nil {
		t.Fatal(err)
	}
	if err := sum.Health(context.Background()); err != nil {
		t.Errorf("Health once reloaded = %v", err)
	}
	if out, err := sum.Embed(context.Background(), sumBatch(2)); err != nil {
		t.Errorf("Embed once reloaded = %v", err)
	} else {
		out.Free()
	}
}

// TestClientConformance runs the conformance suite on two models opened on
// one client, at once.
func TestClientConformance(t *testing.T) {
	t.Parallel()
	srv := tritontest.StartMulti(t,
		tritontest.WithModel("hidden", openONNX(t)),
		tritontest.WithModel("pooled", openONNX(t, testmodel.WithPooled(), testmodel.WithoutTokenTypeIDs()), tritontest.ModelMaxBatchSize(0)))
	c := dial(t, srv, triton.ClientOptions{MaxInflight: 2})
	for _, tt := range []struct {
		model string
		want  gateway.ModelSpec
	}{
		{"hidden", gateway.ModelSpec{Name: "hidden", HasTokenTypeIDs: true, Output: gateway.Hidden, Hidden: 32, MaxBatch: 32, Version: "1"}},
		{"pooled", gateway.ModelSpec{Name: "pooled", Output: gateway.Pooled, Hidden: 32, Version: "1"}},
	} {
		t.Run(tt.model, func(t *testing.T) {
			t.Parallel()
			b := openOn(t, c, tt.model)
			if got := b.Spec(); got != tt.want {
				t.Errorf("Spec() = %+v, want %+v", got, tt.want)
			}
			backendtest.Run(t, b)
		})
	}
}
