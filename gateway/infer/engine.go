package infer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/admit"
	"github.com/embedgate/embedgate/gateway/batcher"
	"github.com/embedgate/embedgate/gateway/pooling"
	"github.com/embedgate/embedgate/gateway/tokenizer"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Options configure one model's pipeline.
type Options struct {
	// Name is the served name (what a request's model matches), Aliases
	// its other names; both only describe the model (Info, logs).
	Name              string
	Aliases           []string
	ModelID, Revision string
	BackendName       string
	Version           string
	// Task is what the model does: gateway.TaskEmbed (Embed; "" means
	// it) or gateway.TaskRerank (Rerank, on a cross-encoder's logits).
	// The other call is refused with gateway.WrongTask.
	Task             string
	Pooling          pooling.Method // embed only
	MaxInputLength   int            // tokens, special tokens included
	MaxConcurrent    int            // requests in the pipeline at once; unused with Gate
	MaxBatchTokens   int            // padded tokens per backend batch
	MaxBatchRequests int            // rows per backend batch
	MaxClientBatch   int            // inputs per request
	MaxInflight      int            // backend batches running at once (1 for in-process backends)
	// CallTimeout is the backend's deadline for one call (Triton's
	// --triton-timeout), its own queue included; 0 = none. The work in
	// flight is kept within half of it (see room).
	CallTimeout       time.Duration
	DefaultTruncate   bool
	Workers           int // tokenization goroutines at once
	Prompts           map[string]string
	DefaultPromptName string
	DefaultPrompt     string        // explicit prompt text; wins over DefaultPromptName
	ProbeInterval     time.Duration // how often Run checks the backend; 0 = 1s
	// Calibrate makes Run measure the backend's rate before it serves
	// (two sample batches; see calibrate).
	Calibrate bool
	// Tracer makes the tokenize, queue and inference spans, children of
	// the span in Embed's ctx; nil = none.
	Tracer trace.Tracer
	// Gate is the admission gate the engine shares with the process's
	// other models (see NewGate); nil = a gate of its own, of
	// MaxConcurrent places, whose metrics the engine registers.
	Gate *admit.Gate
	// Cache holds pooled vectors per input, shared with the other models
	// (its keys name the model); nil = none. Embeddings only: a rerank
	// engine ignores it.
	Cache Cache
	// Identity names the model in the cache's keys: its name, the hub
	// commit or the local files' digest, and the backend (the caller
	// knows them); the engine adds the backend's model version and the
	// pooling. Required with Cache.
	Identity string
}

// Engine is one model's pipeline: tokenizer, admission gate, batch queue,
// backend and pooling. New starts nothing; Run drives the batch loop.
type Engine struct {
	opts    Options
	tok     *tokenizer.Tokenizer
	backend Backend
	spec    gateway.ModelSpec
	logger  *slog.Logger
	cacheID string // the model's identity in cache keys (cacheIdentity)

	gate    *admit.Gate
	backlog *admit.Backlog
	queue   *batcher.Queue[*entry]
	workers chan struct{} // tokenization slots
	running atomic.Bool
	started atomic.Bool // Run has begun serving (after calibration)
	serving chan struct{}
	serve   sync.Once   // closes serving
	healthy atomic.Bool // false after a batch found the backend down or stalled
	active  *tracker    // Embed, Rerank and Tokenize calls inside, for Quiesce
	flight  *inflight   // batches handed to the backend, for room
	batchID atomic.Uint64
	m       *metrics
	closing sync.Once
}

