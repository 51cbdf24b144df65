//go:build cgo

// Package onnx provides a gateway backend that runs an embedding model or a
// cross-encoder in process with ONNX Runtime on the CPU, through cgo and onnxruntime_go. It is
// the only cgo package of the gateway; built without cgo, Open returns an
// error. It imports gateway and onnxruntime_go only.
package onnx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/embedgate/embedgate/gateway"
)

// Options configure Open.
type Options struct {
	LibraryPath    string // libonnxruntime.so.1; required
	ModelPath      string // the .onnx file; required
	IntraOpThreads int    // threads per batch; 0 = runtime.NumCPU()
	// MaxRunAttention bounds rows × length² of one session run; 0 =
	// DefaultMaxRunAttention. A batch above it runs as several runs of
	// fewer rows, in order, whose outputs are joined.
	MaxRunAttention int
	Logger          *slog.Logger
}

// DefaultMaxRunAttention is four rows of 512 tokens per run. A run's
// memory grows with rows × length² (the attention scores, per head), and
// ONNX Runtime's arena keeps its peak for good: whole batches took the
// MiniLM-size gateway to 2.2 GB at 256 clients, four rows of 512 at a time
// to 0.5 GB, and ran 4% faster (see README, Memory).
const DefaultMaxRunAttention = 4 * 512 * 512

// Backend runs batches through one ONNX Runtime session, shared by all
// goroutines (a session's Run is thread-safe). It satisfies infer.Backend.
type Backend struct {
	// mu is held for reading by each Embed and for writing by Close, so the
	// session is never destroyed under a running batch.
	mu      sync.RWMutex
	session *ort.DynamicAdvancedSession // nil once closed
	inputs  []string                    // the session's input names, in order
	spec    gateway.ModelSpec
	maxAttn int // Options.MaxRunAttention
	logger  *slog.Logger
}

// Open loads the runtime library (once per process) and the model.
func Open(opts Options) (*Backend, error) {
	if opts.LibraryPath == "" {
		return nil, errors.New("onnx: no runtime library path (set ORT_LIB or run make setup)")
	}
	if opts.ModelPath == "" {
		return nil, errors.New("onnx: no model path")
	}
	if opts.IntraOpThreads < 0 {
		return nil, fmt.Errorf("onnx: intra-op threads %d < 0", opts.IntraOpThreads)
	}
	if opts.MaxRunAttention < 0 {
		return nil, fmt.Errorf("onnx: max run attention %d < 0", opts.MaxRunAttention)
	}
	maxAttn := opts.MaxRunAttention
	if maxAttn == 0 {
		maxAttn = DefaultMaxRunAttention
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	threads := opts.IntraOpThreads
	if threads == 0 {
		// Set explicitly: ORT's own default ran one thread on our 2-core VMs.
		threads = runtime.NumCPU()
	}
	if err := acquireEnv(opts.LibraryPath); err != nil {
		return nil, err
	}
	b, err := open(opts.ModelPath, threads, maxAttn, logger)
	if err != nil {
		if rerr := releaseEnv(); rerr != nil {
			logger.Error("onnx: release runtime", "err", rerr)
		}
		return nil, err
	}
	return b, nil
}

func open(path string, threads, maxAttn int, logger *slog.Logger) (*Backend, error) {
	start := time.Now()
	ins, outs, err := ort.GetInputOutputInfo(path)
	if err != nil {
		return nil, fmt.Errorf("onnx: read model %s: %w", path, err)
	}
	spec := gateway.ModelSpec{Name: path, InputDType: gateway.Int64}
	var inputs []string
	for _, in := range ins {
		switch in.Name {
		case gateway.TensorInputIDs, gateway.TensorAttentionMask, gateway.TensorTokenTypeIDs, gateway.TensorPositionIDs:
		default:
			return nil, fmt.Errorf("onnx: model %s has unsupported input %q: the gateway fills %s, %s, %s and %s", path, in.Name,
				gateway.TensorInputIDs, gateway.TensorAttentionMask, gateway.TensorTokenTypeIDs, gateway.TensorPositionIDs)
		}
		if in.DataType != ort.TensorElementDataTypeInt64 {
			return nil, fmt.Errorf("onnx: model %s input %s is %v, want int64", path, in.Name, in.DataType)
		}
		spec.HasTokenTypeIDs = spec.HasTokenTypeIDs || in.Name == gateway.TensorTokenTypeIDs
		spec.HasPositionIDs = spec.HasPositionIDs || in.Name == gateway.TensorPositionIDs
		inputs = append(inputs, in.Name)
	}
	if !slices.Contains(inputs, gateway.TensorInputIDs) || !slices.Contains(inputs, gateway.TensorAttentionMask) {
		return nil, fmt.Errorf("onnx: model %s has inputs %v, want input_ids, attention_mask and optionally token_type_ids and position_ids", path, inputs)
	}
	names := make([]string, len(outs))
	for i, o := range outs {
		names[i] = o.Name
	}
	i, kind := gateway.PickOutput(names)
	if i < 0 {
		return nil, fmt.Errorf("onnx: model %s has none of the outputs %s, %s or %s", path,
			gateway.TensorSentenceEmbedding, gateway.TensorLastHiddenState, gateway.TensorLogits)
	}
	out := outs[i]
	spec.Output = kind
	if dims := out.Dimensions; len(dims) > 0 && dims[len(dims)-1] > 0 {
		spec.Hidden = int(dims[len(dims)-1])
	}

	so, err := sessionOptions(threads)
	if err != nil {
		return nil, err
	}
	defer so.Destroy()
	session, err := ort.NewDynamicAdvancedSession(path, inputs, []string{out.Name}, so)
	if err != nil {
		return nil, fmt.Errorf("onnx: load model %s: %w", path, err)
	}
	b := &Backend{session: session, inputs: inputs, spec: spec, maxAttn: maxAttn, logger: logger}
	if spec.Hidden == 0 {
		// The export left H symbolic: learn it from a one-token probe.
		o, err := b.Embed(context.Background(), &gateway.Batch{Rows: 1, Len: 1, InputIDs: []int64{0}, AttentionMask: []int64{1}})
		if err != nil {
			session.Destroy()
			return nil, fmt.Errorf("onnx: probe hidden size of %s: %w", path, err)
		}
		b.spec.Hidden = o.Hidden
	}
	logger.Info("onnx model loaded", "path", path, "inputs", inputs, "output", out.Name,
		"hidden", b.spec.Hidden, "intra_op_threads", threads, "max_run_attention", maxAttn, "runtime", ort.GetVersion(),
		"duration", time.Since(start))
	return b, nil
}

// sessionOptions are the session's options; the caller destroys them.
func sessionOptions(threads int) (*ort.SessionOptions, error) {
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("onnx: session options: %w", err)
	}
	for _, set := range []func() error{
		func() error { return so.SetIntraOpNumThreads(threads) },
		// One batch runs at a time, using all intra-op threads.
		func() error { return so.SetInterOpNumThreads(1) },
		func() error { return so.SetGraphOptimizationLevel(ort.GraphOptimizationLevelEnableAll) },
		// Spinning threads would steal the cores the gateway's goroutines need.
		func() error { return so.AddSessionConfigEntry("session.intra_op.allow_spinning", "0") },
		func() error { return so.AddSessionConfigEntry("session.inter_op.allow_spinning", "0") },
		// A memory pattern is planned per input shape, and ours vary with
		// every batch: it only fragmented the arena (peak 550 MB instead of
		// 420 on random shapes, at the same speed).
		func() error { return so.SetMemPattern(false) },
	} {
		if err := set(); err != nil {
			so.Destroy()
			return nil, fmt.Errorf("onnx: session options: %w", err)
		}
	}
	return so, nil
}

