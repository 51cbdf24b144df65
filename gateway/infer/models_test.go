//go:build cgo

package infer

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/admit"
	"github.com/embedgate/embedgate/gateway/backend/onnx"
	"github.com/embedgate/embedgate/gateway/internal/testenv"
	"github.com/embedgate/embedgate/gateway/tokenizer"
	"github.com/prometheus/client_golang/prometheus"
)

// The tests of several models behind one process run each model on ONNX
// Runtime with the generated tiny model (package testmodel).

// openTiny opens the tiny model and its tokenizer; the backend closes
// with the test.
func openTiny(t *testing.T) (*onnx.Backend, *tokenizer.Tokenizer) {
	t.Helper()
	return openDir(t, testenv.TinyModel(t))
}

// openDir opens the generated model in dir on ONNX Runtime, and its
// tokenizer; the backend closes with the test.
func openDir(t testing.TB, dir string) (*onnx.Backend, *tokenizer.Tokenizer) {
	t.Helper()
	be, err := onnx.Open(onnx.Options{LibraryPath: testenv.ORTLib(t), ModelPath: filepath.Join(dir, "onnx", "model.onnx"), IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := be.Close(); err != nil {
			t.Errorf("close backend: %v", err)
		}
	})
	tok, err := tokenizer.LoadFile(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	return be, tok
}

// held runs batches on a real backend, each only once the test lets it
// go (letGo): the test decides when the backend is slow.
type held struct {
	Backend
	arrived  chan struct{} // a token per batch that reached Embed
	release  chan struct{} // closed by letGo
	once     sync.Once
	ended    <-chan struct{} // the test's end: no batch is held past it
	returned atomic.Int64    // batches the backend answered
}

// holding wraps be. A test that fails while a batch is held ends
// anyway: its end (before any cleanup, Run's included) fails the batch,
// which would otherwise keep Run from returning.
func holding(t *testing.T, be Backend) *held {
	return &held{Backend: be, arrived: make(chan struct{}, 64), release: make(chan struct{}), ended: t.Context().Done()}
}

func (h *held) letGo() { h.once.Do(func() { close(h.release) }) }

func (h *held) Embed(ctx context.Context, b *gateway.Batch) (*gateway.Output, error) {
	h.arrived <- struct{}{}
	select {
	case <-h.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-h.ended:
		return nil, errors.New("the test ended with the batch held")
	}
	defer h.returned.Add(1)
	return h.Backend.Embed(ctx, b)
}

// model is one served model's engine options: named, with the shared
// gate (nil = its own).
func model(name string, gate *admit.Gate) Options {
	opts := defaultOptions()
	opts.Name, opts.Aliases, opts.ModelID, opts.Gate = name, []string{name + "-alias"}, "dir/"+name, gate
	return opts
}

// newModel makes an engine whose metrics carry its model label on reg,
// as the process labels each model's; it closes with the test.
func newModel(t *testing.T, opts Options, be Backend, tok *tokenizer.Tokenizer, logger *slog.Logger, reg prometheus.Registerer) *Engine {
	t.Helper()
	eng, err := New(opts, tok, be, logger, modelRegisterer(opts.Name, reg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	return eng
}

func modelRegisterer(name string, reg prometheus.Registerer) prometheus.Registerer {
	return prometheus.WrapRegistererWith(prometheus.Labels{"model": name}, reg)
}

// run drives eng's batch loop until the test ends.
func run(t *testing.T, eng *Engine) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v", err)
		}
	})
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// sample is one series of a gathered family: its labels as "k=v,..."
// (sorted) and its value (a histogram's sample count).
type sample struct {
	labels string
	value  float64
}

func gather(t *testing.T, reg *prometheus.Registry, family string) []sample {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []sample
	for _, f := range families {
		if f.GetName() != family {
			continue
		}
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			sort.Strings(labels)
			s := sample{labels: strings.Join(labels, ",")}
			switch {
			case m.GetCounter() != nil:
				s.value = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				s.value = m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				s.value = float64(m.GetHistogram().GetSampleCount())
			}
			out = append(out, s)
		}
	}
	return out
}

// value is the series of family with exactly labels, and whether it exists.
func value(t *testing.T, reg *prometheus.Registry, family, labels string) (float64, bool) {
	t.Helper()
	for _, s := range gather(t, reg, family) {
		if s.labels == labels {
			return s.value, true
		}
	}
	return 0, false
}

