package infer

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/pooling"
	"github.com/embedgate/embedgate/gateway/tokenizer"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// fakeBackend computes each position's hidden state from its token id and
// position alone, so a row's result never depends on its neighbours: what
// the engine does with rows (order, padding, pooling) is what is tested.
// Real inference is tested end to end on ONNX Runtime in cmd/embedgate.
type fakeBackend struct {
	hidden  int
	gate    chan struct{} // when set, Embed waits for a token
	err     error
	calls   atomic.Int64
	maxRows atomic.Int64
}

func (f *fakeBackend) Spec() gateway.ModelSpec {
	return gateway.ModelSpec{Name: "fake", HasTokenTypeIDs: true, Output: gateway.Hidden, Hidden: f.hidden}
}

func (f *fakeBackend) Health(context.Context) error { return nil }

func (f *fakeBackend) Embed(ctx context.Context, b *gateway.Batch) (*gateway.Output, error) {
	f.calls.Add(1)
	for {
		old := f.maxRows.Load()
		if int64(b.Rows) <= old || f.maxRows.CompareAndSwap(old, int64(b.Rows)) {
			break
		}
	}
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if f.err != nil {
		return nil, f.err
	}
	out := &gateway.Output{Kind: gateway.Hidden, Rows: b.Rows, Len: b.Len, Hidden: f.hidden, Data: make([]float32, b.Rows*b.Len*f.hidden)}
	for i, id := range b.InputIDs {
		for k := 0; k < f.hidden; k++ {
			out.Data[i*f.hidden+k] = float32(math.Sin(float64(id)*float64(k+1) + float64(i%b.Len)))
		}
	}
	return out, nil
}

func loadTokenizer(t testing.TB) *tokenizer.Tokenizer {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	tok, err := tokenizer.LoadFile(filepath.Join(filepath.Dir(file), "..", "tokenizer", "testdata", "minilm.json"))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func defaultOptions() Options {
	return Options{
		Pooling: pooling.Mean, MaxInputLength: 16, MaxConcurrent: 8, MaxBatchTokens: 64,
		MaxBatchRequests: 4, MaxClientBatch: 32, MaxInflight: 1, DefaultTruncate: true, Workers: 2,
		Prompts: map[string]string{"query": "query: "},
	}
}

func startEngine(t *testing.T, opts Options, be Backend) *Engine {
	t.Helper()
	eng, err := New(opts, loadTokenizer(t), be, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v", err)
		}
	})
	return eng
}

func texts(ss ...string) []gateway.Input {
	in := make([]gateway.Input, len(ss))
	for i, s := range ss {
		in[i] = gateway.Input{Text: s}
	}
	return in
}

