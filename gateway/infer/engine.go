package infer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

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
	ModelID, Revision string
	BackendName       string
	Version           string
	Pooling           pooling.Method
	MaxInputLength    int // tokens, special tokens included
	MaxConcurrent     int // requests in the pipeline at once
	MaxBatchTokens    int // padded tokens per backend batch
	MaxBatchRequests  int // rows per backend batch
	MaxClientBatch    int // inputs per request
	MaxInflight       int // backend batches running at once (1 for in-process backends)
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
}

// Engine is one model's pipeline: tokenizer, admission gate, batch queue,
// backend and pooling. New starts nothing; Run drives the batch loop.
type Engine struct {
	opts    Options
	tok     *tokenizer.Tokenizer
	backend Backend
	spec    gateway.ModelSpec
	logger  *slog.Logger

	gate    *admit.Gate
	backlog *admit.Backlog
	queue   *batcher.Queue[*entry]
	workers chan struct{} // tokenization slots
	running atomic.Bool
	healthy atomic.Bool // false after a batch found the backend down or stalled
	batchID atomic.Uint64
	m       *metrics
}

// New checks opts against the model and the backend and registers the
// pipeline's metrics on reg.
func New(opts Options, tok *tokenizer.Tokenizer, backend Backend, logger *slog.Logger, reg prometheus.Registerer) (*Engine, error) {
	spec := backend.Spec()
	var problems []error
	if opts.MaxInputLength < 1 {
		problems = append(problems, fmt.Errorf("max input length must be positive, got %d", opts.MaxInputLength))
	}
	if opts.MaxBatchTokens < opts.MaxInputLength {
		problems = append(problems, fmt.Errorf("max batch tokens (%d) is smaller than the model's max input length (%d): a full-length input could never be batched", opts.MaxBatchTokens, opts.MaxInputLength))
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
	queue, err := batcher.New[*entry](batcher.Options{MaxTokens: opts.MaxBatchTokens, MaxRows: opts.MaxBatchRequests, PadID: padID}, reg)
	if err != nil {
		problems = append(problems, err)
	}
	if err := errors.Join(problems...); err != nil {
		return nil, fmt.Errorf("infer: %w", err)
	}
	gate := admit.New(opts.MaxConcurrent)
	backlog := admit.NewBacklog(queueShare, 2*opts.MaxBatchTokens*opts.MaxInflight)
	m, err := newMetrics(reg, gate, backlog)
	if err != nil {
		return nil, fmt.Errorf("infer: %w", err)
	}
	return &Engine{
		opts:    opts,
		tok:     tok,
		backend: backend,
		spec:    spec,
		logger:  logger,
		gate:    gate,
		backlog: backlog,
		queue:   queue,
		workers: make(chan struct{}, opts.Workers),
		m:       m,
	}, nil
}

// Run drives the batch loop until ctx is done, then waits for the batches in
// flight. Inputs still queued then are answered Unhealthy, so no request hangs.
func (e *Engine) Run(ctx context.Context) error {
	if e.opts.Calibrate {
		e.calibrate(ctx)
	}
	e.healthy.Store(true)
	e.running.Store(true)
	defer e.running.Store(false)
	slots := make(chan struct{}, e.opts.MaxInflight)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() { defer wg.Done(); e.probe(ctx) }()
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			e.failQueued()
			return nil
		}
		items, dropped, err := e.queue.Next(ctx)
		e.backlog.Remove(tokensOf(items) + tokensOf(dropped))
		for _, it := range dropped {
			it.req.fail(gateway.ContextError(it.ctx.Err()))
		}
		if err != nil {
			<-slots
			continue // ctx is done: the select above returns
		}
		if len(items) == 0 {
			<-slots
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
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
	ctx := context.WithoutCancel(runCtx)
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
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
		vec := make([]float32, h)
		if out.Kind == gateway.Pooled {
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

// Embed tokenizes, admits, batches, runs and pools req's inputs. It returns
// a *gateway.Error for anything the client should see.
func (e *Engine) Embed(ctx context.Context, req *gateway.EmbedRequest) (*gateway.EmbedResult, error) {
	start := time.Now()
	if err := e.checkRequest(req); err != nil {
		return nil, err
	}
	prompt, err := e.prompt(req.PromptName)
	if err != nil {
		return nil, err
	}
	// Admission comes before tokenization: under overload, tokenizing
	// requests only to refuse them took a quarter of the CPU from the
	// admitted ones (measured with embedbench at 10× overload).
	if !e.gate.TryEnter() {
		return nil, e.refuseConcurrency()
	}
	defer e.gate.Done()
	if err := e.backlogFull(ctx); err != nil {
		return nil, err
	}
	_, tspan := e.opts.Tracer.Start(ctx, spanTokenize)
	encs, err := e.encode(ctx, req, prompt)
	endTokenize(tspan, encs, err)
	if err != nil {
		return nil, err
	}
	tokenized := time.Now()
	e.m.tokenization.Observe(tokenized.Sub(start).Seconds())
	tokens := 0
	for _, enc := range encs {
		tokens += len(enc.ids)
	}
	// The backlog decides before the token charge: a request refused
	// for lack of time should not cost its client tokens per minute.
	if err := e.enqueueable(ctx, tokens); err != nil {
		return nil, err
	}
	pushed := false
	defer func() {
		if !pushed { // refused by the charge, or it panicked
			e.backlog.Remove(tokens)
		}
	}()
	if req.Charge != nil {
		if err := req.Charge(ctx, tokens); err != nil {
			return nil, err
		}
	}

	p := newPending(len(encs))
	items := make([]*entry, len(encs))
	res := &gateway.EmbedResult{}
	for i, enc := range encs {
		items[i] = &entry{ids: enc.ids, typeIDs: enc.typeIDs, ctx: ctx, req: p, index: i, enqueued: tokenized}
		res.Usage.PromptTokens += len(enc.ids)
		res.Usage.Characters += enc.chars
	}
	// The span starts where Timings.Queue does, at tokenization's end: the
	// token charge and admission count as waiting too.
	_, qspan := e.opts.Tracer.Start(ctx, spanQueue, trace.WithTimestamp(tokenized))
	defer endQueue(qspan, p, tokenized)
	e.queue.Push(items...) // counted in the backlog by enqueueable
	pushed = true

	select {
	case <-p.done:
	case <-ctx.Done():
		return nil, gateway.ContextError(ctx.Err())
	}
	if p.err != nil {
		return nil, asClientError(p.err)
	}
	for i, v := range p.vecs {
		p.vecs[i] = pooling.Shape(v, req.Dimensions, req.Normalize)
	}
	res.Embeddings = p.vecs
	res.Timings = gateway.Timings{
		Tokenization: tokenized.Sub(start),
		Queue:        p.queueWait(),
		Total:        time.Since(start),
	}
	res.Timings.Inference = max(0, res.Timings.Total-res.Timings.Tokenization-res.Timings.Queue)
	return res, nil
}

// checkRequest checks req against the limits (gateway's Validate, the one
// place of those rules) and what needs the model: token ids in its
// vocabulary. Token length is checked while encoding (tooLong).
func (e *Engine) checkRequest(req *gateway.EmbedRequest) error {
	if err := req.Validate(e.Limits()); err != nil {
		return err
	}
	vocab := e.tok.VocabSize()
	if e.spec.VocabSize > 0 {
		vocab = e.spec.VocabSize
	}
	for i, in := range req.Inputs {
		if !in.IsIDs {
			continue
		}
		for j, id := range in.IDs {
			if id < 0 || int(id) >= vocab {
				return gateway.Errorf(gateway.Validation, gateway.TokenParam(i, j), "token id %d is outside the vocabulary (0 to %d)", id, vocab-1)
			}
		}
	}
	return nil
}

func (e *Engine) prompt(name string) (string, error) {
	if name != "" {
		p, ok := e.opts.Prompts[name]
		if !ok {
			return "", gateway.Errorf(gateway.Validation, "prompt_name", "unknown prompt name %q; the model's prompts are: %s", name, promptNames(e.opts.Prompts))
		}
		return p, nil
	}
	if e.opts.DefaultPrompt != "" {
		return e.opts.DefaultPrompt, nil
	}
	return e.opts.Prompts[e.opts.DefaultPromptName], nil
}

func promptNames(prompts map[string]string) string {
	if len(prompts) == 0 {
		return "none"
	}
	names := make([]string, 0, len(prompts))
	for n := range prompts {
		names = append(names, n)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

type encoded struct {
	ids, typeIDs []int32
	chars        int
}

// encode tokenizes req's inputs on the tokenization workers, in chunks so a
// large request uses every worker but a small one costs no goroutines.
func (e *Engine) encode(ctx context.Context, req *gateway.EmbedRequest, prompt string) ([]encoded, error) {
	out := make([]encoded, len(req.Inputs))
	errs := make([]error, len(req.Inputs))
	chunk := max(16, (len(req.Inputs)+cap(e.workers)-1)/cap(e.workers))
	var wg sync.WaitGroup
	for lo := 0; lo < len(req.Inputs); lo += chunk {
		hi := min(lo+chunk, len(req.Inputs))
		work := func() {
			select {
			case e.workers <- struct{}{}:
			case <-ctx.Done():
				for i := lo; i < hi; i++ {
					errs[i] = gateway.ContextError(ctx.Err())
				}
				return
			}
			defer func() { <-e.workers }()
			for i := lo; i < hi; i++ {
				out[i], errs[i] = e.encodeOne(i, req.Inputs[i], req, prompt)
			}
		}
		if hi == len(req.Inputs) {
			work() // the last chunk runs here
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); work() }()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err // the first, by input index
		}
	}
	return out, nil
}

func (e *Engine) encodeOne(i int, in gateway.Input, req *gateway.EmbedRequest, prompt string) (encoded, error) {
	limit := e.opts.MaxInputLength
	if in.IsIDs {
		ids := in.IDs
		if len(ids) > limit {
			if !req.Truncate {
				return encoded{}, tooLong(i, len(ids), limit)
			}
			if req.Direction == gateway.Left {
				ids = ids[len(ids)-limit:]
			} else {
				ids = ids[:limit]
			}
		}
		return encoded{ids: ids, chars: 0}, nil
	}
	opts := tokenizer.EncodeOptions{AddSpecialTokens: true, TruncateLeft: req.Direction == gateway.Left}
	if req.Truncate {
		opts.MaxLength = limit
	}
	enc := e.tok.Encode(prompt+in.Text, opts)
	if len(enc.IDs) > limit {
		return encoded{}, tooLong(i, len(enc.IDs), limit)
	}
	types := enc.TypeIDs
	if !e.spec.HasTokenTypeIDs || allZero(types) {
		types = nil
	}
	return encoded{ids: enc.IDs, typeIDs: types, chars: utf8.RuneCountInString(in.Text)}, nil
}

func tooLong(i, n, limit int) error {
	return gateway.Errorf(gateway.Validation, gateway.InputParam(i), "input is %d tokens long, more than the model's maximum of %d; set truncate to true or shorten the input", n, limit)
}

func allZero(v []int32) bool {
	for _, x := range v {
		if x != 0 {
			return false
		}
	}
	return true
}

// asClientError keeps a *gateway.Error as it is and classifies the rest.
func asClientError(err error) error {
	var ge *gateway.Error
	if errors.As(err, &ge) {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return gateway.ContextError(err)
	}
	return &gateway.Error{Kind: gateway.Backend, Msg: "inference failed", Err: err}
}

// Tokenize returns the tokens of each input with byte offsets into the
// text the model sees (the prompt, if any, included).
func (e *Engine) Tokenize(ctx context.Context, req *gateway.TokenizeRequest) ([][]gateway.Token, error) {
	if err := req.Validate(e.Limits()); err != nil {
		return nil, err
	}
	prompt, err := e.prompt(req.PromptName)
	if err != nil {
		return nil, err
	}
	out := make([][]gateway.Token, len(req.Inputs))
	for i, in := range req.Inputs {
		if err := ctx.Err(); err != nil {
			return nil, gateway.ContextError(err)
		}
		text := prompt + in
		enc := e.tok.Encode(text, tokenizer.EncodeOptions{AddSpecialTokens: req.AddSpecialTokens, Offsets: true})
		toks := make([]gateway.Token, len(enc.IDs))
		for j, id := range enc.IDs {
			special := enc.SpecialTokensMask[j] == 1
			t := gateway.Token{ID: id, Special: special, Start: enc.Offsets[j][0], Stop: enc.Offsets[j][1], Text: enc.Tokens[j]}
			if !special && t.Start <= t.Stop && t.Stop <= len(text) {
				t.Text = text[t.Start:t.Stop]
			}
			toks[j] = t
		}
		out[i] = toks
	}
	return out, nil
}

// Limits are what codecs validate requests against.
func (e *Engine) Limits() gateway.Limits {
	return gateway.Limits{
		MaxClientBatch:  e.opts.MaxClientBatch,
		MaxInputLength:  e.opts.MaxInputLength,
		Dimensions:      e.spec.Hidden,
		DefaultTruncate: e.opts.DefaultTruncate,
	}
}

// Info describes the model and the pipeline.
func (e *Engine) Info() gateway.Info {
	return gateway.Info{
		ModelID:          e.opts.ModelID,
		Revision:         e.opts.Revision,
		Pooling:          e.opts.Pooling.String(),
		Dimensions:       e.spec.Hidden,
		MaxInputLength:   e.opts.MaxInputLength,
		MaxBatchTokens:   e.opts.MaxBatchTokens,
		MaxBatchRequests: e.opts.MaxBatchRequests,
		MaxClientBatch:   e.opts.MaxClientBatch,
		MaxConcurrent:    e.opts.MaxConcurrent,
		Backend:          e.opts.BackendName,
		Version:          e.opts.Version,
		Prompts:          e.opts.Prompts,
		DefaultPrompt:    e.opts.DefaultPromptName,
	}
}

// Health reports whether the backend answers.
func (e *Engine) Health(ctx context.Context) error { return e.backend.Health(ctx) }

// Ready reports whether the batch loop is running and the backend answered
// its last batch or probe: a load balancer should send nothing while a
// stalled backend would only time requests out.
func (e *Engine) Ready() bool { return e.running.Load() && e.healthy.Load() }

// probe checks the backend every ProbeInterval until ctx is done. Once a
// batch has failed for lack of a backend, only a successful probe batch
// marks the engine ready again: a health RPC can answer while inference
// still stalls, and without readiness no traffic comes to prove otherwise.
func (e *Engine) probe(ctx context.Context) {
	t := time.NewTicker(e.opts.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, 2*e.opts.ProbeInterval)
		err := e.backend.Health(pctx)
		switch {
		case err != nil:
			if e.healthy.Swap(false) && ctx.Err() == nil {
				e.logger.Warn("backend not ready", "err", err)
			}
		case !e.healthy.Load():
			if err := e.probeBatch(pctx); err == nil {
				e.healthy.Store(true)
				e.logger.Info("backend ready again")
			}
		}
		cancel()
	}
}

func (e *Engine) probeBatch(ctx context.Context) error {
	return e.sampleBatch(ctx, 1, 0)
}

// calibrate measures the backend before the batch loop starts, so that the
// backlog knows its rate from the first request on: without it, the first
// burst after a start is admitted by a fixed guess (measured with
// embedbench: at 64 clients a cold gateway refused work it had time for).
// The first batch warms the backend up (ONNX Runtime sizes its arena then)
// and is not counted. A backend that fails here is left to the probe.
func (e *Engine) calibrate(ctx context.Context) {
	length := min(128, e.opts.MaxInputLength)
	rows := max(1, min(e.opts.MaxBatchRequests, min(2048, e.opts.MaxBatchTokens)/length))
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := e.sampleBatch(ctx, rows, length); err != nil {
		e.logger.Warn("backend calibration failed; admission guesses until the first batch", "err", err)
		return
	}
	done := e.backlog.Start(rows * length)
	err := e.sampleBatch(ctx, rows, length)
	done(err == nil)
	if err == nil {
		e.logger.Info("backend calibrated", "rows", rows, "len", length, "tokens_per_second", int(e.backlog.Rate()))
	}
}

// sampleBatch runs rows copies of a short text, cut or repeated to length
// tokens (0 = as it is).
func (e *Engine) sampleBatch(ctx context.Context, rows, length int) error {
	ids := e.tok.Encode("ready to embed text quickly and exactly", tokenizer.EncodeOptions{AddSpecialTokens: true}).IDs
	if length > 0 && len(ids) > 0 {
		for len(ids) < length {
			ids = append(ids, ids[len(ids)/2])
		}
		ids = ids[:length]
	}
	b := &gateway.Batch{ID: "probe", Rows: rows, Len: len(ids)}
	for range rows {
		for _, id := range ids {
			b.InputIDs = append(b.InputIDs, int64(id))
			b.AttentionMask = append(b.AttentionMask, 1)
			b.TokenTypeIDs = append(b.TokenTypeIDs, 0)
		}
	}
	out, err := e.backend.Embed(ctx, b)
	defer out.Free()
	if err == nil {
		err = checkOutput(out, b, e.spec)
	}
	return err
}

// queueShare is the part of a request's time left that waiting in the
// queue may take. The rest is for its own batch and for the estimate's
// error, which is large: the batcher fills batches with inputs of similar
// length whatever their age, so an input can wait for work that arrived
// after it (measured with embedbench at 256 clients: with 0.8, a tenth of
// the requests admitted still ended 504). Half the deadline is still
// seconds of queued work on any backend, far more than batches need to
// stay full.
const queueShare = 0.5

// enqueueable counts tokens into the backlog, or refuses them with 429 if
// the work queued ahead would make them miss the request's deadline (see
// admit.Backlog).
func (e *Engine) enqueueable(ctx context.Context, tokens int) error {
	if err := ctx.Err(); err != nil {
		return gateway.ContextError(err) // too late is a 504, not a reason to retry
	}
	if ok, retry := e.backlog.TryAdd(tokens, timeLeft(ctx)); !ok {
		return e.refuseBacklog(retry)
	}
	return nil
}

// Busy says whether a request would be refused now, by either limit,
// without reserving anything: a caller can refuse before decoding it.
// Whatever it says, Embed checks again.
func (e *Engine) Busy(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return gateway.ContextError(err)
	}
	if e.gate.InFlight() >= e.gate.Capacity() {
		return e.refuseConcurrency()
	}
	return e.backlogFull(ctx)
}

// backlogFull refuses a request that no room in the queue could take now:
// 504 once its deadline has passed, else 429 if even the smallest request
// would wait past it.
func (e *Engine) backlogFull(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return gateway.ContextError(err)
	}
	if full, retry := e.backlog.Full(timeLeft(ctx)); full {
		return e.refuseBacklog(retry)
	}
	return nil
}

func (e *Engine) refuseConcurrency() error {
	e.m.overloaded.WithLabelValues("concurrency").Inc()
	return &gateway.Error{Kind: gateway.Overloaded, Msg: "the gateway is at its limit of concurrent requests; retry later", RetryAfter: time.Second}
}

// refuseBacklog is the 429 of a request the queue has no time for. The
// Retry-After is at least a second, as for a full gateway: every client
// refused in the same instant hears about the same wait, and a shorter
// one brings them all back together to be refused again.
func (e *Engine) refuseBacklog(retry time.Duration) error {
	e.m.overloaded.WithLabelValues("backlog").Inc()
	return &gateway.Error{
		Kind:       gateway.Overloaded,
		Msg:        "the queue holds more work than this request's deadline leaves time for; retry later",
		RetryAfter: min(max(retry, time.Second), 30*time.Second),
	}
}

// timeLeft is what remains of ctx's deadline; 0 = none.
func timeLeft(ctx context.Context) time.Duration {
	d, ok := ctx.Deadline()
	if !ok {
		return 0
	}
	return max(time.Until(d), time.Nanosecond)
}

func tokensOf(items []*entry) int {
	n := 0
	for _, it := range items {
		n += len(it.ids)
	}
	return n
}
