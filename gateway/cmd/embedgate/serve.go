package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/auth"
	"github.com/embedgate/embedgate/gateway/backend/onnx"
	"github.com/embedgate/embedgate/gateway/backend/triton"
	"github.com/embedgate/embedgate/gateway/config"
	"github.com/embedgate/embedgate/gateway/hfmodel"
	"github.com/embedgate/embedgate/gateway/infer"
	"github.com/embedgate/embedgate/gateway/pooling"
	"github.com/embedgate/embedgate/gateway/ratelimit"
	"github.com/embedgate/embedgate/gateway/server"
	"github.com/embedgate/embedgate/gateway/tokenizer"
	"github.com/embedgate/embedgate/gateway/tracing"
)

// serve loads the model, starts the pipeline and the HTTP server, and on
// ctx's end drains: /ready turns 503, in-flight requests finish, then the
// batch loop stops and the backend closes. The SIGHUPs run receives come
// in on reload.
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

	tp, prop, flushSpans, err := tracing.New(ctx, tracing.Options{Endpoint: cfg.OTLPEndpoint, ServiceName: cfg.OTLPServiceName,
		ServiceVersion: version, Disabled: cfg.DisableSpans}, logger)
	if err != nil {
		return err
	}
	// Deferred first, so it runs last: after the HTTP drain and the batch
	// loop, once every span has ended. Its own deadline, since ctx is done.
	defer func() {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := flushSpans(fctx); err != nil {
			logger.Warn("spans not flushed", "err", err)
		}
	}()
	tracer := tp.Tracer(tracing.Scope, trace.WithInstrumentationVersion(version))

	start := time.Now()
	dir, err := hfmodel.Resolve(ctx, cfg.ModelID, cfg.Revision, cfg.Backend == "onnx", cfg.DType, getenv, stderr)
	if err != nil {
		return err
	}
	model, err := hfmodel.Open(dir)
	if err != nil {
		return err
	}
	if err := config.CheckModel(cfg, model.MaxInputLength); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	method, err := poolingMethod(cfg.Pooling, model.Pooling)
	if err != nil {
		return err
	}
	tok, err := tokenizer.LoadFile(model.TokenizerPath)
	if err != nil {
		return err
	}

	backend, inflight, closeBackend, err := openBackend(ctx, cfg, model, logger, tracing.InjectFunc(prop))
	if err != nil {
		return err
	}
	defer closeBackend()
	logger.Info("model loaded", "model", cfg.ModelID, "dir", dir, "backend", cfg.Backend, "pooling", method.String(),
		"max_input_length", model.MaxInputLength, "hidden", backend.Spec().Hidden, "took", time.Since(start).Round(time.Millisecond))

	eng, err := infer.New(infer.Options{
		ModelID:           cfg.ModelID,
		Revision:          hubRevision(cfg, dir),
		BackendName:       cfg.Backend,
		Version:           version,
		Pooling:           method,
		MaxInputLength:    model.MaxInputLength,
		MaxConcurrent:     cfg.MaxConcurrentRequests,
		MaxBatchTokens:    cfg.MaxBatchTokens,
		MaxBatchRequests:  cfg.MaxBatchRequests,
		MaxClientBatch:    cfg.MaxClientBatchSize,
		MaxInflight:       inflight,
		DefaultTruncate:   cfg.AutoTruncate,
		Workers:           cfg.TokenizationWorkers,
		Prompts:           model.Prompts,
		DefaultPromptName: firstNonEmpty(cfg.DefaultPromptName, model.DefaultPromptName),
		DefaultPrompt:     cfg.DefaultPrompt,
		Tracer:            tracer,
		Calibrate:         true,
	}, tok, backend, logger, reg)
	if err != nil {
		return err
	}

	mw, keys, closeLimiter, err := guards(cfg, logger, reg, tracer)
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
	srv, err := server.New(server.Options{BodyLimit: cfg.PayloadLimit, RequestTimeout: cfg.RequestTimeout,
		Tracer: tracer, Propagator: prop, Pprof: pprofPublic}, logger, eng, reg, mw)
	if err != nil {
		return err
	}
	rawLn, err := net.Listen("tcp", net.JoinHostPort(cfg.Hostname, strconv.Itoa(cfg.Port)))
	if err != nil {
		return err
	}
	ln := newTrackingListener(rawLn)

	// The batch loop outlives SIGTERM: it stops only after the HTTP server
	// has drained, so accepted requests are answered.
	engCtx, stopEngine := context.WithCancel(context.WithoutCancel(ctx))
	defer stopEngine()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return eng.Run(engCtx) })
	g.Go(func() error { return srv.App().Listener(ln) })
	if cfg.MetricsPort != 0 {
		rawMln, err := net.Listen("tcp", net.JoinHostPort(cfg.Hostname, strconv.Itoa(cfg.MetricsPort)))
		if err != nil {
			_ = ln.Close()
			return err
		}
		mln := newTrackingListener(rawMln)
		metricsApp := server.NewAdmin(reg, cfg.Pprof)
		g.Go(func() error { return metricsApp.Listener(mln) })
		g.Go(func() error { <-gctx.Done(); return shutdown(metricsApp, mln, time.Second) })
	}
	g.Go(func() error { return reloadKeys(gctx, reload, keys, cfg.APIKeysFile, logger) })
	g.Go(func() error {
		<-gctx.Done()
		defer stopEngine()
		logger.Info("draining", "grace", cfg.ShutdownGrace)
		srv.Drain()
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownGrace)
		defer cancel()
		_ = srv.WaitIdle(wctx) // past the grace period, shutdown's own timeout ends what is left
		deadline, _ := wctx.Deadline()
		return shutdown(srv.App(), ln, max(time.Until(deadline), time.Second))
	})
	logger.Info("listening", "addr", ln.Addr().String())
	if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	logger.Info("stopped")
	return nil
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	if cfg.JSONOutput {
		return slog.New(slog.NewJSONHandler(w, nil))
	}
	return slog.New(slog.NewTextHandler(w, nil))
}

