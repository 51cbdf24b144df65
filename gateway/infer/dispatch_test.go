package infer

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/embedgate/embedgate/gateway"
	dto "github.com/prometheus/client_model/go"
)

// oneInstance is a Triton model with one instance: it runs one batch at a
// time, calls wait in its queue, and that wait counts against the call's
// timeout. It runs speed padded tokens per second, so within a call's
// timeout it gets through capacity tokens: a call that finds more than
// that in its queue, its own included, fails as Triton's deadline would
// fail it. Until gate closes, calls wait before they run.
type oneInstance struct {
	fakeBackend
	speed    float64 // padded tokens per second
	capacity int     // padded tokens run within the call timeout
	gate     chan struct{}

	mu        sync.Mutex
	run       sync.Mutex // one batch at a time
	queued    int        // padded tokens of the calls in
	maxQueued int
}

func (o *oneInstance) Embed(ctx context.Context, b *gateway.Batch) (*gateway.Output, error) {
	n := b.Rows * b.Len
	o.mu.Lock()
	o.queued += n
	queued := o.queued
	o.maxQueued = max(o.maxQueued, queued)
	o.mu.Unlock()
	defer func() {
		o.mu.Lock()
		o.queued -= n
		o.mu.Unlock()
	}()
	if queued > o.capacity {
		return nil, &gateway.Error{Kind: gateway.Timeout, Msg: "request deadline exceeded"}
	}
	<-o.gate
	o.run.Lock()
	defer o.run.Unlock()
	time.Sleep(time.Duration(float64(n) / o.speed * float64(time.Second)))
	return o.fakeBackend.Embed(ctx, b)
}

// TestInflightWorkFitsTheCallTimeout: batches in flight to a backend that
// runs one at a time wait in its queue, on the call's clock. The engine
// hands it no more work than it runs in half a call's timeout, at the
// rate measured, so that no call times out while the backend keeps its
// pace. Before, it filled every in-flight slot (4): the third batch found
// more work queued than the backend runs within the timeout, and its
// request ended 504 (as with the Triton stand-in at 64 clients).
func TestInflightWorkFitsTheCallTimeout(t *testing.T) {
	opts := defaultOptions() // batches of 4 rows × 16 tokens
	opts.MaxInflight = 4
	opts.CallTimeout = 25 * time.Millisecond
	// 6400 tokens/s: a full batch takes 10 ms, and 2.5 batches fit the
	// call timeout; the engine keeps at most 80 tokens in flight, one batch.
	be := &oneInstance{fakeBackend: fakeBackend{hidden: 8}, speed: 6400, capacity: 160, gate: make(chan struct{})}
	eng := startEngine(t, opts, be)
	// The backend's rate, as calibration measures it: 640 tokens in at
	// least 100 ms, at most its speed.
	done := eng.backlog.Start(640)
	time.Sleep(100 * time.Millisecond)
	done(true)

	const requests = 8
	words := strings.Repeat("word ", 20) // truncated to 16 tokens
	errs := make(chan error, requests)
	for range requests {
		go func() {
			_, err := eng.Embed(context.Background(), &gateway.EmbedRequest{Inputs: texts(words, words, words, words), Truncate: true})
			errs <- err
		}()
	}
	tokenized := func() uint64 {
		var m dto.Metric
		if err := eng.m.tokenization.Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetHistogram().GetSampleCount()
	}
	for tokenized() < requests {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // every request queued; the engine hands out what it will
	close(be.gate)
	for range requests {
		if err := <-errs; err != nil {
			t.Errorf("admitted request failed: %v", err)
		}
	}
	if be.maxQueued > be.capacity {
		t.Errorf("the backend's queue held %d tokens, more than the %d it runs within a call's timeout", be.maxQueued, be.capacity)
	}
}
