package server

import (
	"context"
	"sync"
)

// WaitIdle waits until no request is being handled, or ctx is done, and
// then returns ctx's error. Call Drain first, so that new requests are
// refused at once and the count can reach zero.
//
// Requests still arrive after Drain (each gets its 503), so the count may
// rise from zero while WaitIdle waits; a sync.WaitGroup forbids exactly
// that (Add from zero concurrent with Wait). Any moment at zero means every
// request that was in flight when WaitIdle was called has ended.
func (s *Server) WaitIdle(ctx context.Context) error {
	return s.inFlight.wait(ctx)
}

// requests counts the requests being handled. enter and leave run on every
// request and never allocate; only wait makes the channel leave closes.
type requests struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // made by wait while n > 0; closed by the leave that brings n to 0
}

func (r *requests) enter() {
	r.mu.Lock()
	r.n++
	r.mu.Unlock()
}

func (r *requests) leave() {
	r.mu.Lock()
	r.n--
	if r.n == 0 && r.idle != nil {
		close(r.idle)
		r.idle = nil
	}
	r.mu.Unlock()
}

// wait returns nil once n is zero, or ctx's error if ctx ends first.
func (r *requests) wait(ctx context.Context) error {
	r.mu.Lock()
	if r.n == 0 {
		r.mu.Unlock()
		return nil
	}
	if r.idle == nil {
		r.idle = make(chan struct{})
	}
	idle := r.idle
	r.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