// openBackend opens the configured backend and says how many batches may
// run on it at once.
// propagate puts the inference span's trace context on each Triton call.
func openBackend(ctx context.Context, cfg *config.Config, model *hfmodel.Model, logger *slog.Logger,
	propagate func(ctx context.Context, set func(key, value string))) (infer.Backend, int, func(), error) {
	switch cfg.Backend {
	case "onnx":
		path, err := model.ONNXPath(cfg.DType)
		if err != nil {
			return nil, 0, nil, err
		}
		lib := cfg.ORTLib
		if lib == "" {
			lib = "libonnxruntime.so.1" // found by the dynamic linker's search path
		}
		b, err := onnx.Open(onnx.Options{LibraryPath: lib, ModelPath: path, IntraOpThreads: cfg.IntraOpThreads, Logger: logger})
		if err != nil {
			return nil, 0, nil, err
		}
		// One batch at a time: ONNX Runtime already uses every intra-op
		// thread for it, and a second would only contend.
		return b, 1, func() { _ = b.Close() }, nil
	case "triton":
		b, err := triton.Open(ctx, triton.Options{
			URL:              cfg.TritonURL,
			Model:            cfg.TritonModelName(),
			Timeout:          cfg.TritonTimeout,
			MaxInflight:      cfg.TritonMaxInflight,
			MaxInflightBytes: int64(cfg.TritonMaxInflightMB) << 20,
			Logger:           logger,
			Propagate:        propagate,
		})
		if err != nil {
			return nil, 0, nil, err
		}
		if err := checkTritonModel(b.Spec(), model); err != nil {
			_ = b.Close()
			return nil, 0, nil, err
		}
		// Triton runs several batches at once (instances, its own queue);
		// the backend bounds its calls with the same number.
		return b, cfg.TritonMaxInflight, func() { _ = b.Close() }, nil
	}
	return nil, 0, nil, fmt.Errorf("unknown backend %q", cfg.Backend)
}

