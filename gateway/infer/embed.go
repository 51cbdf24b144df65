package infer

import (
	"context"
	"errors"
	"time"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/pooling"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// Embed tokenizes, admits, batches, runs and pools req's inputs, in steps:
// check → admit → encode → look up → enqueue → wait → store. Inputs found
// in the cache skip the queue (a request whose inputs all hit never
// touches it); the others are batched and, once pooled, stored. It
// returns a *gateway.Error for anything the client should see.
func (e *Engine) Embed(ctx context.Context, req *gateway.EmbedRequest) (*gateway.EmbedResult, error) {
	start := time.Now()
	if err := e.enterCall(); err != nil {
		return nil, err
	}
	defer e.active.leave()
	if e.opts.Task != gateway.TaskEmbed {
		return nil, gateway.WrongTaskError(e.displayName(), e.opts.Task)
	}
	if err := e.checkRequest(req); err != nil {
		return nil, err
	}
	prompt, err := e.prompt(req.PromptName)
	if err != nil {
		return nil, err
	}
	if err := e.admit(ctx); err != nil {
		return nil, err
	}
	defer e.gate.Done()
	encs, err := e.encode(ctx, req, prompt)
	if err != nil {
		return nil, err
	}
	tokenized := time.Now()
	e.m.tokenization.Observe(tokenized.Sub(start).Seconds())
	f := e.lookup(ctx, req, encs)
	p, err := e.enqueue(ctx, req.Charge, encs, f, tokenized)
	if err != nil {
		return nil, err
	}
	if err := e.wait(ctx, p, f, tokenized); err != nil {
		return nil, err
	}
	e.store(f, p)
	return embedResult(req, encs, p, f.hits, start, tokenized), nil
}

// enqueue charges every input's tokens to the client (charge, if set: a
// request's Charge), answers the inputs
// f found from the cache, and counts the others into the backlog and
// queues them for batches. A request refused on the way, or whose charge
// fails or panics, leaves nothing counted in the backlog.
//
// The charge counts the hits too: clients and token limits see the same
// numbers whether or not an input was cached. The backlog, which
// estimates the backend's work, counts only what goes to it.
func (e *Engine) enqueue(ctx context.Context, charge func(context.Context, int) error, encs []encoded, f found, tokenized time.Time) (*pending, error) {
	tokens, queued := 0, 0
	for i, enc := range encs {
		tokens += len(enc.ids)
		if !f.hit(i) {
			queued += len(enc.ids)
		}
	}
	// The backlog decides before the token charge: a request refused
	// for lack of time should not cost its client tokens per minute.
	if err := e.enqueueable(ctx, queued); err != nil {
		return nil, err
	}
	pushed := false
	defer func() {
		if !pushed { // refused by the charge, or it panicked
			e.backlog.Remove(queued)
		}
	}()
	if charge != nil {
		if err := charge(ctx, tokens); err != nil {
			return nil, err
		}
	}
	p := newPending(len(encs))
	items := make([]*entry, 0, len(encs)-f.hits)
	for i, enc := range encs {
		if f.hit(i) {
			p.cached(i, f.vecs[i], time.Since(tokenized))
			continue
		}
		items = append(items, &entry{ids: enc.ids, typeIDs: enc.typeIDs, ctx: ctx, req: p, index: i, enqueued: tokenized})
	}
	if len(items) > 0 {
		e.queue.Push(items...) // counted in the backlog by enqueueable
	}
	pushed = true
	return p, nil
}

// wait returns once every input of p is answered, one failed, or ctx
// ended, in the queue span. The span starts where Timings.Queue does, at
// tokenization's end (its timestamp, not the moment of this call): the
// cache lookup, the token charge and admission count as waiting too. It
// notes the inputs f found in the cache.
func (e *Engine) wait(ctx context.Context, p *pending, f found, tokenized time.Time) error {
	_, qspan := e.opts.Tracer.Start(ctx, spanQueue, trace.WithTimestamp(tokenized))
	if f.keys != nil {
		qspan.SetAttributes(attribute.Int("embedgate.cache.hits", f.hits))
	}
	defer endQueue(qspan, p, tokenized)
	select {
	case <-p.done: // answered already (every input hit): even if ctx just ended
	default:
		select {
		case <-p.done:
		case <-ctx.Done():
			return gateway.ContextError(ctx.Err())
		}
	}
	if p.err != nil {
		return asClientError(p.err)
	}
	return nil
}

// embedResult shapes p's vectors as req asks (those from the cache as
// the others, so a hit answers the same bytes) and adds usage, timings
// and the count of cached inputs.
func embedResult(req *gateway.EmbedRequest, encs []encoded, p *pending, cached int, start, tokenized time.Time) *gateway.EmbedResult {
	res := &gateway.EmbedResult{Cached: cached}
	for _, enc := range encs {
		res.Usage.PromptTokens += len(enc.ids)
		res.Usage.Characters += enc.chars
	}
	for i, v := range p.vecs {
		p.vecs[i] = pooling.Shape(v, req.Dimensions, req.Normalize)
	}
	res.Embeddings = p.vecs
	res.Timings = gateway.Timings{
		Tokenization: tokenized.Sub(start),
		Queue:        p.queueWait(),
		Total:        time.Since(start),
	}
	res.Timings.Inference = max(0, res.Timings.Total-res.Timings.Tokenization-res.Timings.Queue)
	return res
}

// asClientError keeps a *gateway.Error as it is and classifies the rest.
func asClientError(err error) error {
	var ge *gateway.Error
	if errors.As(err, &ge) {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return gateway.ContextError(err)
	}
	return &gateway.Error{Kind: gateway.Backend, Msg: "inference failed", Err: err}
}