// New checks opts against the model and the backend and registers the
// pipeline's metrics on reg; Close gives them back. With several models,
// reg labels them by model (see newMetrics).
func New(opts Options, tok *tokenizer.Tokenizer, backend Backend, logger *slog.Logger, reg prometheus.Registerer) (*Engine, error) {
	if opts.Name != "" {
		logger = logger.With("model", opts.Name) // which of the models a line is about
	}
	opts.Aliases = slices.Clone(opts.Aliases)
	spec := backend.Spec()
	var problems []error
	// The one check of the batch budget against the model: it names the
	// flag, since only the operator can fix it.
	if opts.MaxInputLength < 1 {
		problems = append(problems, fmt.Errorf("the model's max input length is %d: it must be at least 1", opts.MaxInputLength))
	}
	if opts.MaxBatchTokens < opts.MaxInputLength {
		problems = append(problems, fmt.Errorf("--max-batch-tokens (%d) is smaller than the model's max input length (%d): an input of full length could never be batched; raise --max-batch-tokens", opts.MaxBatchTokens, opts.MaxInputLength))
	}
	if spec.MaxBatch > 0 && opts.MaxBatchRequests > spec.MaxBatch {
		logger.Warn("max batch requests lowered to the backend's max batch size", "requested", opts.MaxBatchRequests, "max_batch_size", spec.MaxBatch)
		opts.MaxBatchRequests = spec.MaxBatch
	}
	if spec.Hidden < 1 {
		problems = append(problems, fmt.Errorf("backend reports hidden size %d", spec.Hidden))
	}
	if spec.VocabSize > 0 && tok.VocabSize() > spec.VocabSize {
		problems = append(problems, fmt.Errorf("tokenizer has %d tokens but the model's vocabulary has %d: they do not belong together", tok.VocabSize(), spec.VocabSize))
	}
	if opts.DefaultPrompt == "" && opts.DefaultPromptName != "" {
		if _, ok := opts.Prompts[opts.DefaultPromptName]; !ok {
			problems = append(problems, fmt.Errorf("default prompt name %q is not one of the model's prompts (%s)", opts.DefaultPromptName, promptNames(opts.Prompts)))
		}
	}
	problems = append(problems, checkTask(&opts, spec)...)
	if opts.Cache != nil && opts.Identity == "" {
		// Without it, two models would share each other's vectors.
		problems = append(problems, errors.New("a cache needs the model's identity (Options.Identity)"))
	}
	opts.MaxConcurrent = max(opts.MaxConcurrent, 1)
	opts.MaxInflight = max(opts.MaxInflight, 1)
	opts.Workers = max(opts.Workers, 1)
	if opts.Tracer == nil {
		opts.Tracer = noop.Tracer{}
	}
	if opts.ProbeInterval <= 0 {
		opts.ProbeInterval = time.Second
	}
	padID, _ := tok.PadID()
	queue, err := batcher.New[*entry](batcher.Options{MaxTokens: opts.MaxBatchTokens, MaxRows: opts.MaxBatchRequests, PadID: padID})
	if err != nil {
		problems = append(problems, err)
	}
	if err := errors.Join(problems...); err != nil {
		return nil, fmt.Errorf("infer: %w", err)
	}
	gate := opts.Gate
	var own *admit.Gate // a gate of its own, whose metrics the engine registers
	if gate == nil {
		own = admit.New(opts.MaxConcurrent)
		gate = own
	}
	backlog := admit.NewBacklog(queueShare, 2*opts.MaxBatchTokens*opts.MaxInflight)
	m, err := newMetrics(reg, own, backlog, append(queue.Collectors(), backendCollectors(backend)...))
	if err != nil {
		return nil, fmt.Errorf("infer: %w", err)
	}
	return &Engine{
		opts:    opts,
		tok:     tok,
		backend: backend,
		spec:    spec,
		logger:  logger,
		cacheID: cacheIdentity(opts, spec),
		gate:    gate,
		backlog: backlog,
		queue:   queue,
		flight:  newInflight(),
		workers: make(chan struct{}, opts.Workers),
		active:  newTracker(),
		serving: make(chan struct{}),
		m:       m,
	}, nil
}

// Serving is closed once Run has calibrated the backend and begun
// serving: a model swapped in for another should not be before.
func (e *Engine) Serving() <-chan struct{} { return e.serving }

