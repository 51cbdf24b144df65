package infer

import (
	"context"
	"sync"
	"time"
)

// entry is one input in the batch queue.
type entry struct {
	ids, typeIDs []int32
	ctx          context.Context
	req          *pending
	index        int
	enqueued     time.Time
}

func (e *entry) Tokens() ([]int32, []int32) { return e.ids, e.typeIDs }
func (e *entry) Context() context.Context   { return e.ctx }

// pending collects one request's vectors as its inputs come back from
// batches; done closes when every input is answered or one failed.
type pending struct {
	mu        sync.Mutex
	vecs      [][]float32
	remaining int
	err       error
	queue     time.Duration // longest queue wait of its inputs
	began     bool          // a batch took at least one of its inputs
	done      chan struct{}
}

func newPending(n int) *pending {
	return &pending{vecs: make([][]float32, n), remaining: n, done: make(chan struct{})}
}

func (p *pending) started(wait time.Duration) {
	p.mu.Lock()
	p.queue = max(p.queue, wait)
	p.began = true
	p.mu.Unlock()
}

// queued is the longest queue wait so far and whether any input left the
// queue at all.
func (p *pending) queued() (time.Duration, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.queue, p.began
}

func (p *pending) queueWait() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.queue
}

// cached answers input i with v from the cache, wait after tokenization:
// for the queue's timings and span, it left the queue then.
func (p *pending) cached(i int, v []float32, wait time.Duration) {
	p.started(wait)
	p.set(i, v)
}

func (p *pending) set(i int, v []float32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.remaining == 0 {
		return // already failed
	}
	p.vecs[i] = v
	p.remaining--
	if p.remaining == 0 {
		close(p.done)
	}
}

func (p *pending) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.remaining == 0 {
		return
	}
	p.err = err
	p.remaining = 0
	close(p.done)
}
