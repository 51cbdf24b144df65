package infer

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/embedgate/embedgate/gateway"
)

// ctxBackend records the span context each batch call carries.
type ctxBackend struct {
	*fakeBackend
	mu  sync.Mutex
	got []trace.SpanContext
}

func (b *ctxBackend) Embed(ctx context.Context, batch *gateway.Batch) (*gateway.Output, error) {
	b.mu.Lock()
	b.got = append(b.got, trace.SpanContextFromContext(ctx))
	b.mu.Unlock()
	return b.fakeBackend.Embed(ctx, batch)
}

func newRecorder() (*tracetest.SpanRecorder, trace.Tracer) {
	rec := tracetest.NewSpanRecorder()
	return rec, sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)).Tracer("test")
}

func named(spans []sdktrace.ReadOnlySpan, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

// TestBatchSpans sends two requests that share one batch: each gets its
// own inference span under its own parent, one of them carries the
// backend call, and the two are linked both ways.
func TestBatchSpans(t *testing.T) {
	rec, tracer := newRecorder()
	be := &ctxBackend{fakeBackend: &fakeBackend{hidden: 8, gate: make(chan struct{})}}
	opts := defaultOptions()
	opts.Tracer = tracer
	eng := startEngine(t, opts, be)

	embed := func(parent trace.Span) <-chan error {
		errc := make(chan error, 1)
		go func() {
			_, err := eng.Embed(trace.ContextWithSpan(context.Background(), parent), &gateway.EmbedRequest{Inputs: texts("hello there"), Truncate: true})
			errc <- err
		}()
		return errc
	}
	_, blocker := tracer.Start(context.Background(), "blocker")
	first := embed(blocker) // its batch holds the backend until the gate opens
	for be.calls.Load() == 0 {
		runtime.Gosched()
	}
	_, a := tracer.Start(context.Background(), "request a")
	_, b := tracer.Start(context.Background(), "request b")
	ea, eb := embed(a), embed(b)
	for eng.queue.Len() < 2 {
		runtime.Gosched()
	}
	close(be.gate)
	for _, errc := range []<-chan error{first, ea, eb} {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}

	inf := named(rec.Ended(), "inference")
	if len(inf) != 3 {
		t.Fatalf("inference spans = %d, want 3 (one per request)", len(inf))
	}
	byParent := map[trace.SpanID]sdktrace.ReadOnlySpan{}
	for _, s := range inf {
		byParent[s.Parent().SpanID()] = s
	}
	sa, sb := byParent[a.SpanContext().SpanID()], byParent[b.SpanContext().SpanID()]
	if sa == nil || sb == nil {
		t.Fatalf("inference spans are not children of their requests' spans")
	}
	batchID := func(s sdktrace.ReadOnlySpan) string {
		for _, kv := range s.Attributes() {
			if kv.Key == "embedgate.batch.id" {
				return kv.Value.AsString()
			}
		}
		return ""
	}
	if batchID(sa) == "" || batchID(sa) != batchID(sb) {
		t.Errorf("batch ids %q and %q, want the same one", batchID(sa), batchID(sb))
	}
	be.mu.Lock()
	carried := be.got[len(be.got)-1]
	be.mu.Unlock()
	carrier, other := sa, sb
	if carried.SpanID() == sb.SpanContext().SpanID() {
		carrier, other = sb, sa
	}
	if carried.SpanID() != carrier.SpanContext().SpanID() {
		t.Fatalf("the backend call carried span %s, neither request's inference span", carried.SpanID())
	}
	if l := other.Links(); len(l) != 1 || l[0].SpanContext.SpanID() != carrier.SpanContext().SpanID() {
		t.Errorf("the other request's span links to %v, want the carrier", l)
	}
	if l := carrier.Links(); len(l) != 1 || l[0].SpanContext.SpanID() != other.SpanContext().SpanID() {
		t.Errorf("the carrier links to %v, want the other request's span", l)
	}
}

// TestQueueSpanOfAbandonedRequest: a request whose deadline passes in the
// queue still ends its queue span, as an error.
func TestQueueSpanOfAbandonedRequest(t *testing.T) {
	rec, tracer := newRecorder()
	be := &fakeBackend{hidden: 8, gate: make(chan struct{})}
	opts := defaultOptions()
	opts.Tracer = tracer
	eng := startEngine(t, opts, be)
	t.Cleanup(func() { close(be.gate) })
	go func() { _, _ = eng.Embed(context.Background(), &gateway.EmbedRequest{Inputs: texts("blocker")}) }()
	for be.calls.Load() == 0 {
		runtime.Gosched()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := eng.Embed(ctx, &gateway.EmbedRequest{Inputs: texts("late")})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Embed = %v, want deadline exceeded", err)
	}
	q := named(rec.Ended(), "queue")
	if len(q) != 1 || q[0].Status().Code.String() != "Error" {
		t.Fatalf("queue spans = %d (%v), want 1 in error", len(q), q)
	}
	if tk := named(rec.Ended(), "tokenize"); len(tk) != 2 {
		t.Errorf("tokenize spans = %d, want 2", len(tk))
	}
}
