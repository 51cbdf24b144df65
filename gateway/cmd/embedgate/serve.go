package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/embedgate/embedgate/gateway/auth"
	"github.com/embedgate/embedgate/gateway/config"
	"github.com/embedgate/embedgate/gateway/fleet"
	"github.com/embedgate/embedgate/gateway/infer"
	"github.com/embedgate/embedgate/gateway/ratelimit"
	"github.com/embedgate/embedgate/gateway/server"
	"github.com/embedgate/embedgate/gateway/tracing"
)

// serve runs the gateway until ctx ends, in named steps: open every model
// of the catalogue (files, backend, engine), build the guards and the HTTP
// apps, bind every listener, then run the actors (see runActors). Only the
// models run before the actors do (each engine calibrates its backend as
// it opens), and models.Close, deferred, stops them when a later step
// fails. What a step opens, a Close deferred right after it releases,
// after the actors have stopped. The SIGHUPs run receives come in on
// reload.
func serve(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer, reload <-chan os.Signal) error {
	cfg, err := config.Parse(args, getenv, stderr)
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	logger := newLogger(cfg, stderr)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	tracer, prop, flushSpans, err := newTracing(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer flushSpans() // deferred first, so it runs last: once every span has ended

	gate, err := infer.NewGate(cfg.MaxConcurrentRequests, reg)
	if err != nil {
		return err
	}
	embeddings, closeCache, err := openCache(cfg, logger, reg)
	if err != nil {
		return err
	}
	defer closeCache() // after the fleet's Close, deferred below: the engines' last writes drain
	pipes := &pipelines{cfg: cfg, getenv: getenv, stderr: stderr, logger: logger, reg: reg,
		tracer: tracer, propagate: tracing.InjectFunc(prop), gate: gate, cache: embeddings}
	defer pipes.close() // after the fleet's Close: the models use the Triton clients
	models := fleet.New(pipes.open, logger, fleet.Options{Lenient: cfg.OneModel(), RetireTimeout: cfg.RequestTimeout})
	defer models.Close()
	cat := newCatalogue(cfg, logger, models, pipes)
	if err := cat.start(ctx); err != nil {
		return err
	}

	keys, limiter, closeLimiter, err := guards(cfg, logger, reg)
	if err != nil {
		return err
	}
	defer closeLimiter()

	// With a metrics port, the profiler goes there, never on the public
	// listener; see server.MountPprof.
	pprofPublic := cfg.Pprof && cfg.MetricsPort == 0
	if pprofPublic && keys == nil {
		logger.Warn("--pprof serves /debug/pprof/ on the public port without an API key: enable it only on a trusted network, or set --metrics-port to move it there")
	}
	// fasthttp's ReadTimeout covers the headers and the body of a request:
	// it is also the read-header timeout, which bounds slowloris clients
	// that send their headers a byte at a time or stop halfway.
	srv, err := server.New(server.Options{BodyLimit: cfg.PayloadLimit, RequestTimeout: cfg.RequestTimeout,
		ReadTimeout: cfg.ReadTimeout, WriteTimeout: cfg.WriteTimeout, IdleTimeout: cfg.IdleTimeout,
		Tracer: tracer, Propagator: prop, Pprof: pprofPublic, MetricsElsewhere: cfg.MetricsPort != 0,
		RateLimit:         ratelimit.Limit{RPS: cfg.RateLimitRPS, Burst: cfg.RateLimitBurst, TPM: cfg.RateLimitTPM},
		TrustProxyHeaders: cfg.TrustProxyHeaders,
		Cache:             embeddings != nil, CachePerKey: cfg.CachePerKey(),
	}, logger, models, reg, keys, limiter)
	if err != nil {
		return err
	}
	var admin *fiber.App
	if cfg.MetricsPort != 0 {
		admin = server.NewAdmin(reg, server.AdminOptions{Pprof: cfg.Pprof,
			ReadTimeout: cfg.ReadTimeout, WriteTimeout: cfg.WriteTimeout, IdleTimeout: cfg.IdleTimeout})
	}

	guard, err := newConnGuard(cfg.MaxConnections, logger, reg)
	if err != nil {
		return err
	}
	lns, err := listen(cfg, guard)
	if err != nil {
		return err
	}
	return runActors(ctx, cfg, logger, lns, srv, admin, models, cat, keys, reload)
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	if cfg.JSONOutput {
		return slog.New(slog.NewJSONHandler(w, nil))
	}
	return slog.New(slog.NewTextHandler(w, nil))
}

// newTracing makes the tracer and the propagator of trace context, and a
// func that flushes the spans still buffered: under its own deadline, as it
// runs once ctx is done.
func newTracing(ctx context.Context, cfg *config.Config, logger *slog.Logger) (trace.Tracer, propagation.TextMapPropagator, func(), error) {
	tp, prop, flush, err := tracing.New(ctx, tracing.Options{Endpoint: cfg.OTLPEndpoint, ServiceName: cfg.OTLPServiceName,
		ServiceVersion: version, Disabled: cfg.DisableSpans}, logger)
	if err != nil {
		return nil, nil, nil, err
	}
	flushSpans := func() {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := flush(fctx); err != nil {
			logger.Warn("spans not flushed", "err", err)
		}
	}
	return tp.Tracer(tracing.Scope, trace.WithInstrumentationVersion(version)), prop, flushSpans, nil
}

// guards opens the API keys and the rate limiter. Without keys, limits
// apply per client IP.
func guards(cfg *config.Config, logger *slog.Logger, reg prometheus.Registerer) (*auth.Keys, server.Limiter, func(), error) {
	var keys *auth.Keys
	var err error
	switch {
	case cfg.APIKeysFile != "":
		keys, err = auth.FromFile(cfg.APIKeysFile)
	case cfg.APIKey != "":
		keys, err = auth.FromSingle(cfg.APIKey)
	}
	if err != nil {
		return nil, nil, nil, err
	}
	if cfg.RedisURL == "" {
		return keys, ratelimit.NewMemory(ratelimit.MemoryOptions{}), func() {}, nil
	}
	ratelimit.LogRedisThrough(logger)
	r, err := ratelimit.NewRedis(cfg.RedisURL, ratelimit.RedisOptions{FailClosed: !cfg.RateLimitFailOpen}, logger, reg)
	if err != nil {
		return nil, nil, nil, err
	}
	return keys, r, func() { _ = r.Close() }, nil
}
