package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/backend/triton"
	"github.com/embedgate/embedgate/gateway/config"
	"github.com/embedgate/embedgate/gateway/hfmodel"
	"github.com/embedgate/embedgate/gateway/infer"
	"github.com/embedgate/embedgate/gateway/pooling"
	"github.com/embedgate/embedgate/gateway/tokenizer"
)

// openedModel is what the open-model step reads from the model's files.
type openedModel struct {
	*hfmodel.Model
	dir     string // the resolved directory (a hub snapshot or --model-id)
	pooling pooling.Method
	tok     *tokenizer.Tokenizer
}

// openModel finds the model (downloading it from the hub if need be), reads
// its configuration and checks the flags against it, and loads its
// tokenizer: all that can fail before the backend is opened.
func openModel(ctx context.Context, cfg *config.Config, getenv func(string) string, stderr io.Writer) (*openedModel, error) {
	dir, err := hfmodel.Resolve(ctx, cfg.ModelID, cfg.Revision, cfg.Backend == "onnx", cfg.DType, getenv, stderr)
	if err != nil {
		return nil, err
	}
	model, err := hfmodel.Open(dir)
	if err != nil {
		return nil, err
	}
	method, err := poolingMethod(cfg.Pooling, model.Pooling)
	if err != nil {
		return nil, err
	}
	tok, err := tokenizer.LoadFile(model.TokenizerPath)
	if err != nil {
		return nil, err
	}
	return &openedModel{Model: model, dir: dir, pooling: method, tok: tok}, nil
}

// openBackend opens the configured backend and says how many batches may
// run on it at once.
// propagate puts the inference span's trace context on each Triton call.
func openBackend(ctx context.Context, cfg *config.Config, model *hfmodel.Model, logger *slog.Logger,
	propagate func(ctx context.Context, set func(key, value string))) (infer.Backend, int, func(), error) {
	switch cfg.Backend {
	case "onnx":
		path, err := model.ONNXPath(cfg.DType)
		if err != nil {
			return nil, 0, nil, err
		}
		b, err := openONNX(cfg, path, logger)
		if err != nil {
			return nil, 0, nil, err
		}
		// One batch at a time: ONNX Runtime already uses every intra-op
		// thread for it, and a second would only contend.
		return b, 1, func() { _ = b.Close() }, nil
	case "triton":
		b, err := triton.Open(ctx, triton.Options{
			URL:              cfg.TritonURL,
			Model:            cfg.TritonModelName(),
			Timeout:          cfg.TritonTimeout,
			MaxInflight:      cfg.TritonMaxInflight,
			MaxInflightBytes: int64(cfg.TritonMaxInflightMB) << 20,
			Logger:           logger,
			Propagate:        propagate,
		})
		if err != nil {
			return nil, 0, nil, err
		}
		if err := checkTritonModel(b.Spec(), model); err != nil {
			_ = b.Close()
			return nil, 0, nil, err
		}
		// Triton runs several batches at once (instances, its own queue);
		// the backend bounds its calls with the same number.
		return b, cfg.TritonMaxInflight, func() { _ = b.Close() }, nil
	}
	return nil, 0, nil, fmt.Errorf("unknown backend %q", cfg.Backend)
}

func poolingMethod(flag, fromModel string) (pooling.Method, error) {
	name := firstNonEmpty(flag, fromModel)
	if name == "" {
		return 0, errors.New("the model does not say how to pool (no 1_Pooling/config.json): set --pooling to cls, mean or last-token")
	}
	return pooling.ParseMethod(name)
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// checkTritonModel compares what Triton serves with the model files the
// gateway tokenizes for: a mismatch would give plausible, wrong vectors.
func checkTritonModel(spec gateway.ModelSpec, model *hfmodel.Model) error {
	var problems []error
	if model.HiddenSize > 0 && spec.Hidden != model.HiddenSize {
		problems = append(problems, fmt.Errorf("triton model %q outputs %d dimensions but %s says hidden_size %d: --triton-model and --model-id must be the same model", spec.Name, spec.Hidden, model.Dir, model.HiddenSize))
	}
	if spec.VocabSize > 0 && model.VocabSize > 0 && spec.VocabSize != model.VocabSize {
		problems = append(problems, fmt.Errorf("triton model %q has a vocabulary of %d but %s says %d", spec.Name, spec.VocabSize, model.Dir, model.VocabSize))
	}
	return errors.Join(problems...)
}

// hubRevision is the revision /info reports: the hub commit the snapshot
// came from, or none for a local directory (a branch name would mislead).
func hubRevision(cfg *config.Config, dir string) string {
	if filepath.Clean(dir) == filepath.Clean(cfg.ModelID) {
		return ""
	}
	// The hub cache keeps each snapshot under snapshots/<commit>.
	if parent := filepath.Base(filepath.Dir(dir)); parent == "snapshots" {
		return filepath.Base(dir)
	}
	return cfg.Revision
}