// pipelineFamilies are the series every model has, the batch queue's
// included.
var pipelineFamilies = []string{
	"embedgate_tokenization_duration_seconds", "embedgate_queue_duration_seconds", "embedgate_inference_duration_seconds",
	"embedgate_queue_tokens", "embedgate_backend_tokens_per_second",
	"embedgate_queue_size", "embedgate_batch_size", "embedgate_batch_tokens", "embedgate_batch_padding_ratio", "embedgate_queue_dropped_total",
}

// TestModelsShareOneRegistry: the engines of two models register on one
// registry, each series labelled by model and every label value there
// from the start; the gate's series are there once, unlabelled. Close
// gives back every series of one model, the other's stay, and the model
// can then register again (a reload).
func TestModelsShareOneRegistry(t *testing.T) {
	be, tok := openTiny(t)
	reg := prometheus.NewRegistry()
	gate, err := NewGate(4, reg)
	if err != nil {
		t.Fatal(err)
	}
	a := newModel(t, model("a", gate), be, tok, discard(), reg)
	b := newModel(t, model("b", gate), be, tok, discard(), reg)
	run(t, a)
	if _, err := a.Embed(context.Background(), &gateway.EmbedRequest{Inputs: texts("hello"), Truncate: true}); err != nil {
		t.Fatal(err)
	}
	for _, family := range pipelineFamilies {
		for _, name := range []string{"a", "b"} {
			if _, ok := value(t, reg, family, "model="+name); !ok {
				t.Errorf("%s has no series of model %s: %v", family, name, gather(t, reg, family))
			}
		}
	}
	if n, _ := value(t, reg, "embedgate_inference_duration_seconds", "model=a"); n != 1 {
		t.Errorf("model a ran %v batches, want 1", n)
	}
	if n, _ := value(t, reg, "embedgate_inference_duration_seconds", "model=b"); n != 0 {
		t.Errorf("model b ran %v batches, want 0: a's batch was counted as b's", n)
	}
	for _, name := range []string{"a", "b"} {
		for _, reason := range []string{"concurrency", "backlog"} {
			if _, ok := value(t, reg, "embedgate_overload_rejections_total", "model="+name+",reason="+reason); !ok {
				t.Errorf("no overload series of model %s, reason %s before any refusal", name, reason)
			}
		}
		for _, kind := range []string{"Timeout", "Unhealthy", "Overloaded", "Backend", "Internal"} {
			if _, ok := value(t, reg, "embedgate_backend_errors_total", "kind="+kind+",model="+name); !ok {
				t.Errorf("no backend error series of model %s, kind %s before any failure", name, kind)
			}
		}
	}
	if got := gather(t, reg, "embedgate_requests_max_in_flight"); len(got) != 1 || got[0] != (sample{"", 4}) {
		t.Errorf("max in flight series %v, want one of 4 without a model", got)
	}
	if got := gather(t, reg, "embedgate_requests_in_flight"); len(got) != 1 || got[0].labels != "" {
		t.Errorf("in flight series %v, want one without a model", got)
	}
	if i := b.Info(); i.MaxConcurrent != 4 || i.Name != "b" || len(i.Aliases) != 1 || i.Aliases[0] != "b-alias" {
		t.Errorf("Info() = %+v, want name b, alias b-alias, max concurrent 4 (the gate's)", i)
	}

	// A second engine of model a is refused, and its failure leaves
	// the first one's series in place.
	if _, err := New(model("a", gate), tok, be, discard(), modelRegisterer("a", reg)); !errors.As(err, new(prometheus.AlreadyRegisteredError)) {
		t.Errorf("second engine of model a: %v, want AlreadyRegisteredError", err)
	}
	for _, family := range pipelineFamilies {
		if _, ok := value(t, reg, family, "model=a"); !ok {
			t.Errorf("the refused engine took model a's %s", family)
		}
	}

	a.Close()
	for _, family := range append(pipelineFamilies, "embedgate_overload_rejections_total", "embedgate_backend_errors_total") {
		var ofB int
		for _, s := range gather(t, reg, family) {
			if strings.Contains(s.labels, "model=a") {
				t.Errorf("after Close, %s still has %v", family, s)
			}
			if strings.Contains(s.labels, "model=b") {
				ofB++
			}
		}
		if ofB == 0 {
			t.Errorf("closing model a took model b's %s", family)
		}
	}
	if len(gather(t, reg, "embedgate_requests_in_flight")) != 1 {
		t.Error("closing a model took the shared gate's series")
	}
	again := newModel(t, model("a", gate), be, tok, discard(), reg)
	if n, ok := value(t, reg, "embedgate_inference_duration_seconds", "model=a"); !ok || n != 0 {
		t.Errorf("reloaded model a: inference series %v, %v; want a fresh one at 0", n, ok)
	}
	again.Close()
}

