package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/embedgate/embedgate/gateway/admit"
	"github.com/embedgate/embedgate/gateway/backend/triton"
	"github.com/embedgate/embedgate/gateway/catalog"
	"github.com/embedgate/embedgate/gateway/config"
	"github.com/embedgate/embedgate/gateway/fleet"
	"github.com/embedgate/embedgate/gateway/hfmodel"
	"github.com/embedgate/embedgate/gateway/infer"
)

// pipelines opens a model's pipeline from its catalogue entry: files,
// tokenizer, backend and engine (fleet.Opener). Every model shares the
// process-wide admission gate and registry; models on one Triton address
// share one client: its connections and its in-flight budget.
type pipelines struct {
	cfg       *config.Config
	getenv    func(string) string
	stderr    io.Writer
	logger    *slog.Logger
	reg       prometheus.Registerer
	tracer    trace.Tracer
	propagate func(ctx context.Context, set func(key, value string))
	gate      *admit.Gate
	cache     infer.Cache // nil = no cache

	mu      sync.Mutex
	clients map[string]*sharedClient // by address
}

// withDefaults fills what e leaves to the gateway's flags.
func withDefaults(e catalog.Entry, cfg *config.Config) catalog.Entry {
	e.Backend = firstNonEmpty(e.Backend, cfg.Backend)
	if e.Backend == "triton" {
		e.TritonURL = firstNonEmpty(e.TritonURL, cfg.TritonURL)
		e.TritonModel = firstNonEmpty(e.TritonModel, e.Name)
	}
	if e.MaxBatchTokens == 0 {
		e.MaxBatchTokens = cfg.MaxBatchTokens
	}
	if e.MaxBatchRequests == 0 {
		e.MaxBatchRequests = cfg.MaxBatchRequests
	}
	return e
}

// open is the fleet's Opener.
func (p *pipelines) open(ctx context.Context, entry catalog.Entry) (*fleet.Pipeline, error) {
	e := withDefaults(entry, p.cfg)
	start := time.Now()
	model, err := openModel(ctx, e, p.cfg.DType, p.getenv, p.stderr)
	if err != nil {
		return nil, err
	}
	logger := p.logger.With("model", e.Name)
	backend, inflight, closeBackend, err := p.openBackend(ctx, e, model, logger)
	if err != nil {
		return nil, err
	}
	// The task too, so a dashboard can tell embedding from reranking
	// series without knowing every model.
	reg := prometheus.WrapRegistererWith(prometheus.Labels{"model": e.Name, "task": model.task}, p.reg)
	opts, err := p.engineOptions(e, model, inflight)
	if err != nil {
		closeBackend()
		return nil, err
	}
	if e.Backend == "triton" {
		logTritonWorstBatch(logger, backend.Spec().MaxBatch, opts.MaxInputLength, opts.MaxBatchTokens)
	}
	// The engine names the model in its log lines itself.
	eng, err := infer.New(opts, model.tok, backend, p.logger, reg)
	if err != nil {
		closeBackend()
		return nil, err
	}
	logger.Info("model loaded", "model_id", e.ModelID, "dir", model.dir, "task", model.task, "backend", e.Backend, "pooling", poolingName(model),
		"max_input_length", model.MaxInputLength, "hidden", backend.Spec().Hidden, "took", time.Since(start).Round(time.Millisecond))
	// The fleet compares the entry as the catalogue gave it, defaults
	// unfilled, with the next catalogue's.
	return &fleet.Pipeline{Engine: eng, Entry: entry, Close: closeBackend}, nil
}

