package infer

import (
	"context"
	"errors"
	"time"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/pooling"
	"go.opentelemetry.io/otel/trace"
)

// Embed tokenizes, admits, batches, runs and pools req's inputs. It returns
// a *gateway.Error for anything the client should see.
func (e *Engine) Embed(ctx context.Context, req *gateway.EmbedRequest) (*gateway.EmbedResult, error) {
	start := time.Now()
	if err := e.checkRequest(req); err != nil {
		return nil, err
	}
	prompt, err := e.prompt(req.PromptName)
	if err != nil {
		return nil, err
	}
	// Admission comes before tokenization: under overload, tokenizing
	// requests only to refuse them took a quarter of the CPU from the
	// admitted ones (measured with embedbench at 10× overload).
	if !e.gate.TryEnter() {
		return nil, e.refuseConcurrency()
	}
	defer e.gate.Done()
	if err := e.backlogFull(ctx); err != nil {
		return nil, err
	}
	_, tspan := e.opts.Tracer.Start(ctx, spanTokenize)
	encs, err := e.encode(ctx, req, prompt)
	endTokenize(tspan, encs, err)
	if err != nil {
		return nil, err
	}
	tokenized := time.Now()
	e.m.tokenization.Observe(tokenized.Sub(start).Seconds())
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
	res := &gateway.EmbedResult{}
	for i, enc := range encs {
		items[i] = &entry{ids: enc.ids, typeIDs: enc.typeIDs, ctx: ctx, req: p, index: i, enqueued: tokenized}
		res.Usage.PromptTokens += len(enc.ids)
		res.Usage.Characters += enc.chars
	}
	// The span starts where Timings.Queue does, at tokenization's end: the
	// token charge and admission count as waiting too.
	_, qspan := e.opts.Tracer.Start(ctx, spanQueue, trace.WithTimestamp(tokenized))
	defer endQueue(qspan, p, tokenized)
	e.queue.Push(items...) // counted in the backlog by enqueueable
	pushed = true

	select {
	case <-p.done:
	case <-ctx.Done():
		return nil, gateway.ContextError(ctx.Err())
	}
	if p.err != nil {
		return nil, asClientError(p.err)
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
	return res, nil
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
