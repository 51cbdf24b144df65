//go:build cgo

package fleet_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/admit"
	"github.com/embedgate/embedgate/gateway/backend/onnx"
	"github.com/embedgate/embedgate/gateway/backend/triton"
	"github.com/embedgate/embedgate/gateway/backend/triton/tritontest"
	"github.com/embedgate/embedgate/gateway/catalog"
	"github.com/embedgate/embedgate/gateway/fleet"
	"github.com/embedgate/embedgate/gateway/infer"
	"github.com/embedgate/embedgate/gateway/internal/testenv"
	"github.com/embedgate/embedgate/gateway/pooling"
	"github.com/embedgate/embedgate/gateway/tokenizer"
)

// rig opens pipelines on real backends: every entry's model_id names a
// backend of the rig ("broken" fails to open; "rerank" is the tiny
// reranker, for entries with task rerank). The backends outlive the
// pipelines, as a Triton server outlives the models it serves.
type rig struct {
	t        *testing.T
	dir      string // the tiny model
	reg      *prometheus.Registry
	gate     *admit.Gate
	backends map[string]infer.Backend
	opened   sync.Map // name -> count of opens
}

func newRig(t *testing.T) *rig {
	t.Helper()
	dir := testenv.TinyModel(t)
	b, err := onnx.Open(onnx.Options{LibraryPath: testenv.ORTLib(t), ModelPath: filepath.Join(dir, "onnx", "model.onnx"), IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	reg := prometheus.NewRegistry()
	gate, err := infer.NewGate(64, reg)
	if err != nil {
		t.Fatal(err)
	}
	rr, err := onnx.Open(onnx.Options{LibraryPath: testenv.ORTLib(t), ModelPath: filepath.Join(testenv.TinyReranker(t), "onnx", "model.onnx"), IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rr.Close() })
	return &rig{t: t, dir: dir, reg: reg, gate: gate, backends: map[string]infer.Backend{"onnx": b, "rerank": rr}}
}

// slow adds a Triton stand-in running the tiny model with delay per call.
func (r *rig) slow(delay time.Duration) *tritontest.Server {
	srv := tritontest.Start(r.t, r.backends["onnx"])
	srv.SetDelay(delay)
	b, err := triton.Open(context.Background(), triton.Options{URL: srv.Addr(), Model: srv.Name(), Timeout: 10 * time.Second})
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { _ = b.Close() })
	r.backends["slow"] = b
	return srv
}

func (r *rig) open(ctx context.Context, e catalog.Entry) (*fleet.Pipeline, error) {
	b, ok := r.backends[e.ModelID]
	if !ok {
		return nil, errors.New("no such backend")
	}
	n, _ := r.opened.LoadOrStore(e.Name, new(int))
	*n.(*int)++
	tok, err := tokenizer.LoadFile(filepath.Join(r.dir, "tokenizer.json"))
	if err != nil {
		return nil, err
	}
	method := pooling.Mean
	if e.Task == gateway.TaskRerank {
		method = 0 // a reranker does not pool
	}
	eng, err := infer.New(infer.Options{Name: e.Name, Aliases: e.Aliases, ModelID: e.ModelID, Gate: r.gate, Task: e.Task,
		Pooling: method, MaxInputLength: 128, MaxBatchTokens: 1024, MaxBatchRequests: 8, MaxClientBatch: 8,
		MaxInflight: 1, Workers: 1}, tok, b, slog.New(slog.DiscardHandler),
		prometheus.WrapRegistererWith(prometheus.Labels{"model": e.Name}, r.reg))
	if err != nil {
		return nil, err
	}
	return &fleet.Pipeline{Engine: eng, Entry: e}, nil
}

func (r *rig) opens(name string) int {
	n, ok := r.opened.Load(name)
	if !ok {
		return 0
	}
	return *n.(*int)
}

// newFleet makes a running fleet; it stops with the test.
func newFleet(t *testing.T, r *rig, opts fleet.Options) *fleet.Fleet {
	f := fleet.New(r.open, slog.New(slog.NewTextHandler(io.Discard, nil)), opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = f.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return f
}

func embed(t *testing.T, f *fleet.Fleet, model string) error {
	t.Helper()
	m, ok := f.Lookup(model)
	if !ok {
		return errors.New("not found")
	}
	_, err := m.Engine.Embed(context.Background(), &gateway.EmbedRequest{Inputs: []gateway.Input{{Text: "hello " + model}}, Normalize: true})
	return err
}

func TestLookup(t *testing.T) {
	r := newRig(t)
	f := newFleet(t, r, fleet.Options{})
	err := f.Apply(context.Background(), []catalog.Entry{
		{Name: "b", ModelID: "onnx"},
		{Name: "a", Aliases: []string{"text-embedding-3-small"}, ModelID: "onnx"},
	}, "b")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"": "b", "b": "b", "a": "a", "text-embedding-3-small": "a"} {
		m, ok := f.Lookup(name)
		if !ok || m.Name != want {
			t.Errorf("Lookup(%q) = %v, %v; want %q", name, m, ok, want)
		}
	}
	if m, ok := f.Lookup("c"); ok {
		t.Errorf("Lookup(c) = %v, want none", m.Name)
	}
	var names []string
	for _, m := range f.List() {
		names = append(names, m.Name)
	}
	if strings.Join(names, ",") != "b,a" {
		t.Errorf("List = %v, want the default first: b,a", names)
	}
	if err := embed(t, f, "text-embedding-3-small"); err != nil {
		t.Errorf("embed through the alias: %v", err)
	}
}

// DefaultFor is the default model when it does the task, else the first
// model of the catalogue (not by name) that does.
func TestDefaultFor(t *testing.T) {
	r := newRig(t)
	f := newFleet(t, r, fleet.Options{})
	entries := []catalog.Entry{
		{Name: "e1", ModelID: "onnx"},
		{Name: "r2", ModelID: "rerank", Task: gateway.TaskRerank},
		{Name: "r1", ModelID: "rerank", Task: gateway.TaskRerank},
		{Name: "e0", ModelID: "onnx", Task: gateway.TaskEmbed},
	}
	for _, tt := range []struct {
		def, embed, rerank string
	}{
		{"e1", "e1", "r2"},
		{"r1", "e1", "r1"},
		{"e0", "e0", "r2"},
	} {
		if err := f.Apply(context.Background(), entries, tt.def); err != nil {
			t.Fatal(err)
		}
		for task, want := range map[string]string{gateway.TaskEmbed: tt.embed, gateway.TaskRerank: tt.rerank} {
			if m, ok := f.DefaultFor(task); !ok || m.Name != want || m.Task != task {
				t.Errorf("default %s: DefaultFor(%s) = %+v, %v; want %s", tt.def, task, m, ok, want)
			}
		}
	}
	m, _ := f.DefaultFor(gateway.TaskRerank)
	if _, err := m.Engine.Rerank(context.Background(), &gateway.RerankRequest{Query: "q", Documents: []string{"d"}, Truncate: true}); err != nil {
		t.Errorf("the default reranker does not rerank: %v", err)
	}
	if err := f.Apply(context.Background(), entries[:1], "e1"); err != nil {
		t.Fatal(err)
	}
	if m, ok := f.DefaultFor(gateway.TaskRerank); ok {
		t.Errorf("without rerankers DefaultFor(rerank) = %s, want none", m.Name)
	}
}

func TestLenient(t *testing.T) {
	r := newRig(t)
	f := newFleet(t, r, fleet.Options{Lenient: true})
	if err := f.Apply(context.Background(), []catalog.Entry{{Name: "only", ModelID: "onnx"}}, "only"); err != nil {
		t.Fatal(err)
	}
	if m, ok := f.Lookup("whatever-the-client-says"); !ok || m.Name != "only" {
		t.Errorf("lenient Lookup = %v, %v; want the one model", m, ok)
	}
}

// TestApplyChanges: an unchanged entry keeps its pipeline, a changed one
// is reopened, a new one opened, a removed one retired; a model that
// fails to open is left out and said so, the rest applied.
func TestApplyChanges(t *testing.T) {
	r := newRig(t)
	f := newFleet(t, r, fleet.Options{})
	ctx := context.Background()
	if err := f.Apply(ctx, []catalog.Entry{{Name: "keep", ModelID: "onnx"}, {Name: "change", ModelID: "onnx"}, {Name: "drop", ModelID: "onnx"}}, "keep"); err != nil {
		t.Fatal(err)
	}
	keep, _ := f.Lookup("keep")
	dropped, _ := f.Lookup("drop")
	err := f.Apply(ctx, []catalog.Entry{
		{Name: "keep", ModelID: "onnx"},
		{Name: "change", ModelID: "onnx", Aliases: []string{"changed"}, MaxBatchTokens: 2048},
		{Name: "new", ModelID: "onnx"},
		{Name: "bad", ModelID: "broken"},
	}, "keep")
	if err == nil || !strings.Contains(err.Error(), `"bad"`) {
		t.Fatalf("Apply = %v, want the error of model bad", err)
	}
	if m, _ := f.Lookup("keep"); m != keep || r.opens("keep") != 1 {
		t.Errorf("keep was reopened (%d opens)", r.opens("keep"))
	}
	if r.opens("change") != 2 {
		t.Errorf("change opened %d times, want 2", r.opens("change"))
	}
	for _, name := range []string{"changed", "new"} {
		if err := embed(t, f, name); err != nil {
			t.Errorf("embed %s: %v", name, err)
		}
	}
	for _, name := range []string{"drop", "bad"} {
		if _, ok := f.Lookup(name); ok {
			t.Errorf("%s still served", name)
		}
	}
	// The retired engine refuses what reaches it late: 503, not a hang.
	waitFor(t, func() bool {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := dropped.Engine.Embed(lctx, &gateway.EmbedRequest{Inputs: []gateway.Input{{Text: "late"}}})
		return gateway.KindOf(err) == gateway.Unhealthy
	})
}

// TestApplyWithoutDefault: a catalogue whose default does not open
// changes nothing.
func TestApplyWithoutDefault(t *testing.T) {
	r := newRig(t)
	f := newFleet(t, r, fleet.Options{})
	ctx := context.Background()
	if err := f.Apply(ctx, []catalog.Entry{{Name: "a", ModelID: "onnx"}}, "a"); err != nil {
		t.Fatal(err)
	}
	err := f.Apply(ctx, []catalog.Entry{{Name: "b", ModelID: "onnx"}, {Name: "c", ModelID: "broken"}}, "c")
	if err == nil {
		t.Fatal("Apply with a default that does not open: want an error")
	}
	if m, ok := f.Default(); !ok || m.Name != "a" {
		t.Errorf("default = %v, want a (unchanged)", m)
	}
	if _, ok := f.Lookup("b"); ok {
		t.Error("b served from a catalogue that was not applied")
	}
}

// TestApplyWithoutDefaultKeepsMetrics: a catalogue not applied because
// its new default does not open leaves the running models as they were,
// their metrics included.
func TestApplyWithoutDefaultKeepsMetrics(t *testing.T) {
	r := newRig(t)
	f := newFleet(t, r, fleet.Options{})
	ctx := context.Background()
	if err := f.Apply(ctx, []catalog.Entry{{Name: "a", ModelID: "onnx"}}, "a"); err != nil {
		t.Fatal(err)
	}
	err := f.Apply(ctx, []catalog.Entry{{Name: "a", ModelID: "onnx", Aliases: []string{"ada"}}, {Name: "c", ModelID: "broken"}}, "c")
	if err == nil {
		t.Fatal("Apply with a default that does not open: want an error")
	}
	if _, ok := f.Lookup("ada"); ok {
		t.Error("a's new alias served from a catalogue that was not applied")
	}
	if !hasSeries(t, r.reg, "embedgate_queue_tokens", "a") {
		t.Error(`a still serves, but embedgate_queue_tokens{model="a"} is gone`)
	}
}

// hasSeries says whether reg has a series of the metric name for model.
func hasSeries(t *testing.T, reg *prometheus.Registry, name, model string) bool {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range families {
		if fam.GetName() != name {
			continue
		}
		for _, m := range fam.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "model" && l.GetValue() == model {
					return true
				}
			}
		}
	}
	return false
}

