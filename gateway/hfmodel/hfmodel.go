// Package hfmodel reads a local Hugging Face model directory (config.json,
// tokenizer.json and the sentence-transformers files) into a Model: its
// task (embed or rerank), max input length, pooling, normalization, prompts
// and the ONNX file for a dtype. Resolve turns a --model-id into such a directory, downloading hub
// ids through package hub. It imports the standard library and hub.
package hfmodel

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// The tasks a model directory can serve.
const (
	TaskEmbed  = "embed"  // an encoder whose token states or pooled output are embeddings
	TaskRerank = "rerank" // a cross-encoder: one (query, document) pair in, logits out
)

// Model is what embedgate needs to know about a model directory.
type Model struct {
	Dir       string
	ModelType string // config.json model_type ("bert", "qwen3", …)
	// Task is TaskRerank when config.json's architectures name a
	// sequence-classification head (…ForSequenceClassification, as
	// transformers saves a cross-encoder), else TaskEmbed. TEI decides the
	// same way.
	Task string
	// NumLabels is a rerank model's number of logits per pair: the size of
	// config.json's id2label, else its num_labels, else 2, transformers'
	// default (id2label wins over num_labels there too). 0 for TaskEmbed.
	NumLabels             int
	HiddenSize            int
	VocabSize             int
	MaxPositionEmbeddings int
	// MaxInputLength is sentence_bert_config.json max_seq_length, else
	// max_position_embeddings (less RoBERTa's padding offset), capped by the
	// latter: tokens per input, special tokens included.
	MaxInputLength int
	// Pooling is "cls", "mean" or "last-token" from the sentence-transformers
	// Pooling module; "" when the model does not say (or uses another mode).
	Pooling           string
	Normalize         bool              // modules.json has a Normalize module
	Prompts           map[string]string // config_sentence_transformers.json prompts
	DefaultPromptName string
	TokenizerPath     string
}

// Optional files Open reads when present.
const (
	configFile     = "config.json"
	tokenizerFile  = "tokenizer.json"
	modulesFile    = "modules.json"
	sbertFile      = "sentence_bert_config.json"
	stConfigFile   = "config_sentence_transformers.json"
	defaultPooling = "1_Pooling"
)

// Open reads the model directory dir. config.json and tokenizer.json are
// required; the sentence-transformers files are optional.
func Open(dir string) (*Model, error) {
	m := &Model{Dir: dir, TokenizerPath: filepath.Join(dir, tokenizerFile)}
	if _, err := os.Stat(m.TokenizerPath); err != nil {
		return nil, fmt.Errorf("hfmodel: %s: required file %s: %w", dir, tokenizerFile, err)
	}

	var cfg struct {
		Architectures         []string          `json:"architectures"`
		NumLabels             *int              `json:"num_labels"`
		ID2Label              map[string]string `json:"id2label"`
		ModelType             string            `json:"model_type"`
		HiddenSize            int               `json:"hidden_size"`
		DModel                int               `json:"d_model"`
		NEmbd                 int               `json:"n_embd"`
		VocabSize             int               `json:"vocab_size"`
		MaxPositionEmbeddings int               `json:"max_position_embeddings"`
		NPositions            int               `json:"n_positions"`
		PadTokenID            *int              `json:"pad_token_id"`
	}
	if err := readJSON(dir, configFile, true, &cfg); err != nil {
		return nil, err
	}
	m.ModelType = cfg.ModelType
	var err error
	if m.Task, m.NumLabels, err = task(cfg.Architectures, cfg.ID2Label, cfg.NumLabels); err != nil {
		return nil, fmt.Errorf("hfmodel: %s: %s: %w", dir, configFile, err)
	}
	m.HiddenSize = firstPositive(cfg.HiddenSize, cfg.DModel, cfg.NEmbd)
	m.VocabSize = cfg.VocabSize
	m.MaxPositionEmbeddings = firstPositive(cfg.MaxPositionEmbeddings, cfg.NPositions)

	maxPos := tokenPositions(cfg.ModelType, m.MaxPositionEmbeddings, cfg.PadTokenID)

	var sbert struct {
		MaxSeqLength int `json:"max_seq_length"`
	}
	if err := readJSON(dir, sbertFile, false, &sbert); err != nil {
		return nil, err
	}
	m.MaxInputLength = maxPos
	if sbert.MaxSeqLength > 0 && (maxPos <= 0 || sbert.MaxSeqLength < maxPos) {
		m.MaxInputLength = sbert.MaxSeqLength
	}
	if m.MaxInputLength <= 0 {
		return nil, fmt.Errorf("hfmodel: %s: no max input length: config.json has no max_position_embeddings and %s no max_seq_length", dir, sbertFile)
	}

	poolingDir, normalize, err := readModules(dir)
	if err != nil {
		return nil, err
	}
	m.Normalize = normalize
	if m.Pooling, err = readPooling(dir, poolingDir); err != nil {
		return nil, err
	}

	var st struct {
		Prompts           map[string]string `json:"prompts"`
		DefaultPromptName *string           `json:"default_prompt_name"`
	}
	if err := readJSON(dir, stConfigFile, false, &st); err != nil {
		return nil, err
	}
	m.Prompts = st.Prompts
	if st.DefaultPromptName != nil {
		m.DefaultPromptName = *st.DefaultPromptName
		if _, ok := m.Prompts[m.DefaultPromptName]; !ok && m.DefaultPromptName != "" {
			return nil, fmt.Errorf("hfmodel: %s: %s: default_prompt_name %q is not one of its prompts", dir, stConfigFile, m.DefaultPromptName)
		}
	}
	return m, nil
}