func TestEmbedMatchesSingleInputs(t *testing.T) {
	eng := startEngine(t, defaultOptions(), &fakeBackend{hidden: 8})
	ctx := context.Background()
	inputs := texts("short", "a much longer sentence with many more words in it", "mid length text", "x")
	batch, err := eng.Embed(ctx, &gateway.EmbedRequest{Inputs: inputs, Truncate: true, Normalize: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(batch.Embeddings) != len(inputs) {
		t.Fatalf("got %d embeddings, want %d", len(batch.Embeddings), len(inputs))
	}
	for i, in := range inputs {
		one, err := eng.Embed(ctx, &gateway.EmbedRequest{Inputs: []gateway.Input{in}, Truncate: true, Normalize: true})
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range one.Embeddings[0] {
			if d := math.Abs(float64(v - batch.Embeddings[i][k])); d > 1e-6 {
				t.Fatalf("input %d dim %d: batched %v, alone %v", i, k, batch.Embeddings[i][k], v)
			}
		}
	}
	if batch.Usage.PromptTokens == 0 || batch.Timings.Total == 0 {
		t.Errorf("usage %+v timings %+v, want non-zero", batch.Usage, batch.Timings)
	}
}

func TestEmbedValidation(t *testing.T) {
	eng := startEngine(t, defaultOptions(), &fakeBackend{hidden: 8})
	long := texts("one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen")
	tests := []struct {
		name  string
		req   gateway.EmbedRequest
		kind  gateway.Kind
		param string
	}{
		{"empty inputs", gateway.EmbedRequest{}, gateway.Empty, "inputs"},
		{"empty string", gateway.EmbedRequest{Inputs: texts("ok", "")}, gateway.Empty, "inputs[1]"},
		{"too many", gateway.EmbedRequest{Inputs: make([]gateway.Input, 33)}, gateway.Validation, "inputs"},
		{"too long", gateway.EmbedRequest{Inputs: long}, gateway.Validation, "inputs[0]"},
		{"dimensions", gateway.EmbedRequest{Inputs: texts("a"), Dimensions: 9}, gateway.Validation, "dimensions"},
		{"prompt", gateway.EmbedRequest{Inputs: texts("a"), PromptName: "nope"}, gateway.Validation, "prompt_name"},
		{"id out of vocab", gateway.EmbedRequest{Inputs: []gateway.Input{{IsIDs: true, IDs: []int32{101, 40000}}}}, gateway.Validation, "inputs[0][1]"},
		{"empty ids", gateway.EmbedRequest{Inputs: []gateway.Input{{IsIDs: true}}}, gateway.Empty, "inputs[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := eng.Embed(context.Background(), &tt.req)
			var ge *gateway.Error
			if !errors.As(err, &ge) || ge.Kind != tt.kind || ge.Param != tt.param {
				t.Errorf("Embed() = %v, want kind %v param %q", err, tt.kind, tt.param)
			}
		})
	}
}

func TestEmbedTruncatesBothSides(t *testing.T) {
	eng := startEngine(t, defaultOptions(), &fakeBackend{hidden: 8})
	long := texts("one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen")
	for _, dir := range []gateway.Direction{gateway.Right, gateway.Left} {
		res, err := eng.Embed(context.Background(), &gateway.EmbedRequest{Inputs: long, Truncate: true, Direction: dir})
		if err != nil {
			t.Fatalf("direction %v: %v", dir, err)
		}
		if res.Usage.PromptTokens != 16 {
			t.Errorf("direction %v: prompt tokens = %d, want 16", dir, res.Usage.PromptTokens)
		}
	}
	ids := make([]int32, 20)
	for i := range ids {
		ids[i] = int32(1000 + i)
	}
	res, err := eng.Embed(context.Background(), &gateway.EmbedRequest{Inputs: []gateway.Input{{IsIDs: true, IDs: ids}}, Truncate: true, Direction: gateway.Left})
	if err != nil || res.Usage.PromptTokens != 16 {
		t.Errorf("ids truncated left: %v, %+v; want 16 tokens", err, res)
	}
}

func TestEmbedPromptCounts(t *testing.T) {
	eng := startEngine(t, defaultOptions(), &fakeBackend{hidden: 8})
	plain, err := eng.Embed(context.Background(), &gateway.EmbedRequest{Inputs: texts("hello"), Truncate: true})
	if err != nil {
		t.Fatal(err)
	}
	prompted, err := eng.Embed(context.Background(), &gateway.EmbedRequest{Inputs: texts("hello"), Truncate: true, PromptName: "query"})
	if err != nil {
		t.Fatal(err)
	}
	// "query: " is two more tokens: "query" and ":".
	if prompted.Usage.PromptTokens != plain.Usage.PromptTokens+2 {
		t.Errorf("tokens with prompt = %d, without = %d; want 2 more", prompted.Usage.PromptTokens, plain.Usage.PromptTokens)
	}
}

func TestEmbedDimensionsAndNormalize(t *testing.T) {
	eng := startEngine(t, defaultOptions(), &fakeBackend{hidden: 8})
	res, err := eng.Embed(context.Background(), &gateway.EmbedRequest{Inputs: texts("hello world"), Truncate: true, Normalize: true, Dimensions: 3})
	if err != nil {
		t.Fatal(err)
	}
	v := res.Embeddings[0]
	var norm float64
	for _, x := range v {
		norm += float64(x) * float64(x)
	}
	if len(v) != 3 || math.Abs(norm-1) > 1e-5 {
		t.Errorf("embedding %v: len %d norm² %v, want 3 and 1", v, len(v), norm)
	}
}

func TestOverloadAnswersAtOnce(t *testing.T) {
	opts := defaultOptions()
	opts.MaxConcurrent = 2
	be := &fakeBackend{hidden: 8, gate: make(chan struct{})}
	eng := startEngine(t, opts, be)
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := eng.Embed(context.Background(), &gateway.EmbedRequest{Inputs: texts("held"), Truncate: true})
			errs <- err
		}()
	}
	for eng.gate.InFlight() < 2 {
		runtime.Gosched()
	}
	tokenized := func() uint64 {
		var m dto.Metric
		if err := eng.m.tokenization.Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetHistogram().GetSampleCount()
	}
	for tokenized() < 2 { // both held requests are past tokenization
		runtime.Gosched()
	}
	before := tokenized()
	if err := eng.Busy(context.Background()); gateway.KindOf(err) != gateway.Overloaded {
		t.Errorf("Busy with every place taken = %v, want Overloaded", err)
	}
	_, err := eng.Embed(context.Background(), &gateway.EmbedRequest{Inputs: texts("extra"), Truncate: true})
	var ge *gateway.Error
	if !errors.As(err, &ge) || ge.Kind != gateway.Overloaded || ge.RetryAfter <= 0 {
		t.Errorf("third request: %v, want Overloaded with Retry-After", err)
	}
	if after := tokenized(); after != before {
		t.Errorf("a refused request was tokenized (%d tokenizations, want %d)", after, before)
	}
	close(be.gate)
	wg.Wait()
	if err := eng.Busy(context.Background()); err != nil {
		t.Errorf("Busy with the gateway idle = %v", err)
	}
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("admitted request failed: %v", err)
		}
	}
}