// TestRetireFinishesRequests: a model removed while a request waits for
// its batch answers it; the other model serves on.
func TestRetireFinishesRequests(t *testing.T) {
	r := newRig(t)
	r.slow(300 * time.Millisecond)
	f := newFleet(t, r, fleet.Options{})
	ctx := context.Background()
	if err := f.Apply(ctx, []catalog.Entry{{Name: "stay", ModelID: "onnx"}, {Name: "go", ModelID: "slow"}}, "stay"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { m, _ := f.Lookup("go"); return m.Engine.Ready() })
	gone, _ := f.Lookup("go")
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			_, err := gone.Engine.Embed(ctx, &gateway.EmbedRequest{Inputs: []gateway.Input{{Text: "in flight"}}})
			errs <- err
		}()
	}
	waitFor(t, func() bool { return r.gate.InFlight() == 4 }) // all inside the engine
	if err := f.Apply(ctx, []catalog.Entry{{Name: "stay", ModelID: "onnx"}}, "stay"); err != nil {
		t.Fatal(err)
	}
	if err := embed(t, f, "stay"); err != nil {
		t.Errorf("the other model: %v", err)
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Errorf("request in flight on the retired model = %v, want its answer", err)
		}
	}
}

// TestNothingRunsBeforeRun: Apply opens models; only Run runs their
// engines, so a start that fails after Apply leaves nothing running.
func TestNothingRunsBeforeRun(t *testing.T) {
	r := newRig(t)
	f := fleet.New(r.open, slog.New(slog.DiscardHandler), fleet.Options{})
	if err := f.Apply(context.Background(), []catalog.Entry{{Name: "a", ModelID: "onnx"}}, "a"); err != nil {
		t.Fatal(err)
	}
	m, _ := f.Lookup("a")
	time.Sleep(100 * time.Millisecond) // a started engine would calibrate and turn ready by now
	if state := m.Engine.Info().State; state != "loading" {
		t.Fatalf("before Run, state = %q, want loading", state)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = f.Run(ctx) }()
	waitFor(t, m.Engine.Ready)
	cancel()
	<-done
	if _, ok := f.Lookup("a"); ok {
		t.Error("a still served after Run returned")
	}
}

