package infer

import (
	"context"
	"errors"
	"time"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/pooling"
	"go.opentelemetry.io/otel/trace"
)

// Embed tokenizes, admits, batches, runs and pools req's inputs, in steps:
// check → admit → encode → enqueue → wait. It returns a *gateway.Error for
// anything the client should see.
func (e *Engine) Embed(ctx context.Context, req *gateway.EmbedRequest) (*gateway.EmbedResult, error) {
	start := time.Now()
	if err := e.enterCall(); err != nil {
		return nil, err
	}
	defer e.active.leave()
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
	p, err := e.enqueue(ctx, req, encs, tokenized)
	if err != nil {
		return nil, err
	}
	if err := e.wait(ctx, p, tokenized); err != nil {
		return nil, err
	}
	return embedResult(req, encs, p, start, tokenized), nil
}

// enqueue counts encs into the backlog, charges their tokens to the client
// and queues them for batches. A request refused on the way, or whose
// charge fails or panics, leaves nothing counted in the backlog.
func (e *Engine) enqueue(ctx context.Context, req *gateway.EmbedRequest, encs []encoded, tokenized time.Time) (*pending, error) {
	tokens := 0
	for _, enc := range encs {
		tokens += len(enc.ids)
	}
	// The backlog decides before the token charge: a request refused
	// for lack of time should not cost its client tokens per minute.
	if err := e.enqueueable(ctx, tokens); err != nil {
		return nil, err
	}
	pushed := false
	defer func() {
		if !pushed { // refused by the charge, or it panicked
			e.backlog.Remove(tokens)
		}
	}()
	if req.Charge != nil {
		if err := req.Charge(ctx, tokens); err != nil {
			return nil, err
		}
	}
	p := newPending(len(encs))
	items := make([]*entry, len(encs))
	for i, enc := range encs {
		items[i] = &entry{ids: enc.ids, typeIDs: enc.typeIDs, ctx: ctx, req: p, index: i, enqueued: tokenized}
	}
	e.queue.Push(items...) // counted in the backlog by enqueueable
	pushed = true
	return p, nil
}

// wait returns once every input of p is answered, one failed, or ctx
// ended, in the queue span. The span starts where Timings.Queue does, at
// tokenization's end (its timestamp, not the moment of this call): the
// token charge and admission count as waiting too.
func (e *Engine) wait(ctx context.Context, p *pending, tokenized time.Time) error {
	_, qspan := e.opts.Tracer.Start(ctx, spanQueue, trace.WithTimestamp(tokenized))
	defer endQueue(qspan, p, tokenized)
	select {
	case <-p.done:
	case <-ctx.Done():
		return gateway.ContextError(ctx.Err())
	}
	if p.err != nil {
		return asClientError(p.err)
	}
	return nil
}

// embedResult shapes p's vectors as req asks and adds usage and timings.
func embedResult(req *gateway.EmbedRequest, encs []encoded, p *pending, start, tokenized time.Time) *gateway.EmbedResult {
	res := &gateway.EmbedResult{}
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