// Spec describes the model. MaxBatch is 0: the runtime takes any batch size.
func (b *Backend) Spec() gateway.ModelSpec { return b.spec }

// Health reports whether the backend is open; it runs nothing.
func (b *Backend) Health(ctx context.Context) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.session == nil {
		return errClosed()
	}
	return ctx.Err()
}

func errClosed() error {
	return &gateway.Error{Kind: gateway.Unhealthy, Msg: "onnx backend closed"}
}

// Embed runs one padded batch, in several runs when its rows × length²
// exceeds Options.MaxRunAttention. A malformed batch is an Internal error
// (the gateway built it); a runtime failure is a Backend error; ctx cancels
// the run, also while it is executing.
func (b *Backend) Embed(ctx context.Context, batch *gateway.Batch) (*gateway.Output, error) {
	if err := validate(batch); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, ctxError(err)
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.session == nil {
		return nil, errClosed()
	}
	if per := max(1, b.maxAttn/(batch.Len*batch.Len)); per < batch.Rows {
		return b.embedRows(ctx, batch, per)
	}
	return b.embed(ctx, batch)
}

// embedRows runs batch per rows at a time and joins the outputs.
func (b *Backend) embedRows(ctx context.Context, batch *gateway.Batch, per int) (*gateway.Output, error) {
	var out *gateway.Output
	for r0 := 0; r0 < batch.Rows; r0 += per {
		if err := ctx.Err(); err != nil {
			return nil, ctxError(err)
		}
		o, err := b.embed(ctx, rows(batch, r0, min(r0+per, batch.Rows)))
		if err != nil {
			return nil, err
		}
		if out == nil {
			out = &gateway.Output{Kind: o.Kind, Rows: batch.Rows, Len: o.Len, Hidden: o.Hidden}
			out.Data = make([]float32, 0, len(o.Data)/o.Rows*batch.Rows)
		}
		out.Data = append(out.Data, o.Data...)
	}
	return out, nil
}

