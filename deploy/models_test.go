package deploy

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/embedgate/embedgate/gateway/catalog"
	"github.com/embedgate/embedgate/gateway/modelrepo"
	"github.com/embedgate/embedgate/tritonstubs"
)

// TestModelsExample: deploy/models.example.yaml is a valid catalogue that
// shows what operators copy from it (both backends, aliases, limits of a
// model's own), and its Triton model is one of model_repository/.
func TestModelsExample(t *testing.T) {
	entries, err := catalog.Load("models.example.yaml")
	if err != nil {
		t.Fatalf("catalog.Load: %v", err)
	}
	if err := catalog.Check(entries, ""); err != nil {
		t.Errorf("catalog.Check: %v", err)
	}
	if got := catalog.Default(entries, ""); got != "bge-small-en-v1.5" {
		t.Errorf("default model = %q, want bge-small-en-v1.5 (the first entry)", got)
	}
	byBackend := map[string]catalog.Entry{}
	for _, e := range entries {
		byBackend[e.Backend] = e
		if len(e.Aliases) == 0 {
			t.Errorf("%s: no aliases", e.Name)
		}
		if e.MaxBatchTokens == 0 && e.MaxBatchRequests == 0 && e.MaxInputLength == 0 {
			t.Errorf("%s: no limit of its own (max_batch_tokens, max_batch_requests, max_input_length)", e.Name)
		}
	}
	onnx, tr := byBackend["onnx"], byBackend["triton"]
	if len(entries) != 2 || onnx.Name == "" || tr.Name == "" {
		t.Fatalf("entries = %+v, want one onnx and one triton model", entries)
	}
	if !slices.Contains(onnx.Aliases, "text-embedding-3-small") {
		t.Errorf("%s aliases = %v, want text-embedding-3-small (as model_repository/ gives it)", onnx.Name, onnx.Aliases)
	}

	name := tr.TritonModel
	if name == "" {
		name = tr.Name
	}
	cfg, err := modelrepo.Load(filepath.Join("..", "model_repository", name, "config.pbtxt"))
	if err != nil {
		t.Fatalf("triton model %q: %v", name, err)
	}
	// Same tokenizer as discovery would take for it.
	if got := cfg.GetParameters()["hf_model_id"].GetStringValue(); got != tr.ModelID {
		t.Errorf("%s: model_id %q, but model_repository/%s says hf_model_id %q", tr.Name, tr.ModelID, name, got)
	}
	// Sized together: the entry's rows fit one Triton request, and the
	// config warms the worst batch Triton can merge from the entry's
	// batches, max_batch_size rows of the entry's longest input.
	mbs := int(cfg.GetMaxBatchSize())
	if tr.MaxBatchRequests == 0 || tr.MaxBatchRequests > mbs {
		t.Errorf("%s: max_batch_requests %d, want 1..%d (model_repository/%s max_batch_size)", tr.Name, tr.MaxBatchRequests, mbs, name)
	}
	if tr.MaxInputLength == 0 || !warms(cfg, mbs, tr.MaxInputLength) {
		t.Errorf("%s: max_input_length %d, but model_repository/%s warms no %d x %d batch (max_batch_size x max_input_length)",
			tr.Name, tr.MaxInputLength, name, mbs, tr.MaxInputLength)
	}
}

// warms reports whether one of cfg's warmup samples is rows x length for
// every input.
func warms(cfg *tritonstubs.ModelConfig, rows, length int) bool {
	for _, w := range cfg.GetModelWarmup() {
		if int(w.GetBatchSize()) != rows || len(w.GetInputs()) == 0 {
			continue
		}
		all := true
		for _, in := range w.GetInputs() {
			all = all && slices.Equal(in.GetDims(), []int64{int64(length)})
		}
		if all {
			return true
		}
	}
	return false
}

// TestRepositoryDiscovery: every model_repository/*/config.pbtxt becomes a
// catalogue entry through discovery, named as its directory, and together
// they are one valid catalogue (names and aliases unique), as when docker
// compose up loads them all.
func TestRepositoryDiscovery(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join("..", "model_repository", "*", "config.pbtxt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatal("no model_repository/*/config.pbtxt")
	}
	var entries []catalog.Entry
	for _, path := range paths {
		dir := filepath.Base(filepath.Dir(path))
		cfg, err := modelrepo.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		params := map[string]string{}
		for k, v := range cfg.GetParameters() {
			params[k] = v.GetStringValue()
		}
		e, err := catalog.FromTriton("triton:8001", dir, params)
		if err != nil && params["task"] == "rerank" && strings.Contains(err.Error(), `task "rerank" is not served yet`) {
			// Until the catalogue serves rerankers (issue 14), check the rest
			// of the entry. Once it does, this branch is never taken.
			delete(params, "task")
			e, err = catalog.FromTriton("triton:8001", dir, params)
		}
		if err != nil {
			t.Errorf("%s: discovery would skip it: %v", dir, err)
			continue
		}
		if e.Name != dir {
			t.Errorf("%s: served as %q, want its directory name", dir, e.Name)
		}
		// A config that caps the input length is sized and warmed for it.
		if mbs := int(cfg.GetMaxBatchSize()); e.MaxInputLength > 0 && !warms(cfg, mbs, e.MaxInputLength) {
			t.Errorf("%s: max_input_length %d, but no warmup of %d x %d (max_batch_size x max_input_length)", dir, e.MaxInputLength, mbs, e.MaxInputLength)
		}
		entries = append(entries, e)
	}
	if err := catalog.Check(entries, ""); err != nil {
		t.Errorf("the repository's models together: %v", err)
	}
	var owners []string
	for _, e := range entries {
		if slices.Contains(e.Aliases, "text-embedding-3-small") {
			owners = append(owners, e.Name)
		}
	}
	if !slices.Equal(owners, []string{"bge-small-en-v1.5"}) {
		t.Errorf("text-embedding-3-small is an alias of %v, want of bge-small-en-v1.5 only", owners)
	}
}