// Run drives the batch loop until ctx is done, then waits for the batches in
// flight. Inputs still queued then are answered Unhealthy, so no request hangs.
func (e *Engine) Run(ctx context.Context) error {
	if e.opts.Calibrate && ctx.Err() == nil {
		e.calibrate(ctx)
	}
	e.healthy.Store(true)
	e.running.Store(true)
	e.started.Store(true)
	e.serve.Do(func() { close(e.serving) })
	defer e.running.Store(false)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() { defer wg.Done(); e.probe(ctx) }()
	for {
		budget, err := e.room(ctx)
		if err != nil {
			e.failQueued()
			return nil
		}
		items, dropped, err := e.queue.NextWithin(ctx, budget)
		e.backlog.Remove(tokensOf(items) + tokensOf(dropped))
		for _, it := range dropped {
			it.req.fail(gateway.ContextError(it.ctx.Err()))
		}
		if err != nil || len(items) == 0 {
			continue // ctx is done (room returns its error), or only dropped inputs
		}
		padded := paddedOf(items)
		e.flight.add(padded)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer e.flight.done(padded)
			e.runBatch(ctx, items)
		}()
	}
}

func (e *Engine) failQueued() {
	for {
		items, dropped, err := e.queue.Next(closedContext{})
		if err != nil || len(items)+len(dropped) == 0 {
			return
		}
		e.backlog.Remove(tokensOf(items) + tokensOf(dropped))
		for _, it := range append(items, dropped...) {
			it.req.fail(gateway.Errorf(gateway.Unhealthy, "", "the gateway is shutting down"))
		}
	}
}

// closedContext is a done context that still lets Next return what is queued.
type closedContext struct{ context.Context }

func (closedContext) Done() <-chan struct{} { return closed }
func (closedContext) Err() error            { return context.Canceled }