// rows is rows [r0, r1) of batch, sharing its memory.
func rows(batch *gateway.Batch, r0, r1 int) *gateway.Batch {
	n := batch.Len
	sub := &gateway.Batch{ID: batch.ID, Rows: r1 - r0, Len: n,
		InputIDs: batch.InputIDs[r0*n : r1*n], AttentionMask: batch.AttentionMask[r0*n : r1*n]}
	if batch.TokenTypeIDs != nil {
		sub.TokenTypeIDs = batch.TokenTypeIDs[r0*n : r1*n]
	}
	return sub
}

// embed runs batch in one session run; the caller holds mu.
func (b *Backend) embed(ctx context.Context, batch *gateway.Batch) (*gateway.Output, error) {
	shape := ort.NewShape(int64(batch.Rows), int64(batch.Len))
	values := make([]ort.Value, 0, len(b.inputs))
	defer func() {
		for _, v := range values {
			v.Destroy()
		}
	}()
	for _, name := range b.inputs {
		data := batch.InputIDs
		switch name {
		case gateway.TensorAttentionMask:
			data = batch.AttentionMask
		case gateway.TensorTokenTypeIDs:
			data = batch.TokenTypeIDs
			if data == nil {
				data = make([]int64, batch.Rows*batch.Len)
			}
		case gateway.TensorPositionIDs:
			data = gateway.PositionIDs(batch.Rows, batch.Len)
		}
		// NewTensor wraps data without copying; it stays untouched until Destroy.
		t, err := ort.NewTensor(shape, data)
		if err != nil {
			return nil, &gateway.Error{Kind: gateway.Backend, Msg: "onnx: input " + name, Err: err}
		}
		values = append(values, t)
	}
	outs := []ort.Value{nil} // allocated by the runtime, copied into Go memory
	if err := b.run(ctx, values, outs); err != nil {
		return nil, err
	}
	defer outs[0].Destroy()
	return b.output(batch, outs[0])
}

// run executes the session, terminating the run if ctx ends meanwhile.
func (b *Backend) run(ctx context.Context, in, out []ort.Value) error {
	ro, err := ort.NewRunOptions()
	if err != nil {
		return &gateway.Error{Kind: gateway.Backend, Msg: "onnx: run options", Err: err}
	}
	defer ro.Destroy()
	done := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(done)
		if err := ro.Terminate(); err != nil {
			b.logger.Warn("onnx: terminate run", "err", err)
		}
	})
	runErr := b.session.RunWithOptions(in, out, ro)
	if !stop() {
		<-done // Terminate is running or ran: ro must outlive it
	}
	if runErr != nil {
		if err := ctx.Err(); err != nil {
			return ctxError(err)
		}
		return &gateway.Error{Kind: gateway.Backend, Msg: "onnx: inference failed", Err: runErr}
	}
	return nil
}

// output checks the runtime's tensor against the batch and wraps its data.
func (b *Backend) output(batch *gateway.Batch, v ort.Value) (*gateway.Output, error) {
	t, ok := v.(*ort.Tensor[float32])
	if !ok {
		return nil, &gateway.Error{Kind: gateway.Backend, Msg: fmt.Sprintf("onnx: output is %T, want float32 tensor", v)}
	}
	shape := t.GetShape()
	want := 3
	if b.spec.Output != gateway.Hidden {
		want = 2 // Pooled [B,H], Logits [B,num_labels]
	}
	if len(shape) != want || shape[0] != int64(batch.Rows) || want == 3 && shape[1] != int64(batch.Len) ||
		b.spec.Hidden != 0 && shape[want-1] != int64(b.spec.Hidden) {
		return nil, &gateway.Error{Kind: gateway.Backend, Msg: fmt.Sprintf("onnx: output shape %v does not fit batch [%d,%d] and hidden %d", shape, batch.Rows, batch.Len, b.spec.Hidden)}
	}
	o := &gateway.Output{Kind: b.spec.Output, Rows: batch.Rows, Hidden: int(shape[want-1]), Data: t.GetData()}
	if o.Kind == gateway.Hidden {
		o.Len = batch.Len
	}
	return o, nil
}

// validate rejects batches the gateway should never build.
func validate(b *gateway.Batch) error {
	if err := b.Check(); err != nil {
		return fmt.Errorf("onnx: %w", err)
	}
	return nil
}

// ctxError is the error of a batch whose ctx ended: a passed deadline in
// gateway.ContextError's words, as anywhere else a request stops. A
// cancelled batch keeps its Backend kind: the engine runs requests' batches
// detached from their cancellation, and reads Unhealthy as a backend that
// is down.
func ctxError(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return gateway.ContextError(err)
	}
	return &gateway.Error{Kind: gateway.Backend, Msg: "onnx: batch cancelled", Err: err}
}

// Close waits for running batches, then destroys the session and releases
// the runtime. Later calls do nothing.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.session == nil {
		return nil
	}
	err := b.session.Destroy()
	b.session = nil
	if err != nil {
		err = fmt.Errorf("onnx: destroy session: %w", err)
	}
	return errors.Join(err, releaseEnv())
}