func TestCloseStopsEverything(t *testing.T) {
	r := newRig(t)
	f := fleet.New(r.open, slog.New(slog.DiscardHandler), fleet.Options{})
	if err := f.Apply(context.Background(), []catalog.Entry{{Name: "a", ModelID: "onnx"}}, "a"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	f.Close()
	if _, ok := f.Lookup("a"); ok {
		t.Error("a served after Close")
	}
	if err := f.Apply(context.Background(), []catalog.Entry{{Name: "a", ModelID: "onnx"}}, "a"); err == nil {
		t.Error("Apply after Close: want an error")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReaddWhileRetiring: a model removed while it still answers a request
// can come back at once, and a replacement is ready when Apply returns.
func TestReaddWhileRetiring(t *testing.T) {
	r := newRig(t)
	r.slow(500 * time.Millisecond)
	f := newFleet(t, r, fleet.Options{})
	ctx := context.Background()
	both := []catalog.Entry{{Name: "a", ModelID: "onnx"}, {Name: "b", ModelID: "slow"}}
	if err := f.Apply(ctx, both, "a"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { m, _ := f.Lookup("b"); return m.Engine.Ready() })
	old, _ := f.Lookup("b")
	answered := make(chan error, 1)
	go func() {
		_, err := old.Engine.Embed(ctx, &gateway.EmbedRequest{Inputs: []gateway.Input{{Text: "slow"}}})
		answered <- err
	}()
	waitFor(t, func() bool { return r.gate.InFlight() == 1 })
	if err := f.Apply(ctx, both[:1], "a"); err != nil {
		t.Fatal(err)
	}
	if err := f.Apply(ctx, both, "a"); err != nil {
		t.Fatalf("b back while the old b still answers: %v", err)
	}
	if m, _ := f.Lookup("b"); !m.Engine.Ready() {
		t.Error("the new b is not ready when Apply returns")
	}
	if err := <-answered; err != nil {
		t.Errorf("the request on the retired b: %v", err)
	}
	if err := embed(t, f, "b"); err != nil {
		t.Errorf("the new b: %v", err)
	}
}

// TestAliasesOnly: new aliases for a model keep its pipeline (no reopen,
// so no second copy of an in-process model) and take effect at once.
func TestAliasesOnly(t *testing.T) {
	r := newRig(t)
	f := newFleet(t, r, fleet.Options{})
	ctx := context.Background()
	if err := f.Apply(ctx, []catalog.Entry{{Name: "a", ModelID: "onnx", Aliases: []string{"x"}}}, "a"); err != nil {
		t.Fatal(err)
	}
	before, _ := f.Lookup("a")
	if err := f.Apply(ctx, []catalog.Entry{{Name: "a", ModelID: "onnx", Aliases: []string{"y", "z"}}}, "a"); err != nil {
		t.Fatal(err)
	}
	if r.opens("a") != 1 {
		t.Errorf("a opened %d times, want 1", r.opens("a"))
	}
	if _, ok := f.Lookup("x"); ok {
		t.Error("the old alias x still finds a")
	}
	after, ok := f.Lookup("z")
	if !ok || after.Engine != before.Engine {
		t.Errorf("alias z = %v, %v; want a's engine", after, ok)
	}
	if err := embed(t, f, "y"); err != nil {
		t.Errorf("embed through the new alias: %v", err)
	}
}
