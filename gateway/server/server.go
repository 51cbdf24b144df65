// Package server is embedgate's HTTP front: a fiber app serving the native,
// TEI and OpenAI APIs over one *infer.Engine, with request ids, deadlines,
// per-request logs and metrics, draining, and the one ErrorHandler that
// maps gateway error kinds to statuses. Auth and rate limiting come in as
// fiber handlers. It imports the codecs (native, tei, openai), gateway,
// infer, and auth only for the key-name local.
package server

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/infer"
)

// Options configure the HTTP server.
type Options struct {
	// BodyLimit is the largest request body in bytes (--payload-limit);
	// larger bodies get 413.
	BodyLimit int
	// RequestTimeout is the whole-request deadline (--request-timeout).
	RequestTimeout time.Duration
	// ReadTimeout, WriteTimeout and IdleTimeout bound the connection; zero
	// means none (fasthttp's default).
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// Tracer makes the request span of every API route; nil = none.
	Tracer trace.Tracer
	// Propagator reads the client's trace context (W3C traceparent and
	// tracestate) so request spans join the caller's trace; nil = none.
	Propagator propagation.TextMapPropagator
	// Pprof mounts Go's profiler under /debug/pprof/ on this server, behind
	// Middlewares.Auth when set (see MountPprof). Trusted networks only.
	Pprof bool
}

// Middlewares are optional handlers run before every API route (not before
// /health, /ready, /metrics). A nil field is skipped. They report failures
// by returning a *gateway.Error (Unauthorized, RateLimited with
// RetryAfter), which the ErrorHandler writes in the route's shape. Auth may
// set c.Locals(auth.LocalKeyName, name) for the request log.
type Middlewares struct {
	Auth      fiber.Handler
	RateLimit fiber.Handler
	// ChargeTokens, when set, charges an embedding request's real token
	// count once it is tokenized, before admission (ratelimit.ChargeTokens);
	// an error (RateLimited) ends the request. The engine calls it inside
	// Embed, on the handler's goroutine, so c is still the live request.
	ChargeTokens func(ctx context.Context, c *fiber.Ctx, tokens int) error
}

// Codec is one API shape: native, TEI or OpenAI.
type Codec interface {
	// DecodeEmbed parses and validates a request body; errors are
	// *gateway.Error naming the field or input index.
	DecodeEmbed(body []byte, lim gateway.Limits) (*gateway.EmbedRequest, error)
	// AppendEmbed appends the 200 body for res to dst.
	AppendEmbed(dst []byte, res *gateway.EmbedResult, req *gateway.EmbedRequest, model string) ([]byte, error)
	// ErrorBody is the JSON error body of the shape.
	ErrorBody(e *gateway.Error) []byte
}

// engine is what the server uses of *infer.Engine. It exists so that the
// server's tests can drive every error path with a fake; production always
// passes the one *infer.Engine.
type engine interface {
	// Busy says, reserving nothing, whether a request would now be
	// refused as Overloaded; Embed decides for real.
	Busy(ctx context.Context) error
	Embed(ctx context.Context, req *gateway.EmbedRequest) (*gateway.EmbedResult, error)
	Tokenize(ctx context.Context, req *gateway.TokenizeRequest) ([][]gateway.Token, error)
	Limits() gateway.Limits
	Info() gateway.Info
	Health(ctx context.Context) error
	Ready() bool
}

// Server is the HTTP front. Serve it with App().Listener(ln) (or Listen);
// on SIGTERM call Drain, then App().ShutdownWithTimeout(grace).
type Server struct {
	app      *fiber.App
	opts     Options
	logger   *slog.Logger
	eng      engine
	charge   func(ctx context.Context, c *fiber.Ctx, tokens int) error
	metrics  *metrics
	draining atomic.Bool
	inFlight requests // requests being handled, for WaitIdle
	// tracer and propagator are Options' or no-ops.
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
	// bufs holds response buffers: embeddings are encoded into one, which
	// is copied into the response, so it goes back as the handler returns.
	bufs sync.Pool
}

// New builds the fiber app with every route and registers the HTTP metrics
// on reg. It starts nothing.
func New(opts Options, logger *slog.Logger, eng *infer.Engine, reg *prometheus.Registry, mw Middlewares) (*Server, error) {
	if eng == nil {
		return nil, errors.New("server: nil engine")
	}
	return newServer(opts, logger, eng, reg, mw)
}

func newServer(opts Options, logger *slog.Logger, eng engine, reg *prometheus.Registry, mw Middlewares) (*Server, error) {
	switch {
	case logger == nil:
		return nil, errors.New("server: nil logger")
	case reg == nil:
		return nil, errors.New("server: nil registry")
	case opts.BodyLimit <= 0:
		return nil, errors.New("server: body limit must be positive")
	case opts.RequestTimeout <= 0:
		return nil, errors.New("server: request timeout must be positive")
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	s := &Server{opts: opts, logger: logger, eng: eng, charge: mw.ChargeTokens, metrics: m,
		tracer: opts.Tracer, propagator: opts.Propagator}
	if s.tracer == nil {
		s.tracer = noop.Tracer{}
	}
	if s.propagator == nil {
		s.propagator = propagation.NewCompositeTextMapPropagator() // extracts nothing
	}
	s.bufs.New = func() any { b := make([]byte, 0, 16<<10); return &b }
	s.app = fiber.New(fiber.Config{
		BodyLimit:             opts.BodyLimit,
		ReadTimeout:           opts.ReadTimeout,
		WriteTimeout:          opts.WriteTimeout,
		IdleTimeout:           opts.IdleTimeout,
		ErrorHandler:          s.errorHandler,
		DisableStartupMessage: true,
	})
	addRoutes(s.app, s, reg, mw)
	return s, nil
}

// App is the fiber app: Listener(ln) to serve, ShutdownWithTimeout to stop.
// app.Test works on it too.
func (s *Server) App() *fiber.App { return s.app }

// Drain makes /ready answer 503 and new embedding and tokenize requests 503
// Unhealthy, so a load balancer moves traffic away before shutdown.
// Requests already in the engine finish.
func (s *Server) Drain() { s.draining.Store(true) }
