package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/embedgate/embedgate/gateway/backend/triton/tritontest"
)

// teiDims is the length of the vector TEI's /embed gives, without model:
// the default model's width.
func (g *instance) teiDims(t *testing.T) int {
	t.Helper()
	r := g.post(t, "/embed", `{"inputs":"hello"}`)
	if r.status != 200 {
		t.Fatalf("TEI /embed = %d %s", r.status, r.body)
	}
	return len(decode[[][]float32](t, r)[0])
}

// TestDiscoveryDefaultStays: without --default-model, a model Triton loads
// later that sorts first by name must not take over the requests that name
// no model (the TEI routes): their vectors would change width and meaning
// without a word.
func TestDiscoveryDefaultStays(t *testing.T) {
	t.Parallel()
	bertDir, xlmrDir := twoModels(t)
	srv := tritontest.StartMulti(t,
		tritontest.WithModel("m-bert", runner(t, bertDir), tritontest.ModelParameters(map[string]string{"hf_model_id": bertDir})),
		tritontest.WithModel("a-xlmr", runner(t, xlmrDir), tritontest.ModelParameters(map[string]string{"hf_model_id": xlmrDir}), tritontest.ModelUnloaded()),
	)
	env := catalogueEnv(t)
	env["TRITON_DISCOVER"], env["TRITON_URL"], env["TRITON_DISCOVER_INTERVAL"] = "true", srv.Addr(), "100ms"
	g := startGateway(t, env)
	if n := g.teiDims(t); n != 32 {
		t.Fatalf("default model before the load: %d dims, want 32 (m-bert)", n)
	}
	if err := srv.Load("a-xlmr"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { n, _ := g.dims(t, "a-xlmr"); return n == 16 }, "model a-xlmr served after its load")
	if n := g.teiDims(t); n != 32 {
		t.Errorf("default model after a-xlmr loaded: %d dims, want 32 (m-bert stays the default)", n)
	}
}

// TestDiscoveryFirstModelBroken: a discovered model that does not open
// must not keep the others from serving, even when it sorts first (and so
// would be the default).
func TestDiscoveryFirstModelBroken(t *testing.T) {
	t.Parallel()
	bertDir, _ := twoModels(t)
	bert := runner(t, bertDir)
	srv := tritontest.StartMulti(t,
		tritontest.WithModel("a-broken", bert, tritontest.ModelParameters(map[string]string{"hf_model_id": filepath.Join(t.TempDir(), "missing")})),
		tritontest.WithModel("b-bert", bert, tritontest.ModelParameters(map[string]string{"hf_model_id": bertDir})),
	)
	env := catalogueEnv(t)
	env["TRITON_DISCOVER"], env["TRITON_URL"] = "true", srv.Addr()
	g := startGateway(t, env)
	if n := g.teiDims(t); n != 32 {
		t.Errorf("default model: %d dims, want 32 (b-bert)", n)
	}
	if _, r := g.dims(t, "a-broken"); r.status != 404 {
		t.Errorf("a-broken = %d %s, want 404", r.status, r.body)
	}
}

// TestDiscoveryLogsOnce: discovery applies the catalogue at every poll; a
// problem that lasts (a model that does not open, a discovered model
// whose name the models file already uses) is logged once, not at every
// poll, and the catalogue line only when the models change.
func TestDiscoveryLogsOnce(t *testing.T) {
	t.Parallel()
	bertDir, _ := twoModels(t)
	bert := runner(t, bertDir)
	missing := filepath.Join(t.TempDir(), "missing")
	srv := tritontest.StartMulti(t,
		tritontest.WithModel("bert", bert, tritontest.ModelParameters(map[string]string{"hf_model_id": bertDir})),
		tritontest.WithModel("broken", bert, tritontest.ModelParameters(map[string]string{"hf_model_id": missing})),
		tritontest.WithModel("later", bert, tritontest.ModelParameters(map[string]string{"hf_model_id": bertDir}), tritontest.ModelUnloaded()),
	)
	file := filepath.Join(t.TempDir(), "models.yaml")
	writeFile(t, file, fmt.Sprintf("models:\n  - {name: bert, model_id: %s, backend: triton, triton_url: %s}\n", bertDir, srv.Addr()))
	env := catalogueEnv(t)
	env["MODELS_FILE"] = file
	env["TRITON_DISCOVER"], env["TRITON_URL"], env["TRITON_DISCOVER_INTERVAL"] = "true", srv.Addr(), "100ms"
	g := startGateway(t, env)
	// Two changes: at least two polls after the first, each retrying broken.
	if err := srv.Load("later"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { n, _ := g.dims(t, "later"); return n == 32 }, "model later served after its load")
	if err := srv.Unload("later"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, r := g.dims(t, "later"); return r.status == 404 }, "model later gone after its unload")
	count := func(substr string) int {
		n := 0
		for line := range strings.Lines(g.logs.String()) {
			if strings.Contains(line, substr) {
				n++
			}
		}
		return n
	}
	if n := count(missing); n != 1 {
		t.Errorf("the model that does not open is logged %d times, want once", n)
	}
	if n := count("left out of the catalogue"); n != 1 {
		t.Errorf("the discovered model the file overrides is logged %d times, want once", n)
	}
	// The first poll, later in, later out.
	if n := count("msg=catalogue"); n > 3 {
		t.Errorf("the catalogue line is logged %d times for 3 changes", n)
	}
}