// openBackend opens e's backend and says how many batches may run on it at
// once.
func (p *pipelines) openBackend(ctx context.Context, e catalog.Entry, model *openedModel, logger *slog.Logger) (infer.Backend, int, func(), error) {
	switch e.Backend {
	case "onnx":
		path, err := model.onnxPath(e, p.cfg.DType)
		if err != nil {
			return nil, 0, nil, err
		}
		b, err := openONNX(p.cfg, path, logger)
		if err != nil {
			return nil, 0, nil, err
		}
		// One batch at a time: ONNX Runtime already uses every intra-op
		// thread for it, and a second would only contend.
		return b, 1, func() { _ = b.Close() }, nil
	case "triton":
		b, inflight, closeBackend, err := p.openTriton(ctx, e, logger)
		if err != nil {
			return nil, 0, nil, err
		}
		if err := checkTritonModel(b.Spec(), model); err != nil {
			closeBackend()
			return nil, 0, nil, err
		}
		return b, inflight, closeBackend, nil
	}
	return nil, 0, nil, fmt.Errorf("unknown backend %q", e.Backend)
}

// openTriton opens e's model on its Triton address: one replica, or a
// list or DNS name balanced over. It says how many batches may run at once
// (Triton runs several: instances, its own queue; each replica's client
// bounds the calls of every model on it together).
func (p *pipelines) openTriton(ctx context.Context, e catalog.Entry, logger *slog.Logger) (infer.Backend, int, func(), error) {
	target, err := triton.ParseTarget(e.TritonURL)
	if err != nil {
		return nil, 0, nil, err
	}
	open := func(ctx context.Context, addr string) (*triton.Backend, func(), error) {
		client, release, err := p.client(ctx, addr)
		if err != nil {
			return nil, nil, err
		}
		b, err := client.Open(ctx, e.TritonModel, "")
		if err != nil {
			release()
			return nil, nil, err
		}
		return b, release, nil
	}
	if !target.Dynamic() && len(target.Addrs) == 1 {
		b, release, err := open(ctx, target.Addrs[0])
		if err != nil {
			return nil, 0, nil, err
		}
		return b, p.cfg.TritonMaxInflight, func() { _ = b.Close(); release() }, nil
	}
	r, err := triton.OpenReplicas(ctx, triton.ReplicaOptions{Target: target, Model: e.TritonModel, Open: open,
		ResolveInterval: p.cfg.TritonResolveInterval, MaxInflight: p.cfg.TritonMaxInflight, Logger: logger})
	if err != nil {
		return nil, 0, nil, err
	}
	return r, r.MaxInflight(), func() { _ = r.Close() }, nil
}

// sharedClient is a Triton client and how many hold it.
type sharedClient struct {
	c    *triton.Client
	refs int
}

// client is the one Triton client of addr, dialled on first use, and its
// release: the last release closes it, since the replicas of a DNS name
// come and go and their clients must not pile up.
func (p *pipelines) client(ctx context.Context, addr string) (*triton.Client, func(), error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	sc, ok := p.clients[addr]
	if !ok {
		var md map[string]string
		if key, value := p.cfg.TritonRestricted(); key != "" {
			md = map[string]string{triton.RestrictedProtocolPrefix + key: value}
		}
		c, err := triton.Dial(ctx, triton.ClientOptions{
			URL:              addr,
			Timeout:          p.cfg.TritonTimeout,
			MaxInflight:      p.cfg.TritonMaxInflight,
			MaxInflightBytes: int64(p.cfg.TritonMaxInflightMB) << 20,
			Logger:           p.logger,
			Propagate:        p.propagate,
			Metadata:         md,
		})
		if err != nil {
			return nil, nil, err
		}
		if p.clients == nil {
			p.clients = map[string]*sharedClient{}
		}
		sc = &sharedClient{c: c}
		p.clients[addr] = sc
	}
	sc.refs++
	var once sync.Once
	release := func() { once.Do(func() { p.release(addr, sc) }) }
	return sc.c, release, nil
}

// release gives back one hold of addr's client sc, closing it with the last.
func (p *pipelines) release(addr string, sc *sharedClient) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if sc.refs--; sc.refs > 0 || p.clients[addr] != sc {
		return
	}
	delete(p.clients, addr)
	if err := sc.c.Close(); err != nil {
		p.logger.Warn("triton client not closed cleanly", "addr", addr, "err", err)
	}
}

