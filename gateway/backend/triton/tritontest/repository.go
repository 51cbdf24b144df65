package tritontest

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/tritonstubs"
)

// ModelOption configures one model added with WithModel.
type ModelOption func(*modelConfig)

// modelConfig is one model of the repository as the options describe it.
type modelConfig struct {
	name         string
	model        Model
	maxBatchSize int
	params       map[string]string
	unloaded     bool
}

// ModelMaxBatchSize sets the model's max_batch_size (default 32); 0 turns
// Triton batching off, as WithMaxBatchSize does for New's model.
func ModelMaxBatchSize(n int) ModelOption { return func(c *modelConfig) { c.maxBatchSize = n } }

// ModelParameters sets the string parameters of the model's config
// (config.pbtxt's parameters { key: ... value: { string_value: ... } }),
// e.g. hf_model_id.
func ModelParameters(p map[string]string) ModelOption {
	return func(c *modelConfig) { c.params = maps.Clone(p) }
}

// ModelUnloaded leaves the model in the repository but not loaded, as
// Triton with --model-control-mode=explicit does for a model not named by
// --load-model: RepositoryModelLoad (or Server.Load) loads it.
func ModelUnloaded() ModelOption { return func(c *modelConfig) { c.unloaded = true } }

// WithModel adds a model named name to the repository, next to New's
// model: each model has its own Model (and so its own hidden size, output
// and token_type_ids), max_batch_size and config parameters. The input
// dtype (SetInt32Inputs), faults and delay stay server-wide.
func WithModel(name string, m Model, opts ...ModelOption) Option {
	return func(c *config) {
		mc := modelConfig{name: name, model: m, maxBatchSize: defaultMaxBatchSize}
		for _, o := range opts {
			o(&mc)
		}
		c.models = append(c.models, mc)
	}
}

// entry is one model of the repository. Its fields other than the state
// are fixed at New.
type entry struct {
	name         string
	model        Model
	spec         gateway.ModelSpec
	maxBatchSize int
	params       map[string]string

	// Guarded by Server.mu.
	loaded     bool // ready to serve
	everLoaded bool // Triton keeps an unloaded model's versions, and says so
}

// newEntry checks one model's configuration.
func newEntry(mc modelConfig) (*entry, error) {
	if mc.name == "" {
		return nil, fmt.Errorf("tritontest: model with no name")
	}
	if mc.model == nil {
		return nil, fmt.Errorf("tritontest: model %q is nil", mc.name)
	}
	if mc.maxBatchSize < 0 {
		return nil, fmt.Errorf("tritontest: model %q: max_batch_size %d < 0", mc.name, mc.maxBatchSize)
	}
	spec := mc.model.Spec()
	if spec.Hidden <= 0 {
		return nil, fmt.Errorf("tritontest: model %q: hidden size %d, want > 0", mc.name, spec.Hidden)
	}
	return &entry{name: mc.name, model: mc.model, spec: spec, maxBatchSize: mc.maxBatchSize, params: mc.params,
		loaded: !mc.unloaded, everLoaded: !mc.unloaded}, nil
}

// repository builds the models' entries, keyed by name.
func repository(models []modelConfig) (map[string]*entry, error) {
	if len(models) == 0 {
		return nil, fmt.Errorf("tritontest: no model to serve (add one with WithModel)")
	}
	byName := make(map[string]*entry, len(models))
	for _, mc := range models {
		e, err := newEntry(mc)
		if err != nil {
			return nil, err
		}
		if byName[e.name] != nil {
			return nil, fmt.Errorf("tritontest: model %q added twice", e.name)
		}
		byName[e.name] = e
	}
	return byName, nil
}

// lookup resolves name and version as Triton's model lifecycle does
// (version "" = the latest ready one), with its codes and messages: a model
// never loaded is not found; one loaded and then unloaded has no available
// versions, or its version is not at ready state.
func (s *Server) lookup(name, version string) (*entry, error) {
	s.mu.Lock()
	e := s.models[name]
	var loaded, ever bool
	if e != nil {
		loaded, ever = e.loaded, e.everLoaded
	}
	s.mu.Unlock()
	switch {
	case !ever:
		return nil, status.Errorf(codes.NotFound, "Request for unknown model: '%s' is not found", name)
	case version != "" && version != "1":
		return nil, status.Errorf(codes.NotFound, "Request for unknown model: '%s' version %s is not found", name, version)
	case !loaded && version == "":
		return nil, status.Errorf(codes.NotFound, "Request for unknown model: '%s' has no available versions", name)
	case !loaded:
		return nil, status.Errorf(codes.Unavailable, "Request for unknown model: '%s' version %s is not at ready state", name, version)
	}
	return e, nil
}

// Load loads (or reloads) the named model, as RepositoryModelLoad does; a
// name not in the repository is Triton's INTERNAL "failed to poll" error.
func (s *Server) Load(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.models[name]
	if e == nil {
		return status.Errorf(codes.Internal, "failed to load '%s', failed to poll from model repository", name)
	}
	e.loaded, e.everLoaded = true, true
	return nil
}

// Unload unloads the named model, as RepositoryModelUnload does: from now
// on it is not ready, and calls for it fail as Triton's do. Calls already
// running finish. Unlike the RPC, which answers OK for any name as Triton
// does, Unload refuses a name not in the repository, to catch typos in
// tests.
func (s *Server) Unload(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.models[name]
	if e == nil {
		return fmt.Errorf("tritontest: unload %q: no such model in the repository", name)
	}
	e.loaded = false
	return nil
}

func (v *service) RepositoryModelLoad(_ context.Context, req *tritonstubs.RepositoryModelLoadRequest) (*tritonstubs.RepositoryModelLoadResponse, error) {
	if len(req.GetParameters()) > 0 {
		return nil, status.Errorf(codes.Unimplemented, "tritontest: load parameters (config or file overrides) are not supported")
	}
	if err := v.s.Load(req.GetModelName()); err != nil {
		return nil, err
	}
	return &tritonstubs.RepositoryModelLoadResponse{}, nil
}

func (v *service) RepositoryModelUnload(_ context.Context, req *tritonstubs.RepositoryModelUnloadRequest) (*tritonstubs.RepositoryModelUnloadResponse, error) {
	// Triton unloads nothing, successfully, for a name it does not serve.
	_ = v.s.Unload(req.GetModelName())
	return &tritonstubs.RepositoryModelUnloadResponse{}, nil
}

// RepositoryIndex lists the repository by name as Triton does: a model
// never loaded by its name alone, a loaded one as version 1 READY (LOADING
// while the NotReady fault plays), an unloaded one UNAVAILABLE "unloaded".
// With ready set, only the READY ones.
func (v *service) RepositoryIndex(_ context.Context, req *tritonstubs.RepositoryIndexRequest) (*tritonstubs.RepositoryIndexResponse, error) {
	notReady := v.fault() == NotReady
	v.s.mu.Lock()
	defer v.s.mu.Unlock()
	resp := &tritonstubs.RepositoryIndexResponse{}
	for _, name := range slices.Sorted(maps.Keys(v.s.models)) {
		e := v.s.models[name]
		m := &tritonstubs.RepositoryIndexResponse_ModelIndex{Name: name}
		switch {
		case e.loaded && notReady:
			m.Version, m.State = "1", "LOADING"
		case e.loaded:
			m.Version, m.State = "1", "READY"
		case e.everLoaded:
			m.Version, m.State, m.Reason = "1", "UNAVAILABLE", "unloaded"
		}
		if req.GetReady() && m.State != "READY" {
			continue
		}
		resp.Models = append(resp.Models, m)
	}
	return resp, nil
}
