package tracing_test

import (
	"context"
	"errors"
	"github.com/embedgate/embedgate/gateway/internal/testenv"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"

	"github.com/embedgate/embedgate/gateway/tracing"
)

// receiver is an in-process OTLP collector: it records every Export.
type receiver struct {
	coltracepb.UnimplementedTraceServiceServer
	mu   sync.Mutex
	reqs []*coltracepb.ExportTraceServiceRequest
}

func (r *receiver) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reqs = append(r.reqs, req)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (r *receiver) requests() []*coltracepb.ExportTraceServiceRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*coltracepb.ExportTraceServiceRequest(nil), r.reqs...)
}

// startReceiver serves a receiver on a loopback port until the test ends.
func startReceiver(t *testing.T) (*receiver, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{}
	gs := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(gs, r)
	done := make(chan error, 1)
	go func() { done <- gs.Serve(lis) }()
	t.Cleanup(func() {
		gs.Stop()
		if err := <-done; err != nil {
			t.Errorf("receiver: %v", err)
		}
	})
	return r, lis.Addr().String()
}

func TestExportsToOTLPReceiver(t *testing.T) {
	for _, form := range []string{"host:port", "http://host:port"} {
		t.Run(form, func(t *testing.T) {
			r, addr := startReceiver(t)
			endpoint := addr
			if strings.HasPrefix(form, "http://") {
				endpoint = "http://" + addr
			}
			ctx := context.Background()
			tp, _, shutdown, err := tracing.New(ctx, tracing.Options{Endpoint: endpoint, ServiceName: "s3-embedding.server", ServiceVersion: "test"}, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			_, span := tp.Tracer(tracing.Scope).Start(ctx, "inference")
			span.End()
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := shutdown(sctx); err != nil {
				t.Fatalf("shutdown: %v", err)
			}
			var names, services []string
			for _, req := range r.requests() {
				for _, rs := range req.GetResourceSpans() {
					for _, kv := range rs.GetResource().GetAttributes() {
						if kv.GetKey() == "service.name" {
							services = append(services, kv.GetValue().GetStringValue())
						}
					}
					for _, ss := range rs.GetScopeSpans() {
						for _, s := range ss.GetSpans() {
							names = append(names, s.GetName())
						}
					}
				}
			}
			if len(names) != 1 || names[0] != "inference" {
				t.Errorf("receiver got spans %q, want [inference]", names)
			}
			if len(services) == 0 || services[0] != "s3-embedding.server" {
				t.Errorf("service.name = %q, want s3-embedding.server", services)
			}
		})
	}
}

func TestNoopWithoutEndpointOrDisabled(t *testing.T) {
	for _, opts := range []tracing.Options{
		{ServiceName: "x"},
		{Endpoint: "127.0.0.1:4317", Disabled: true},
		{Exporter: tracetest.NewInMemoryExporter(), Disabled: true},
	} {
		tp, prop, shutdown, err := tracing.New(context.Background(), opts, nil)
		if err != nil {
			t.Fatalf("New(%+v): %v", opts, err)
		}
		_, span := tp.Tracer(tracing.Scope).Start(context.Background(), "x")
		if span.IsRecording() {
			t.Errorf("New(%+v): span is recording, want a no-op provider", opts)
		}
		span.End()
		if err := shutdown(context.Background()); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		// Pass-through: a client's trace context still reaches Triton.
		if f := prop.Fields(); len(f) == 0 || f[0] != "traceparent" {
			t.Errorf("propagator fields = %q, want traceparent first", f)
		}
	}
}

func TestBadEndpoint(t *testing.T) {
	for _, ep := range []string{"localhost", "ftp://collector:4317", "http://", "http://a b:1"} {
		if _, _, _, err := tracing.New(context.Background(), tracing.Options{Endpoint: ep}, nil); err == nil {
			t.Errorf("New(endpoint %q) = nil error, want one", ep)
		}
	}
}

// failingExporter fails until ok is set.
type failingExporter struct {
	mu sync.Mutex
	ok bool
}

func (f *failingExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ok {
		return nil
	}
	return errors.New("connection refused")
}

func (f *failingExporter) Shutdown(context.Context) error { return nil }

func TestExportFailuresLoggedOnce(t *testing.T) {
	var logs testenv.LogBuffer
	exp := &failingExporter{}
	tp, _, shutdown, err := tracing.New(context.Background(), tracing.Options{Exporter: exp}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	flusher := tp.(interface{ ForceFlush(context.Context) error })
	for range 3 {
		_, span := tp.Tracer(tracing.Scope).Start(context.Background(), "x")
		span.End()
		if err := flusher.ForceFlush(context.Background()); err != nil {
			t.Fatalf("ForceFlush: %v", err)
		}
	}
	exp.mu.Lock()
	exp.ok = true
	exp.mu.Unlock()
	_, span := tp.Tracer(tracing.Scope).Start(context.Background(), "x")
	span.End()
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if n := strings.Count(out, "cannot export spans"); n != 1 {
		t.Errorf("%d export warnings, want 1:\n%s", n, out)
	}
	if !strings.Contains(out, "exporting spans again") {
		t.Errorf("no recovery line:\n%s", out)
	}
}

func TestInjectFunc(t *testing.T) {
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer(tracing.Scope).Start(context.Background(), "inference")
	defer span.End()
	got := map[string]string{}
	tracing.InjectFunc(propagation.TraceContext{})(ctx, func(k, v string) { got[k] = v })
	sc := span.SpanContext()
	want := "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-01"
	if got["traceparent"] != want {
		t.Errorf("traceparent = %q, want %q", got["traceparent"], want)
	}
	// No span in ctx: nothing to send.
	got = map[string]string{}
	tracing.InjectFunc(propagation.TraceContext{})(trace.ContextWithSpanContext(context.Background(), trace.SpanContext{}), func(k, v string) { got[k] = v })
	if len(got) != 0 {
		t.Errorf("injected %v without a span", got)
	}
}