var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (e *Engine) runBatch(runCtx context.Context, items []*entry) {
	start := time.Now()
	// The batch may run as long as its longest-lived request still waits.
	var deadline time.Time
	for _, it := range items {
		if d, ok := it.ctx.Deadline(); !ok {
			deadline = time.Time{}
			break
		} else if d.After(deadline) {
			deadline = d
		}
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(runCtx))
	defer cancel()
	if !deadline.IsZero() {
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	abandoned, stopWatching := cancelWhenAbandoned(items, cancel)
	defer stopWatching()
	b := e.queue.Pad(items)
	b.ID = fmt.Sprintf("b%d", e.batchID.Add(1))
	for _, it := range items {
		it.req.started(start.Sub(it.enqueued))
		e.m.queue.Observe(start.Sub(it.enqueued).Seconds())
	}
	bctx, endSpans := e.startInference(ctx, b, items, start)
	measured := e.backlog.Start(tokensOf(items))
	out, err := e.backend.Embed(bctx, b)
	defer out.Free()
	elapsed := time.Since(start)
	e.m.inference.Observe(elapsed.Seconds())
	if err == nil {
		err = checkOutput(out, b, e.spec)
	}
	endSpans(err)
	if err != nil && abandoned() {
		measured(false)
		return // nobody waits for it: not the backend's failure
	}
	if err != nil {
		measured(false)
		kind := gateway.KindOf(err)
		if (kind == gateway.Timeout || kind == gateway.Unhealthy) && !errors.Is(err, gateway.ErrNotCalled) {
			e.healthy.Store(false) // the probe turns it back on
		}
		e.m.backendErrors.WithLabelValues(kind.String()).Inc()
		e.logger.Error("backend batch failed", "batch", b.ID, "rows", b.Rows, "len", b.Len, "err", err)
		for _, it := range items {
			it.req.fail(fmt.Errorf("infer: batch of %d rows: %w", b.Rows, err))
		}
		return
	}
	e.healthy.Store(true)
	measured(true)
	h := out.Hidden
	for r, it := range items {
		vec := make([]float32, h) // a vector, or a pair's logits
		if out.Kind != gateway.Hidden {
			copy(vec, out.Data[r*h:(r+1)*h])
		} else {
			l := out.Len
			pooling.Pool(vec, out.Data[r*l*h:(r+1)*l*h], b.AttentionMask[r*b.Len:(r+1)*b.Len], l, h, e.opts.Pooling)
		}
		it.req.set(it.index, vec)
	}
}

func checkOutput(out *gateway.Output, b *gateway.Batch, spec gateway.ModelSpec) error {
	want := b.Rows * out.Hidden
	if out.Kind == gateway.Hidden {
		want *= b.Len
		if out.Len != b.Len {
			return gateway.Errorf(gateway.Backend, "", "backend returned sequence length %d for a batch of length %d", out.Len, b.Len)
		}
	}
	if out.Rows != b.Rows || out.Hidden != spec.Hidden || len(out.Data) != want {
		return gateway.Errorf(gateway.Backend, "", "backend returned %d rows × %d dims (%d values) for %d rows × %d dims", out.Rows, out.Hidden, len(out.Data), b.Rows, spec.Hidden)
	}
	return nil
}

// Info describes the model and the pipeline. A reranker has no pooling
// and no dimensions.
func (e *Engine) Info() gateway.Info {
	info := gateway.Info{
		Name:             e.opts.Name,
		Aliases:          e.opts.Aliases,
		State:            e.state(),
		ModelID:          e.opts.ModelID,
		Revision:         e.opts.Revision,
		Pooling:          e.opts.Pooling.String(),
		Dimensions:       e.spec.Hidden,
		MaxInputLength:   e.opts.MaxInputLength,
		MaxBatchTokens:   e.opts.MaxBatchTokens,
		MaxBatchRequests: e.opts.MaxBatchRequests,
		MaxClientBatch:   e.opts.MaxClientBatch,
		MaxConcurrent:    e.gate.Capacity(),
		Backend:          e.opts.BackendName,
		Version:          e.opts.Version,
		Prompts:          e.opts.Prompts,
		DefaultPrompt:    e.opts.DefaultPromptName,
		Task:             e.opts.Task,
	}
	if e.opts.Task == gateway.TaskRerank {
		info.Pooling, info.Dimensions = "", 0
	}
	return info
}

// Health reports whether the backend answers.
func (e *Engine) Health(ctx context.Context) error { return e.backend.Health(ctx) }

// Ready reports whether the batch loop is running, the backend answered
// its last batch or probe and the engine is not being removed (Quiesce):
// a load balancer should send nothing while a stalled backend would only
// time requests out.
func (e *Engine) Ready() bool {
	return e.running.Load() && e.healthy.Load() && !e.active.isDraining()
}

// paddedOf is the tokens of items once padded to the longest.
func paddedOf(items []*entry) int {
	longest := 0
	for _, it := range items {
		longest = max(longest, len(it.ids))
	}
	return len(items) * longest
}

func tokensOf(items []*entry) int {
	n := 0
	for _, it := range items {
		n += len(it.ids)
	}
	return n
}

// cancelWhenAbandoned calls cancel once every item's request has been
// cancelled (the drain answered it 503, or its client went away): a batch
// nobody waits for stops, and frees its Triton slot, instead of running
// to the end. A request whose deadline passed does not count: the batch
// then runs to its own deadline, so that a stalling backend is seen as
// one (a Timeout marks it not ready). abandoned says whether cancel was
// called; stop ends the watching.
func cancelWhenAbandoned(items []*entry, cancel context.CancelFunc) (abandoned func() bool, stop func()) {
	var left atomic.Int64
	left.Store(int64(len(items)))
	var done atomic.Bool
	stops := make([]func() bool, len(items))
	for i, it := range items {
		stops[i] = context.AfterFunc(it.ctx, func() {
			if errors.Is(it.ctx.Err(), context.DeadlineExceeded) {
				return
			}
			if left.Add(-1) == 0 {
				done.Store(true)
				cancel()
			}
		})
	}
	return done.Load, func() {
		for _, s := range stops {
			s()
		}
	}
}
