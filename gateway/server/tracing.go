package server

import (
	"strings"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/embedgate/embedgate/gateway"
)

// traceRequest starts the request span of an API route: the first handler
// of every guarded route, so auth and rate-limit refusals are traced too,
// while probes, /metrics and 404s make no spans. The client's W3C
// traceparent and tracestate make it a child of the caller's span. The
// span goes on c.UserContext(), where the rate limiter and the engine find
// their parent, and in the record: finish ends it once the status is
// written, since an error's status is only known after the ErrorHandler.
func (s *Server) traceRequest(c *fiber.Ctx) error {
	rec, ok := c.Locals(recordKey{}).(*record)
	if !ok {
		return c.Next() // observe always sets it; without it nothing would end the span
	}
	ctx := s.propagator.Extract(c.UserContext(), headerCarrier{&c.Request().Header})
	// c.Method() points into fasthttp's buffer, which the next request on
	// the connection overwrites; the span outlives this one.
	method, route := strings.Clone(c.Method()), c.Route().Path
	ctx, span := s.tracer.Start(ctx, method+" "+route,
		trace.WithSpanKind(trace.SpanKindServer),
		// OpenTelemetry's HTTP semantic conventions, spelled out: the
		// semconv packages change with every release.
		trace.WithAttributes(
			attribute.String("http.request.method", method),
			attribute.String("http.route", route),
			attribute.String("embedgate.request_id", rec.id),
		))
	rec.span = span
	c.SetUserContext(ctx)
	return c.Next()
}

// endSpan finishes the request span with what the log line says: status,
// inputs, tokens, model and key name, never input text or the key itself.
func endSpan(rec *record, status int) {
	if rec.span == nil {
		return
	}
	span := rec.span
	attrs := make([]attribute.KeyValue, 0, 6)
	attrs = append(attrs, attribute.Int("http.response.status_code", status))
	if rec.inputs > 0 {
		attrs = append(attrs, attribute.Int("embedgate.inputs", rec.inputs), attribute.Int("embedgate.tokens", rec.tokens))
	}
	if rec.model != "" {
		attrs = append(attrs, attribute.String("embedgate.model", rec.model))
	}
	if rec.key != nil {
		attrs = append(attrs, attribute.String("embedgate.key_name", rec.key.Name))
	}
	if rec.err != nil {
		attrs = append(attrs, attribute.String("error.type", gateway.KindOf(rec.err).String()))
	}
	span.SetAttributes(attrs...)
	// A server span is in error only for 5xx: a 4xx is the client's.
	if status >= 500 {
		msg := "server error"
		if rec.err != nil {
			msg = rec.err.Error()
		}
		span.SetStatus(codes.Error, msg)
	}
	span.End()
}

// headerCarrier reads the request headers for the propagator. Get copies:
// fasthttp reuses the header buffers after the request.
type headerCarrier struct{ h *fasthttp.RequestHeader }

func (hc headerCarrier) Get(key string) string { return string(hc.h.Peek(key)) }

// Set does nothing: the server only extracts, and the request's headers
// are the client's.
func (headerCarrier) Set(string, string) {}

func (hc headerCarrier) Keys() []string {
	var keys []string
	hc.h.VisitAll(func(k, _ []byte) { keys = append(keys, string(k)) })
	return keys
}