// close closes the Triton clients still held, once every model is closed.
func (p *pipelines) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for _, sc := range p.clients {
		errs = append(errs, sc.c.Close())
	}
	p.clients = nil
	if err := errors.Join(errs...); err != nil {
		p.logger.Warn("triton clients not closed cleanly", "err", err)
	}
}

// engineOptions are the options of e's engine: the gateway's flags, e's
// batch limits and what its model files say. A reranker's engine gets no
// pooling, prompts or cache: it scores pairs, and the cache holds vectors.
func (p *pipelines) engineOptions(e catalog.Entry, model *openedModel, inflight int) (infer.Options, error) {
	callTimeout := time.Duration(0) // an in-process backend has none
	if e.Backend == "triton" {
		// Triton's own queue counts against the call's deadline.
		callTimeout = p.cfg.TritonTimeout
	}
	opts := infer.Options{
		Name:             e.Name,
		Aliases:          e.Aliases,
		ModelID:          e.ModelID,
		Revision:         hubRevision(e.ModelID, e.Revision, model.dir),
		BackendName:      e.Backend,
		Version:          version,
		Task:             model.task,
		MaxInputLength:   model.MaxInputLength,
		Gate:             p.gate,
		MaxConcurrent:    p.cfg.MaxConcurrentRequests,
		MaxBatchTokens:   e.MaxBatchTokens,
		MaxBatchRequests: e.MaxBatchRequests,
		MaxClientBatch:   p.cfg.MaxClientBatchSize,
		MaxInflight:      inflight,
		CallTimeout:      callTimeout,
		DefaultTruncate:  p.cfg.AutoTruncate,
		Workers:          p.cfg.TokenizationWorkers,
		Tracer:           p.tracer,
		Calibrate:        true,
	}
	if model.task == hfmodel.TaskRerank {
		if p.defaultPrompt(e) != "" {
			return infer.Options{}, errors.New("--default-prompt is for embedding models: this model reranks")
		}
		return opts, nil
	}
	identity, err := p.cacheIdentity(e, model)
	if err != nil {
		return infer.Options{}, err
	}
	opts.Pooling = model.pooling
	opts.Prompts = model.Prompts
	opts.DefaultPromptName = firstNonEmpty(e.DefaultPromptName, model.DefaultPromptName)
	opts.DefaultPrompt = p.defaultPrompt(e)
	opts.Cache = p.cache
	opts.Identity = identity
	return opts, nil
}

// logTritonWorstBatch logs the most padded tokens one Triton batch of the
// model can hold. Triton's dynamic batcher merges queued requests whose
// [B, L] are equal, up to max_batch_size rows (core r25.06,
// src/dynamic_batch_scheduler.cc: HasEqualInputs), so gateway batches cut
// at the longest input, from this replica and others, become
// max_batch_size x max input length on the GPU, beyond --max-batch-tokens:
// the model's config.pbtxt must be sized and warmed for that.
// max_batch_size 0 turns Triton batching off: each call is one gateway
// batch, within --max-batch-tokens.
func logTritonWorstBatch(logger *slog.Logger, maxBatchSize, maxInputLength, maxBatchTokens int) {
	if maxBatchSize <= 0 {
		return
	}
	logger.Info("triton worst-case batch", "max_batch_size", maxBatchSize, "max_input_length", maxInputLength,
		"worst_batch_tokens", maxBatchSize*maxInputLength, "max_batch_tokens", maxBatchTokens)
}

// poolingName is how the log line names model's pooling: "none" for a
// reranker, which has none.
func poolingName(model *openedModel) string {
	if model.task == hfmodel.TaskRerank {
		return "none"
	}
	return model.pooling.String()
}

// defaultPrompt is --default-prompt's text for the one-model flags' entry:
// a prompt written for one model means nothing to another.
func (p *pipelines) defaultPrompt(e catalog.Entry) string {
	if flags, ok := p.cfg.FlagEntry(); ok && flags.Name == e.Name && e.Source == flags.Source {
		return p.cfg.DefaultPrompt
	}
	return ""
}