// task reads config.json's architectures, id2label and num_labels (nil
// when absent) into Model.Task and Model.NumLabels.
func task(architectures []string, id2label map[string]string, numLabels *int) (string, int, error) {
	if !slices.ContainsFunc(architectures, func(a string) bool { return strings.HasSuffix(a, "ForSequenceClassification") }) {
		return TaskEmbed, 0, nil
	}
	switch {
	case len(id2label) > 0:
		return TaskRerank, len(id2label), nil
	case numLabels == nil:
		return TaskRerank, 2, nil
	case *numLabels < 1:
		return "", 0, fmt.Errorf("num_labels %d, want at least 1 for a %s model", *numLabels, strings.Join(architectures, ", "))
	}
	return TaskRerank, *numLabels, nil
}

// tokenPositions is how many tokens maxPos position embeddings hold.
// RoBERTa-style models number positions from pad_token_id+1, so 514
// positions hold 512 tokens (TEI does the same).
func tokenPositions(modelType string, maxPos int, padTokenID *int) int {
	switch modelType {
	case "roberta", "xlm-roberta", "camembert":
		pad := 1
		if padTokenID != nil {
			pad = *padTokenID
		}
		if maxPos > pad+1 {
			maxPos -= pad + 1
		}
	}
	return maxPos
}

// readModules finds the Pooling module's directory (1_Pooling unless
// modules.json says otherwise) and whether a Normalize module follows.
func readModules(dir string) (poolingDir string, normalize bool, err error) {
	var mods []struct {
		Path string `json:"path"`
		Type string `json:"type"`
	}
	if err := readJSON(dir, modulesFile, false, &mods); err != nil {
		return "", false, err
	}
	poolingDir = defaultPooling
	for _, mod := range mods {
		switch mod.Type {
		case "sentence_transformers.models.Pooling":
			if mod.Path != "" && filepath.IsLocal(mod.Path) {
				poolingDir = mod.Path
			}
		case "sentence_transformers.models.Normalize":
			normalize = true
		}
	}
	return poolingDir, normalize, nil
}

// readPooling maps the Pooling module's flags to our names. Modes we do not
// implement (max, mean_sqrt_len, weightedmean) read as "": the caller then
// needs --pooling.
func readPooling(dir, poolingDir string) (string, error) {
	var p struct {
		CLS       bool   `json:"pooling_mode_cls_token"`
		Mean      bool   `json:"pooling_mode_mean_tokens"`
		LastToken bool   `json:"pooling_mode_lasttoken"`
		Mode      string `json:"pooling_mode"` // newer sentence-transformers also write this
	}
	if err := readJSON(dir, filepath.Join(poolingDir, configFile), false, &p); err != nil {
		return "", err
	}
	switch {
	case p.CLS || p.Mode == "cls":
		return "cls", nil
	case p.Mean || p.Mode == "mean":
		return "mean", nil
	case p.LastToken || p.Mode == "lasttoken":
		return "last-token", nil
	}
	return "", nil
}

// readJSON decodes dir/name into v. A missing optional file leaves v alone.
func readJSON(dir, name string, required bool, v any) error {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if errors.Is(err, fs.ErrNotExist) && !required {
		return nil
	}
	if err != nil {
		if required {
			return fmt.Errorf("hfmodel: %s: required file %s: %w", dir, name, err)
		}
		return fmt.Errorf("hfmodel: %s: %w", dir, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("hfmodel: %s: parse %s: %w", dir, filepath.ToSlash(name), err)
	}
	return nil
}

func firstPositive(vs ...int) int {
	for _, v := range vs {
		if v > 0 {
			return v
		}
	}
	return 0
}

// onnxCandidates lists, in order of preference, where a dtype's ONNX file
// may be (optimum and transformers.js layouts).
func onnxCandidates(dtype string) ([]string, error) {
	switch dtype {
	case "", "auto", "float32":
		return []string{"onnx/model.onnx", "model.onnx"}, nil
	case "float16":
		return []string{"onnx/model_fp16.onnx", "model_fp16.onnx"}, nil
	case "int8":
		return []string{"onnx/model_int8.onnx", "onnx/model_quantized.onnx", "model_int8.onnx", "model_quantized.onnx"}, nil
	}
	return nil, fmt.Errorf("hfmodel: unknown dtype %q: want auto, float32, float16 or int8", dtype)
}

// ONNXPath returns the model's ONNX file for dtype ("auto" = float32).
func (m *Model) ONNXPath(dtype string) (string, error) {
	cands, err := onnxCandidates(dtype)
	if err != nil {
		return "", err
	}
	for _, c := range cands {
		p := filepath.Join(m.Dir, filepath.FromSlash(c))
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("hfmodel: %s: no ONNX model for dtype %s: looked for %s", m.Dir, dtypeName(dtype), strings.Join(cands, ", "))
}

func dtypeName(dtype string) string {
	if dtype == "" || dtype == "auto" {
		return "auto (float32)"
	}
	return dtype
}
