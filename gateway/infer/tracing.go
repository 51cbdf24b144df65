package infer

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/embedgate/embedgate/gateway"
)

// Span names, children of the caller's span (the server's request span).
const (
	spanTokenize  = "tokenize"
	spanQueue     = "queue"
	spanInference = "inference"
)

// endTokenize finishes the tokenize span with the request's size; never
// its text.
func endTokenize(span trace.Span, encs []encoded, err error) {
	if err != nil {
		span.SetStatus(codes.Error, gateway.KindOf(err).String())
	} else {
		tokens := 0
		for _, enc := range encs {
			tokens += len(enc.ids)
		}
		span.SetAttributes(attribute.Int("embedgate.inputs", len(encs)), attribute.Int("embedgate.tokens", tokens))
	}
	span.End()
}

// endQueue finishes the queue span when the request's last input left the
// queue for its batch, the moment Timings.Queue measures to. The batch
// loop only notes that moment in pending; the span ends here, on the
// request's goroutine, so no span crosses goroutines.
func endQueue(span trace.Span, p *pending, enqueued time.Time) {
	wait, began := p.queued()
	if !began {
		span.SetStatus(codes.Error, "left the queue before a batch took it")
		span.End()
		return
	}
	span.End(trace.WithTimestamp(enqueued.Add(wait)))
}

// startInference starts the inference spans of a batch and returns the
// context for the backend call and the function that ends them.
//
// A batch serves several requests, and the choice here is one inference
// span per request, each the child of that request's own span, rather
// than one batch span linked to every request: with links only, each
// request's trace would show a gap where its inference ran, and that is
// the trace an operator opens. The backend call is one call, though, and
// carries one trace context: the first request's span carries it (its
// context goes to the backend, and to Triton as traceparent), the other
// requests' spans link to that span, and it links back to them, so Triton's
// spans are reachable from every request's trace. All of them share the
// batch's attributes (id, rows, padded tokens).
func (e *Engine) startInference(ctx context.Context, b *gateway.Batch, items []*entry, start time.Time) (context.Context, func(error)) {
	rows := make(map[*pending]int, len(items))
	firsts := make([]*entry, 0, len(items)) // each request's first input, in batch order
	for _, it := range items {
		if rows[it.req] == 0 {
			firsts = append(firsts, it)
		}
		rows[it.req]++
	}
	batch := trace.WithAttributes(
		attribute.String("embedgate.batch.id", b.ID),
		attribute.Int("embedgate.batch.rows", b.Rows),
		attribute.Int("embedgate.batch.len", b.Len),
		attribute.Int("embedgate.batch.padded_tokens", b.Rows*b.Len),
		attribute.Int("embedgate.batch.requests", len(firsts)),
	)
	spans := make([]trace.Span, len(firsts))
	for i, it := range firsts {
		opts := []trace.SpanStartOption{trace.WithTimestamp(start), batch,
			trace.WithAttributes(attribute.Int("embedgate.batch.request_rows", rows[it.req]))}
		if i > 0 {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: spans[0].SpanContext()}))
		}
		_, spans[i] = e.opts.Tracer.Start(it.ctx, spanInference, opts...)
	}
	for _, s := range spans[1:] {
		spans[0].AddLink(trace.Link{SpanContext: s.SpanContext()})
	}
	end := func(err error) {
		for _, s := range spans {
			if err != nil {
				s.RecordError(err)
				s.SetStatus(codes.Error, gateway.KindOf(err).String())
			}
			s.End()
		}
	}
	if len(spans) == 0 {
		return ctx, end
	}
	return trace.ContextWithSpan(ctx, spans[0]), end
}