// A New that fails part way through registering takes back what it
// registered: otherwise the model's next engine would be refused for
// good by the half it left.
func TestFailedNewLeavesNothingRegistered(t *testing.T) {
	be, tok := openTiny(t)
	reg := prometheus.NewRegistry()
	// The queue's series come last: block the last of them.
	blocker := prometheus.NewCounter(prometheus.CounterOpts{Name: "embedgate_queue_dropped_total", Help: "Inputs dropped before inference because their request was done."})
	c := modelRegisterer("c", reg)
	if err := c.Register(blocker); err != nil {
		t.Fatal(err)
	}
	if _, err := New(model("c", nil), tok, be, discard(), c); err == nil {
		t.Fatal("New registered over a series already there")
	}
	c.Unregister(blocker)
	eng, err := New(model("c", nil), tok, be, discard(), c)
	if err != nil {
		t.Fatalf("New after the failed one: %v", err)
	}
	// An engine of its own gate registers the gate's series, for its
	// model, and gives them back too.
	if n, ok := value(t, reg, "embedgate_requests_max_in_flight", "model=c"); !ok || n != 8 {
		t.Errorf("own gate's max in flight = %v, %v; want 8 for model c", n, ok)
	}
	eng.Close()
	if families, _ := reg.Gather(); len(families) != 0 {
		t.Errorf("after Close, %d families remain, the first %s", len(families), families[0].GetName())
	}
}

// TestSharedGateRefusesAcrossModels: the gate bounds the process, not
// each model: with model a's request holding its only place, model b's
// request is refused with 429 at once (counted as b's refusal), and
// served once a's is done.
func TestSharedGateRefusesAcrossModels(t *testing.T) {
	be, tok := openTiny(t)
	reg := prometheus.NewRegistry()
	gate, err := NewGate(1, reg)
	if err != nil {
		t.Fatal(err)
	}
	slow := holding(t, be)
	a := newModel(t, model("a", gate), slow, tok, discard(), reg)
	b := newModel(t, model("b", gate), be, tok, discard(), reg)
	run(t, a)
	run(t, b)
	first := make(chan error, 1)
	go func() {
		_, err := a.Embed(context.Background(), &gateway.EmbedRequest{Inputs: texts("held"), Truncate: true})
		first <- err
	}()
	<-slow.arrived

	if err := b.Busy(context.Background()); gateway.KindOf(err) != gateway.Overloaded {
		t.Errorf("b.Busy with a holding the gate = %v, want Overloaded", err)
	}
	_, err = b.Embed(context.Background(), &gateway.EmbedRequest{Inputs: texts("refused"), Truncate: true})
	var ge *gateway.Error
	if !errors.As(err, &ge) || ge.Kind != gateway.Overloaded || ge.RetryAfter <= 0 {
		t.Errorf("b.Embed with a holding the gate = %v, want Overloaded with Retry-After", err)
	}
	if n, _ := value(t, reg, "embedgate_overload_rejections_total", "model=b,reason=concurrency"); n != 2 {
		t.Errorf("model b's concurrency refusals = %v, want 2 (Busy and Embed)", n)
	}
	if n, _ := value(t, reg, "embedgate_overload_rejections_total", "model=a,reason=concurrency"); n != 0 {
		t.Errorf("model a's concurrency refusals = %v, want 0", n)
	}
	if n, _ := value(t, reg, "embedgate_requests_in_flight", ""); n != 1 {
		t.Errorf("in flight = %v, want 1", n)
	}
	slow.letGo()
	if err := <-first; err != nil {
		t.Fatalf("a's request: %v", err)
	}
	if _, err := b.Embed(context.Background(), &gateway.EmbedRequest{Inputs: texts("now"), Truncate: true}); err != nil {
		t.Errorf("b's request once a's is done: %v", err)
	}
}

// The engine's log lines say which model they are about.
func TestLogLinesNameTheModel(t *testing.T) {
	be, tok := openTiny(t)
	logs := &testenv.LogBuffer{}
	opts := model("e5", nil)
	opts.Calibrate = true
	eng := newModel(t, opts, be, tok, slog.New(slog.NewTextHandler(logs, nil)), prometheus.NewRegistry())
	run(t, eng)
	for !eng.Ready() {
		runtime.Gosched()
	}
	if !strings.Contains(logs.String(), "msg=\"backend calibrated\"") || !strings.Contains(logs.String(), "model=e5") {
		t.Errorf("calibration log %q, want it to name model e5", logs.String())
	}
}
