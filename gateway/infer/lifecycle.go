package infer

import (
	"context"
	"sync"

	"github.com/embedgate/embedgate/gateway"
)

// The states Info reports.
const (
	stateLoading   = "loading"   // Run has not started serving (it calibrates first)
	stateReady     = "ready"     // serving
	stateUnhealthy = "unhealthy" // the backend is down or stalled, or Run has ended
	stateDraining  = "draining"  // Quiesce was called: the model is being removed
)

// Quiesce stops the engine taking requests, for a model being removed:
// from its call on, Embed, Rerank and Tokenize answer 503
// (gateway.Unhealthy). It returns nil once every call already inside has
// returned, or ctx's error first. The requests inside are served as usual: their inputs queued
// are batched and answered, so Run must keep running until Quiesce has
// returned; the caller then cancels Run's ctx and calls Close.
func (e *Engine) Quiesce(ctx context.Context) error {
	select {
	case <-e.active.drain():
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close gives back every metric the engine and its batch queue
// registered, so that an engine of the same model can register in its
// place (a model reloaded). Call it once the engine serves no more (after
// Quiesce, or once Run has returned); later calls do nothing.
func (e *Engine) Close() {
	e.closing.Do(e.m.unregister)
}

// state is Info's State.
func (e *Engine) state() string {
	switch {
	case e.active.isDraining():
		return stateDraining
	case !e.started.Load():
		return stateLoading
	case !e.Ready():
		return stateUnhealthy
	default:
		return stateReady
	}
}

// enterCall counts an Embed, Rerank or Tokenize call in, or refuses it once the
// engine is draining. A nil must be paired with e.active.leave.
func (e *Engine) enterCall() error {
	if !e.active.enter() {
		return e.removing()
	}
	return nil
}

// removing is the answer of a request to a draining engine: 503, as for
// a backend that is down, so that a client retries (by then another
// engine may serve the name).
func (e *Engine) removing() error {
	return gateway.Errorf(gateway.Unhealthy, "", "model %s is being removed", e.displayName())
}

// displayName names the model in errors: its served name, else where it
// came from.
func (e *Engine) displayName() string {
	if e.opts.Name != "" {
		return e.opts.Name
	}
	return e.opts.ModelID
}

// tracker counts the calls inside the engine and, once draining, refuses
// new ones and tells when the last one left. One mutex orders enter
// against drain: a call that enters as draining starts is either counted
// before it (and waited for) or refused, never missed.
type tracker struct {
	mu       sync.Mutex
	inside   int
	draining bool
	idle     chan struct{} // closed once draining and nothing is inside
}

func newTracker() *tracker { return &tracker{idle: make(chan struct{})} }

// enter counts a call in; false once draining.
func (t *tracker) enter() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.draining {
		return false
	}
	t.inside++
	return true
}

// leave counts out a call that entered.
func (t *tracker) leave() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.inside--
	if t.draining && t.inside == 0 {
		close(t.idle)
	}
}

// drain refuses every later enter and returns a channel closed once no
// call is inside. Calling it again returns the same channel.
func (t *tracker) drain() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.draining {
		t.draining = true
		if t.inside == 0 {
			close(t.idle)
		}
	}
	return t.idle
}

func (t *tracker) isDraining() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.draining
}
