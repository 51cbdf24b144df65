// Package tracing builds embedgate's OpenTelemetry tracer provider (OTLP
// over gRPC) and W3C trace-context propagator. It installs nothing
// globally: New returns them and the caller passes them to the packages
// that make spans (server, infer, ratelimit) and to the Triton backend's
// Propagate hook (InjectFunc).
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Scope is the instrumentation scope of every embedgate span: callers get
// their tracer with provider.Tracer(tracing.Scope).
const Scope = "github.com/embedgate/embedgate"

// Options configure New.
type Options struct {
	// Endpoint is the OTLP gRPC collector (--otlp-endpoint): "host:port"
	// (plaintext, the usual local collector or sidecar), "http://host:port"
	// (plaintext) or "https://host:port" (TLS). Empty means no traces.
	Endpoint string
	// ServiceName is the service.name resource attribute (--otlp-service-name).
	ServiceName string
	// ServiceVersion, if set, is the service.version resource attribute.
	ServiceVersion string
	// Disabled (--disable-spans) turns spans off even with an Endpoint.
	Disabled bool
	// Exporter, if set, replaces the OTLP exporter and Endpoint is not
	// needed: tests pass an in-memory exporter to see exactly what New's
	// provider would have sent.
	Exporter sdktrace.SpanExporter
}

// New returns the tracer provider, the propagator and a shutdown that
// flushes the spans still buffered. With no endpoint (and no Exporter), or
// Disabled, the provider is a no-op: it records nothing and costs almost
// nothing.
//
// The propagator is W3C trace context in every case. With a no-op
// provider, a client's traceparent still passes through the gateway to
// Triton unchanged (the no-op tracer carries the remote span context
// forward), so Triton's own spans join the client's trace.
//
// Nothing connects here: the exporter dials lazily and retries, so a
// collector that is down costs spans, never startup or requests. Export
// failures are logged on logger (once per outage), not on OpenTelemetry's
// global error handler.
func New(ctx context.Context, opts Options, logger *slog.Logger) (trace.TracerProvider, propagation.TextMapPropagator, func(context.Context) error, error) {
	prop := propagation.TraceContext{}
	noShutdown := func(context.Context) error { return nil }
	if opts.Disabled || (opts.Endpoint == "" && opts.Exporter == nil) {
		return noop.NewTracerProvider(), prop, noShutdown, nil
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	exp := opts.Exporter
	if exp == nil {
		grpcOpts, err := endpointOptions(opts.Endpoint)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("tracing: --otlp-endpoint %q: %w", opts.Endpoint, err)
		}
		exp, err = otlptracegrpc.New(ctx, grpcOpts...)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("tracing: otlp exporter: %w", err)
		}
	}
	attrs := []attribute.KeyValue{attribute.String("service.name", opts.ServiceName)}
	if opts.ServiceVersion != "" {
		attrs = append(attrs, attribute.String("service.version", opts.ServiceVersion))
	}
	tp := sdktrace.NewTracerProvider(
		// Schemaless and without resource.Default(): no semconv schema to
		// conflict with, and no OTEL_RESOURCE_ATTRIBUTES read behind the
		// configuration's back.
		sdktrace.WithResource(resource.NewSchemaless(attrs...)),
		// Batching keeps exports off the request path; ParentBased (the
		// SDK's default sampler) honours a client's sampled flag.
		sdktrace.WithBatcher(&loggingExporter{SpanExporter: exp, logger: logger, endpoint: opts.Endpoint}),
	)
	shutdown := func(ctx context.Context) error {
		if err := tp.Shutdown(ctx); err != nil {
			return fmt.Errorf("tracing: flush spans: %w", err)
		}
		return nil
	}
	logger.Info("tracing", "endpoint", opts.Endpoint, "service", opts.ServiceName)
	return tp, prop, shutdown, nil
}

// endpointOptions turns --otlp-endpoint into exporter options. The
// exporter's own WithEndpointURL silently falls back to localhost on a bad
// URL, so the endpoint is checked here and a typo fails startup instead.
func endpointOptions(endpoint string) ([]otlptracegrpc.Option, error) {
	if !strings.Contains(endpoint, "://") {
		if _, _, err := net.SplitHostPort(endpoint); err != nil {
			return nil, fmt.Errorf("want host:port, http://host:port or https://host:port: %w", err)
		}
		return []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(endpoint), otlptracegrpc.WithInsecure()}, nil
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, err
	}
	if u.Host == "" {
		return nil, errors.New("no host")
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "4317") // OTLP gRPC's registered port
	}
	switch u.Scheme {
	case "http":
		return []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(host), otlptracegrpc.WithInsecure()}, nil
	case "https":
		return []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(host)}, nil
	}
	return nil, fmt.Errorf("scheme %q: want http or https", u.Scheme)
}

// loggingExporter reports export failures on the gateway's logger, once
// when they start and once when exports work again, instead of letting
// the batch processor hand every failure to OpenTelemetry's global error
// handler (one line per batch, on the standard logger).
type loggingExporter struct {
	sdktrace.SpanExporter
	logger   *slog.Logger
	endpoint string
	failing  atomic.Bool
}

func (e *loggingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := e.SpanExporter.ExportSpans(ctx, spans)
	switch {
	case err != nil && !e.failing.Swap(true):
		e.logger.Warn("cannot export spans; dropping them until the collector answers", "endpoint", e.endpoint, "err", err)
	case err == nil && e.failing.Swap(false):
		e.logger.Info("exporting spans again", "endpoint", e.endpoint)
	}
	// The exporter already retried; the spans are dropped either way, and
	// the failure is logged above.
	return nil
}

// InjectFunc adapts p to the Triton backend's Propagate hook: the trace
// context of the call's ctx (the inference span) goes into the gRPC
// metadata as traceparent and tracestate.
func InjectFunc(p propagation.TextMapPropagator) func(ctx context.Context, set func(key, value string)) {
	return func(ctx context.Context, set func(key, value string)) {
		p.Inject(ctx, setCarrier(set))
	}
}

// setCarrier is a write-only TextMapCarrier: Inject only sets.
type setCarrier func(key, value string)

func (s setCarrier) Get(string) string     { return "" }
func (s setCarrier) Set(key, value string) { s(key, value) }
func (s setCarrier) Keys() []string        { return nil }
