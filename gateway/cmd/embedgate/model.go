package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/catalog"
	"github.com/embedgate/embedgate/gateway/hfmodel"
	"github.com/embedgate/embedgate/gateway/pooling"
	"github.com/embedgate/embedgate/gateway/tokenizer"
)

// openedModel is what opening a model reads from its files.
type openedModel struct {
	*hfmodel.Model
	dir     string         // the resolved directory (a hub snapshot or the entry's model_id)
	task    string         // the entry's task, else the one config.json says
	pooling pooling.Method // embedding models only
	tok     *tokenizer.Tokenizer
}

// openModel finds e's model (downloading it from the hub if need be),
// reads its configuration, checks the entry against it, and loads its
// tokenizer: all that can fail before the backend is opened. e has the
// gateway's defaults filled in (see withDefaults).
func openModel(ctx context.Context, e catalog.Entry, dtype string, getenv func(string) string, stderr io.Writer) (*openedModel, error) {
	needONNX := e.Backend == "onnx" && e.ONNXFile == ""
	dir, err := hfmodel.Resolve(ctx, e.ModelID, e.Revision, needONNX, dtype, getenv, stderr)
	if err != nil {
		return nil, err
	}
	model, err := hfmodel.Open(dir)
	if err != nil {
		return nil, err
	}
	task := firstNonEmpty(e.Task, model.Task)
	var method pooling.Method
	if task == hfmodel.TaskEmbed {
		if method, err = poolingMethod(e.Pooling, model.Pooling); err != nil {
			return nil, err
		}
	} else if err := embeddingOnly(e); err != nil {
		return nil, err
	}
	if e.MaxInputLength > 0 {
		if e.MaxInputLength > model.MaxInputLength {
			return nil, fmt.Errorf("max_input_length %d is more than the model's %d: it may only lower it", e.MaxInputLength, model.MaxInputLength)
		}
		model.MaxInputLength = e.MaxInputLength
	}
	if len(e.Prompts) > 0 {
		prompts := make(map[string]string, len(model.Prompts)+len(e.Prompts))
		for _, from := range []map[string]string{model.Prompts, e.Prompts} {
			for k, v := range from {
				prompts[k] = v
			}
		}
		model.Prompts = prompts
	}
	tok, err := tokenizer.LoadFile(model.TokenizerPath)
	if err != nil {
		return nil, err
	}
	return &openedModel{Model: model, dir: dir, task: task, pooling: method, tok: tok}, nil
}

// embeddingOnly refuses, for a model that reranks, what only an embedding
// model uses. An entry that says task rerank was checked with the
// catalogue (catalog.Entry.Check); this is for an entry whose task came
// from config.json, so a pooling or prompt does not silently do nothing.
func embeddingOnly(e catalog.Entry) error {
	if e.Task != "" || e.Pooling == "" && len(e.Prompts) == 0 && e.DefaultPromptName == "" {
		return nil
	}
	return errors.New("the model is a reranker (its config.json names a sequence-classification architecture): " +
		"it neither pools nor takes prompts; drop pooling and prompts, or set the task to embed")
}

// onnxPath is the ONNX file of e's model: its onnx_file, or the dtype's.
func (m *openedModel) onnxPath(e catalog.Entry, dtype string) (string, error) {
	if e.ONNXFile == "" {
		return m.ONNXPath(dtype)
	}
	path := filepath.Join(m.dir, filepath.FromSlash(e.ONNXFile))
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("onnx_file: %w", err)
	}
	return path, nil
}

func poolingMethod(flag, fromModel string) (pooling.Method, error) {
	name := firstNonEmpty(flag, fromModel)
	if name == "" {
		return 0, errors.New("the model does not say how to pool (no 1_Pooling/config.json): set --pooling (or the entry's pooling) to cls, mean or last-token")
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
// gateway tokenizes for: a mismatch would give plausible, wrong vectors or
// scores. An output of the other task's kind is the engine's to refuse,
// which says so (see infer.Options.Task).
func checkTritonModel(spec gateway.ModelSpec, model *openedModel) error {
	var problems []error
	switch scores := spec.Output == gateway.Logits; {
	case model.task == hfmodel.TaskRerank && scores && model.NumLabels > 0 && spec.Hidden != model.NumLabels:
		problems = append(problems, fmt.Errorf("triton model %q outputs %d logits per pair but %s says num_labels %d: the Triton model and the model id must be the same model", spec.Name, spec.Hidden, model.Dir, model.NumLabels))
	case model.task == hfmodel.TaskEmbed && !scores && model.HiddenSize > 0 && spec.Hidden != model.HiddenSize:
		problems = append(problems, fmt.Errorf("triton model %q outputs %d dimensions but %s says hidden_size %d: the Triton model and the model id must be the same model", spec.Name, spec.Hidden, model.Dir, model.HiddenSize))
	}
	if spec.VocabSize > 0 && model.VocabSize > 0 && spec.VocabSize != model.VocabSize {
		problems = append(problems, fmt.Errorf("triton model %q has a vocabulary of %d but %s says %d", spec.Name, spec.VocabSize, model.Dir, model.VocabSize))
	}
	return errors.Join(problems...)
}

// hubRevision is the revision /info reports: the hub commit the snapshot
// came from, or none for a local directory (a branch name would mislead).
func hubRevision(modelID, revision, dir string) string {
	if filepath.Clean(dir) == filepath.Clean(modelID) {
		return ""
	}
	if commit, ok := snapshotCommit(dir); ok {
		return commit
	}
	return revision
}