// guards builds the auth and rate-limit middlewares. Without keys, limits
// apply per client IP.
func guards(cfg *config.Config, logger *slog.Logger, reg prometheus.Registerer, tracer trace.Tracer) (server.Middlewares, *auth.Keys, func(), error) {
	var mw server.Middlewares
	var keys *auth.Keys
	var err error
	switch {
	case cfg.APIKeysFile != "":
		keys, err = auth.FromFile(cfg.APIKeysFile)
	case cfg.APIKey != "":
		keys, err = auth.FromSingle(cfg.APIKey)
	}
	if err != nil {
		return mw, nil, nil, err
	}
	if keys != nil {
		mw.Auth = auth.Require(keys, logger)
	}

	var lim ratelimit.Limiter
	closeLimiter := func() {}
	if cfg.RedisURL != "" {
		r, err := ratelimit.NewRedis(cfg.RedisURL, ratelimit.RedisOptions{FailClosed: !cfg.RateLimitFailOpen}, logger, reg)
		if err != nil {
			return mw, nil, nil, err
		}
		lim, closeLimiter = r, func() { _ = r.Close() }
	} else {
		lim = ratelimit.NewMemory(ratelimit.MemoryOptions{})
	}
	byIP := ratelimit.ByClientIP(cfg.TrustProxyHeaders)
	subject := func(c *fiber.Ctx) (string, ratelimit.Limit) {
		if k, ok := auth.KeyFrom(c); ok {
			return "key:" + k.Name, ratelimit.Limit{RPS: k.RPS, Burst: k.Burst, TPM: k.TPM}
		}
		return byIP(c)
	}
	mw.RateLimit = ratelimit.Middleware(lim, ratelimit.Limit{RPS: cfg.RateLimitRPS, Burst: cfg.RateLimitBurst, TPM: cfg.RateLimitTPM}, subject,
		ratelimit.WithTracer(tracer))
	mw.ChargeTokens = ratelimit.ChargeTokens
	return mw, keys, closeLimiter, nil
}

func poolingMethod(flag, fromModel string) (pooling.Method, error) {
	name := firstNonEmpty(flag, fromModel)
	if name == "" {
		return 0, errors.New("the model does not say how to pool (no 1_Pooling/config.json): set --pooling to cls, mean or last-token")
	}
	return pooling.ParseMethod(name)
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// checkTritonModel compares what Triton serves with the model files the
// gateway tokenizes for: a mismatch would give plausible, wrong vectors.
func checkTritonModel(spec gateway.ModelSpec, model *hfmodel.Model) error {
	var problems []error
	if model.HiddenSize > 0 && spec.Hidden != model.HiddenSize {
		problems = append(problems, fmt.Errorf("triton model %q outputs %d dimensions but %s says hidden_size %d: --triton-model and --model-id must be the same model", spec.Name, spec.Hidden, model.Dir, model.HiddenSize))
	}
	if spec.VocabSize > 0 && model.VocabSize > 0 && spec.VocabSize != model.VocabSize {
		problems = append(problems, fmt.Errorf("triton model %q has a vocabulary of %d but %s says %d", spec.Name, spec.VocabSize, model.Dir, model.VocabSize))
	}
	return errors.Join(problems...)
}

// hubRevision is the revision /info reports: the hub commit the snapshot
// came from, or none for a local directory (a branch name would mislead).
func hubRevision(cfg *config.Config, dir string) string {
	if filepath.Clean(dir) == filepath.Clean(cfg.ModelID) {
		return ""
	}
	// The hub cache keeps each snapshot under snapshots/<commit>.
	if parent := filepath.Base(filepath.Dir(dir)); parent == "snapshots" {
		return filepath.Base(dir)
	}
	return cfg.Revision
}

// shutdown stops app once no request is in flight: fasthttp closes the
// listener and idle connections, and the connections it would wait for
// (opened, never used) are closed here until it returns.
func shutdown(app *fiber.App, ln *trackingListener, timeout time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- app.ShutdownWithTimeout(timeout) }()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-tick.C:
			ln.CloseConns()
		}
	}
}

// reloadKeys handles the SIGHUPs run passes on until ctx ends: each
// reloads the keys file when one is configured, and is logged otherwise.
// Either way the gateway keeps serving.
func reloadKeys(ctx context.Context, reload <-chan os.Signal, keys *auth.Keys, path string, logger *slog.Logger) error {
	if keys != nil && path != "" {
		return keys.Run(ctx, reload, path, logger)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-reload:
			logger.Info("SIGHUP: nothing to reload")
		}
	}
}
