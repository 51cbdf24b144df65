// Package server is embedgate's HTTP front: a fiber app serving the
// native, TEI, OpenAI and Cohere APIs over the fleet's models (one
// *infer.Engine each), to embed and to rerank, routing each request by its
// model field, with request ids, deadlines, API keys and their model
// access, rate limits, per-request logs and metrics, draining, and the one
// error writer, which renders every error in its route's dialect. It
// imports the codecs (native, tei, openai, cohere), gateway, fleet, auth
// (the key set) and ratelimit (the limits' types).
package server

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/auth"
	"github.com/embedgate/embedgate/gateway/fleet"
	"github.com/embedgate/embedgate/gateway/ratelimit"
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
	// the API key when keys are set (see MountPprof). Trusted networks only.
	Pprof bool
	// MetricsElsewhere leaves /metrics off this server: --metrics-port
	// serves it (NewAdmin), and the public port should not.
	MetricsElsewhere bool
	// RateLimit is every subject's limits unless its key has its own
	// (--rate-limit-rps, --rate-limit-burst, --rate-limit-tpm).
	RateLimit ratelimit.Limit
	// TrustProxyHeaders charges requests without a key to the last
	// X-Forwarded-For address instead of the peer's (--trust-proxy-headers).
	TrustProxyHeaders bool
	// Cache says the embedding cache is on (--cache, with a tier to keep
	// entries in): embedding responses say in x-embedgate-cache how it
	// served them, and request log lines count the inputs it served.
	Cache bool
	// CachePerKey scopes cache entries per API key (--cache-scope key): a
	// request with a key hits only what requests with that key stored.
	CachePerKey bool
}

// Codec is one embedding API's shape: native, TEI or OpenAI.
type Codec interface {
	dialect
	// DecodeEmbed parses a request body, checking the shape and types of
	// its fields; errors are *gateway.Error naming the field or input.
	DecodeEmbed(body []byte, lim gateway.Limits) (*gateway.EmbedRequest, error)
	// AppendEmbed appends the 200 body for res to dst.
	AppendEmbed(dst []byte, res *gateway.EmbedResult, req *gateway.EmbedRequest, model string) ([]byte, error)
}

// engine is what the server uses of *infer.Engine, one per served model.
// It exists so that the server's tests can drive every error path with a
// fake; production passes the fleet's engines.
type engine interface {
	// Busy says, reserving nothing, whether a request would now be
	// refused as Overloaded; Embed decides for real.
	Busy(ctx context.Context) error
	Embed(ctx context.Context, req *gateway.EmbedRequest) (*gateway.EmbedResult, error)
	Rerank(ctx context.Context, req *gateway.RerankRequest) (*gateway.RerankResult, error)
	Tokenize(ctx context.Context, req *gateway.TokenizeRequest) ([][]gateway.Token, error)
	Limits() gateway.Limits
	Info() gateway.Info
	Health(ctx context.Context) error
	Ready() bool
}

// Server is the HTTP front. Serve it with Serve(ln); on SIGTERM call
// Drain, WaitIdle (bounded by the grace), then App().ShutdownWithTimeout.
type Server struct {
	app      *fiber.App
	opts     Options
	logger   *slog.Logger
	models   catalog
	started  time.Time         // /v1/models' created
	keys     *auth.Keys        // nil: no API keys
	limiter  Limiter           // nil: no rate limits
	failures *ratelimit.Memory // failed authentications per client address
	metrics  *metrics
	draining atomic.Bool
	// live is every request's parent context; abort ends it (Abort).
	live     context.Context
	abort    context.CancelFunc
	inFlight requests // requests being handled, for WaitIdle
	// tracer and propagator are Options' or no-ops.
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
	// bufs holds response buffers: embeddings are encoded into one, which
	// is copied into the response, so it goes back as the handler returns.
	bufs sync.Pool
}

// New builds the fiber app with every route, serving models' models, and
// registers the HTTP metrics on reg. keys, when not nil, guard every API
// route; lim, when not nil, rate-limits them. It starts nothing.
func New(opts Options, logger *slog.Logger, models *fleet.Fleet, reg *prometheus.Registry, keys *auth.Keys, lim Limiter) (*Server, error) {
	if models == nil {
		return nil, errors.New("server: nil fleet")
	}
	return newServer(opts, logger, fleetCatalog{models}, reg, keys, lim)
}

func newServer(opts Options, logger *slog.Logger, models catalog, reg *prometheus.Registry, keys *auth.Keys, lim Limiter) (*Server, error) {
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
	s := &Server{opts: opts, logger: logger, models: models, started: time.Now(), keys: keys, limiter: lim, metrics: m,
		failures: ratelimit.NewMemory(ratelimit.MemoryOptions{}),
		tracer:   opts.Tracer, propagator: opts.Propagator}
	s.live, s.abort = context.WithCancel(context.Background())
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
	addRoutes(s.app, s, reg)
	s.app.Server().Handler = s.guardHTTP(s.app.Server().Handler)
	return s, nil
}

// Serve serves on ln until the app shuts down. Connections that are
// answered before their body was read linger on close (see lingerTime).
func (s *Server) Serve(ln net.Listener) error { return s.app.Listener(lingerListener{ln}) }

// App is the fiber app: Serve(ln) to serve, ShutdownWithTimeout to stop.
// app.Test works on it too.
func (s *Server) App() *fiber.App { return s.app }

// Abort ends every request still being handled: each is answered 503
// (its context is cancelled wherever it waits: admission, the queue, a
// Triton call). The drain calls it when the grace period is nearly over,
// so that no admitted request is dropped without an answer when the
// server shuts down.
func (s *Server) Abort() { s.abort() }

// Drain makes /ready answer 503 and new embedding and tokenize requests 503
// Unhealthy, so a load balancer moves traffic away before shutdown.
// Requests already in an engine finish.
func (s *Server) Drain() { s.draining.Store(true) }
