package infer

import (
	"context"
	"fmt"
	"time"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/admit"
	"github.com/prometheus/client_golang/prometheus"
)

// queueShare is the part of a request's time left that waiting in the
// queue may take. The rest is for its own batch and for the estimate's
// error (measured with embedbench at 256 clients: with 0.8, a tenth of the
// requests admitted still ended 504). The batcher holds the queue to the
// same share as time passes: inputs that came later pass a request only
// within it (batcher's waitShare). Half the deadline is still seconds of
// queued work on any backend, far more than batches need to stay full.
const queueShare = 0.5

// NewGate makes the admission gate that the engines of several models
// share (Options.Gate), so --max-concurrent-requests bounds the process,
// not each model, and registers its metrics on reg (none when reg is
// nil): once, without a model label, since no model owns it.
func NewGate(maxConcurrent int, reg prometheus.Registerer) (*admit.Gate, error) {
	gate := admit.New(maxConcurrent)
	if err := register(reg, gateCollectors(gate)); err != nil {
		return nil, fmt.Errorf("infer: gate: %w", err)
	}
	return gate, nil
}

// admit takes a place at the gate or refuses the request at once: 429 when
// every place is taken or the queue has no time even for the smallest
// request, 504 when its deadline has passed. A nil must be paired with
// e.gate.Done.
//
// Admission comes before tokenization: under overload, tokenizing
// requests only to refuse them took a quarter of the CPU from the
// admitted ones (measured with embedbench at 10× overload).
func (e *Engine) admit(ctx context.Context) error {
	if err := e.enter(); err != nil {
		return err
	}
	if err := e.backlogFull(ctx); err != nil {
		e.gate.Done()
		return err
	}
	return nil
}

// enter takes a place at the gate or refuses the request with 429 at
// once. Tokenize takes only this: its work never reaches the backend, so
// the backlog has nothing to say about it. A nil must be paired with
// e.gate.Done.
func (e *Engine) enter() error {
	if !e.gate.TryEnter() {
		return e.refuseConcurrency()
	}
	return nil
}

// enqueueable counts tokens into the backlog, or refuses them with 429 if
// the work queued ahead would make them miss the request's deadline (see
// admit.Backlog).
func (e *Engine) enqueueable(ctx context.Context, tokens int) error {
	if err := ctx.Err(); err != nil {
		return gateway.ContextError(err) // too late is a 504, not a reason to retry
	}
	if tokens == 0 {
		return nil // nothing queues (every input was cached): the backlog has no say
	}
	if ok, retry := e.backlog.TryAdd(tokens, timeLeft(ctx)); !ok {
		return e.refuseBacklog(retry)
	}
	return nil
}

// Busy says whether a request would be refused now, by either limit,
// without reserving anything: a caller can refuse before decoding it.
// Whatever it says, Embed checks again.
func (e *Engine) Busy(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return gateway.ContextError(err)
	}
	if e.active.isDraining() {
		return e.removing()
	}
	if e.gate.InFlight() >= e.gate.Capacity() {
		return e.refuseConcurrency()
	}
	return e.backlogFull(ctx)
}

// backlogFull refuses a request that no room in the queue could take now:
// 504 once its deadline has passed, else 429 if even the smallest request
// would wait past it.
func (e *Engine) backlogFull(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return gateway.ContextError(err)
	}
	if full, retry := e.backlog.Full(timeLeft(ctx)); full {
		return e.refuseBacklog(retry)
	}
	return nil
}

func (e *Engine) refuseConcurrency() error {
	e.m.overloaded.WithLabelValues(reasonConcurrency).Inc()
	return &gateway.Error{Kind: gateway.Overloaded, Msg: "the gateway is at its limit of concurrent requests; retry later", RetryAfter: time.Second}
}

// refuseBacklog is the 429 of a request the queue has no time for. The
// Retry-After is at least a second, as for a full gateway: every client
// refused in the same instant hears about the same wait, and a shorter
// one brings them all back together to be refused again.
func (e *Engine) refuseBacklog(retry time.Duration) error {
	e.m.overloaded.WithLabelValues(reasonBacklog).Inc()
	return &gateway.Error{
		Kind:       gateway.Overloaded,
		Msg:        "the queue holds more work than this request's deadline leaves time for; retry later",
		RetryAfter: min(max(retry, time.Second), 30*time.Second),
	}
}

// timeLeft is what remains of ctx's deadline; 0 = none.
func timeLeft(ctx context.Context) time.Duration {
	d, ok := ctx.Deadline()
	if !ok {
		return 0
	}
	return max(time.Until(d), time.Nanosecond)
}