func TestExpiredRequestsNeverReachTheBackend(t *testing.T) {
	be := &fakeBackend{hidden: 8, gate: make(chan struct{})}
	eng := startEngine(t, defaultOptions(), be)
	// The first request occupies the only batch slot.
	first := make(chan error, 1)
	go func() {
		_, err := eng.Embed(context.Background(), &gateway.EmbedRequest{Inputs: texts("first"), Truncate: true})
		first <- err
	}()
	for be.calls.Load() == 0 {
		runtime.Gosched()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := eng.Embed(ctx, &gateway.EmbedRequest{Inputs: texts("late"), Truncate: true})
	if gateway.KindOf(err) != gateway.Timeout {
		t.Errorf("queued request past its deadline: %v, want Timeout", err)
	}
	close(be.gate)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	// Let the loop see the expired entry, then check it was dropped, not run.
	if _, err := eng.Embed(context.Background(), &gateway.EmbedRequest{Inputs: texts("after"), Truncate: true}); err != nil {
		t.Fatal(err)
	}
	if n := be.calls.Load(); n != 2 {
		t.Errorf("backend calls = %d, want 2 (the expired request must not run)", n)
	}
}

func TestBackendErrorsKeepTheirKind(t *testing.T) {
	be := &fakeBackend{hidden: 8, err: &gateway.Error{Kind: gateway.Overloaded, Msg: "queue full"}}
	eng := startEngine(t, defaultOptions(), be)
	_, err := eng.Embed(context.Background(), &gateway.EmbedRequest{Inputs: texts("x"), Truncate: true})
	if gateway.KindOf(err) != gateway.Overloaded {
		t.Errorf("Embed() = %v, want Overloaded", err)
	}
	be.err = errors.New("boom")
	_, err = eng.Embed(context.Background(), &gateway.EmbedRequest{Inputs: texts("x"), Truncate: true})
	if gateway.KindOf(err) != gateway.Backend {
		t.Errorf("Embed() = %v, want Backend", err)
	}
}

func TestBatchesRespectRowLimit(t *testing.T) {
	be := &fakeBackend{hidden: 4}
	eng := startEngine(t, defaultOptions(), be)
	in := make([]gateway.Input, 30)
	for i := range in {
		in[i] = gateway.Input{Text: "word"}
	}
	if _, err := eng.Embed(context.Background(), &gateway.EmbedRequest{Inputs: in, Truncate: true}); err != nil {
		t.Fatal(err)
	}
	if got := be.maxRows.Load(); got > 4 {
		t.Errorf("largest batch = %d rows, want <= 4", got)
	}
}

func TestNewRejectsImpossibleBudget(t *testing.T) {
	opts := defaultOptions()
	opts.MaxBatchTokens = 8
	_, err := New(opts, loadTokenizer(t), &fakeBackend{hidden: 8}, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	if err == nil {
		t.Error("New with max batch tokens below max input length succeeded")
	}
}

func TestShutdownAnswersQueued(t *testing.T) {
	be := &fakeBackend{hidden: 8, gate: make(chan struct{})}
	eng, err := New(defaultOptions(), loadTokenizer(t), be, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	results := make(chan error, 2)
	send := func(s string) {
		go func() {
			_, err := eng.Embed(context.Background(), &gateway.EmbedRequest{Inputs: texts(s), Truncate: true})
			results <- err
		}()
	}
	// One request runs (held by the backend), then a second one queues.
	send("running")
	for be.calls.Load() == 0 {
		runtime.Gosched()
	}
	send("queued")
	for eng.queue.Len() == 0 {
		runtime.Gosched()
	}
	cancel()
	close(be.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var ok, unhealthy int
	for i := 0; i < 2; i++ {
		switch err := <-results; gateway.KindOf(err) {
		case gateway.Unhealthy:
			unhealthy++
		default:
			if err == nil {
				ok++
			} else {
				t.Errorf("unexpected error %v", err)
			}
		}
	}
	if ok != 1 || unhealthy != 1 {
		t.Errorf("after shutdown: %d ok, %d unhealthy; want the running one done and the queued one answered", ok, unhealthy)
	}
}

// TestRefusesWhatTheQueueWouldMakeLate: with the backend's rate measured
// and work queued ahead, a request whose deadline that work would miss
// gets 429 at once, costs no tokens per minute and never reaches the
// backend, while requests with time to spare wait and succeed.
func TestRefusesWhatTheQueueWouldMakeLate(t *testing.T) {
	be := &fakeBackend{hidden: 8, gate: make(chan struct{})}
	eng := startEngine(t, defaultOptions(), be)
	done := eng.backlog.Start(1) // one token in at least 20 ms: ≤ 50 tokens/s
	time.Sleep(20 * time.Millisecond)
	done(true)

	errs := make(chan error, 2)
	embed := func(text string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err := eng.Embed(ctx, &gateway.EmbedRequest{Inputs: texts(text), Truncate: true})
		errs <- err
	}
	go embed("running")
	for be.calls.Load() == 0 {
		runtime.Gosched()
	}
	go embed("patient") // nothing queued ahead: admitted whatever the rate
	for eng.backlog.Queued() == 0 {
		runtime.Gosched()
	}
	queued := eng.backlog.Queued()

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	charged := 0
	_, err := eng.Embed(ctx, &gateway.EmbedRequest{
		Inputs: texts("a request long enough to fill the sixteen tokens the model takes"), Truncate: true,
		Charge: func(context.Context, int) error { charged++; return nil },
	})
	var ge *gateway.Error
	if !errors.As(err, &ge) || ge.Kind != gateway.Overloaded || ge.RetryAfter < time.Second {
		t.Errorf("request that would wait ≥0.38s with a 0.1s deadline: %v, want Overloaded with Retry-After", err)
	}
	if charged != 0 {
		t.Errorf("a refused request was charged %d times", charged)
	}
	if q := eng.backlog.Queued(); q != queued {
		t.Errorf("queued tokens %d after a refusal, want %d", q, queued)
	}
	close(be.gate)
	for i := 0; i < 2; i++ {
		if err := <-errs; err != nil {
			t.Errorf("admitted request failed: %v", err)
		}
	}
	if c := be.calls.Load(); c > 2 {
		t.Errorf("%d backend calls, want at most 2: the refused request reached the backend", c)
	}
	for eng.backlog.Queued() != 0 {
		runtime.Gosched() // every admitted token leaves the queue
	}
}

// TestCalibrationMeasuresTheBackendFirst: with Calibrate, the engine knows
// the backend's rate before its first request, from a warm-up batch and a
// measured one of realistic shape.
func TestCalibrationMeasuresTheBackendFirst(t *testing.T) {
	opts := defaultOptions()
	opts.Calibrate = true
	be := &fakeBackend{hidden: 8}
	eng := startEngine(t, opts, be)
	for !eng.Ready() {
		runtime.Gosched()
	}
	if c := be.calls.Load(); c != 2 {
		t.Errorf("%d backend calls before serving, want 2 (warm-up and measure)", c)
	}
	if r := be.maxRows.Load(); r != int64(opts.MaxBatchRequests) {
		t.Errorf("calibration batch of %d rows, want %d (max batch requests)", r, opts.MaxBatchRequests)
	}
	if eng.backlog.Rate() <= 0 {
		t.Error("no rate measured by calibration")
	}
	if _, err := eng.Embed(context.Background(), &gateway.EmbedRequest{Inputs: texts("after"), Truncate: true}); err != nil {
		t.Errorf("request after calibration: %v", err)
	}
}

// A batch that failed before reaching the backend (a deadline passed
// while it waited for a slot) says nothing about the backend's health.
func TestNotCalledKeepsReady(t *testing.T) {
	be := &fakeBackend{hidden: 8, err: &gateway.Error{Kind: gateway.Timeout, Msg: "waited", Err: gateway.ErrNotCalled}}
	eng := startEngine(t, defaultOptions(), be)
	for !eng.Ready() {
		runtime.Gosched()
	}
	if _, err := eng.Embed(context.Background(), &gateway.EmbedRequest{Inputs: texts("a"), Truncate: true}); gateway.KindOf(err) != gateway.Timeout {
		t.Fatalf("Embed = %v, want the backend's Timeout", err)
	}
	if !eng.Ready() {
		t.Error("not ready after a batch that never reached the backend")
	}
	be.err = &gateway.Error{Kind: gateway.Timeout, Msg: "stalled"}
	_, _ = eng.Embed(context.Background(), &gateway.EmbedRequest{Inputs: texts("b"), Truncate: true})
	if eng.Ready() {
		t.Error("still ready after the backend itself timed out")
	}
}

// A request past its deadline is a 504, not a 429 to retry; and a charge
// that panics leaves nothing counted in the backlog.
func TestExpiredAndPanickingRequestsLeaveNoBacklog(t *testing.T) {
	be := &fakeBackend{hidden: 8, gate: make(chan struct{})}
	eng := startEngine(t, defaultOptions(), be)
	go func() {
		_, _ = eng.Embed(context.Background(), &gateway.EmbedRequest{Inputs: texts("running"), Truncate: true})
	}()
	for be.calls.Load() == 0 {
		runtime.Gosched()
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := eng.Busy(ctx); gateway.KindOf(err) == gateway.Overloaded || err == nil {
		t.Errorf("Busy(cancelled) = %v, want the context's error", err)
	}
	expired, cancelExpired := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancelExpired()
	if _, err := eng.Embed(expired, &gateway.EmbedRequest{Inputs: texts("late"), Truncate: true}); gateway.KindOf(err) != gateway.Timeout {
		t.Errorf("Embed past its deadline = %v, want Timeout", err)
	}
	func() {
		defer func() { _ = recover() }()
		_, _ = eng.Embed(context.Background(), &gateway.EmbedRequest{Inputs: texts("charged"), Truncate: true,
			Charge: func(context.Context, int) error { panic("charge failed badly") }})
	}()
	if q := eng.backlog.Queued(); q != 0 {
		t.Errorf("%d tokens left in the backlog by a panicking charge", q)
	}
	close(be.gate)
}
