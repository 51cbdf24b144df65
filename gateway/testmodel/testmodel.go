// Package testmodel writes a BERT-architecture embedding model with seeded
// random weights, laid out like a sentence-transformers repository with an
// optimum ONNX export: onnx/model.onnx (opset 17 unless WithOpset says
// otherwise, IR 8, HF input and output
// names), config.json, the real all-MiniLM-L6-v2 tokenizer files and the
// sentence-transformers configs. Tests and benchmarks use it so that they
// need no download; the numbers it produces mean nothing.
//
// With NumLabels it writes a cross-encoder instead, laid out like a
// transformers BertForSequenceClassification repository with an optimum
// text-classification export: the same encoder, then BERT's pooler and
// classifier, whose only output is logits [B, NumLabels].
//
// WithArch(Qwen3) writes a decoder instead, laid out like Qwen3-Embedding:
// a Qwen3-architecture model (RMSNorm, rotary position embeddings driven by
// a position_ids input, causal grouped-query attention, SwiGLU) with the
// Qwen3 tokenizer given by WithTokenizer, last-token pooling and the
// Qwen3-Embedding prompts (see qwen3.go).
//
// The ONNX file is encoded with protowire (no generated ONNX types) and is
// byte-for-byte deterministic for a given Config.
package testmodel

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// tokenizerJSON is the real all-MiniLM-L6-v2 tokenizer.json (BERT uncased
// WordPiece, vocabulary 30522), so generated models tokenize like a real one.
//
//go:embed tokenizer.json
var tokenizerJSON []byte

// Size picks the architecture's dimensions.
type Size int

const (
	// Tiny is a 2-layer, hidden-32 model (4 MB): cheap enough for every test.
	Tiny Size = iota
	// MiniLM has all-MiniLM-L6-v2's dimensions (90 MB): for benchmarks.
	MiniLM
)

// Arch holds the BertConfig dimensions of a Size.
type Arch struct {
	Vocab, Hidden, Layers, Heads, Intermediate, MaxPos int
}

// Arch returns s's dimensions; unknown sizes get Tiny's.
func (s Size) Arch() Arch {
	if s == MiniLM {
		return Arch{Vocab: 30522, Hidden: 384, Layers: 6, Heads: 12, Intermediate: 1536, MaxPos: 512}
	}
	return Arch{Vocab: 30522, Hidden: 32, Layers: 2, Heads: 2, Intermediate: 64, MaxPos: 512}
}

func (s Size) String() string {
	if s == MiniLM {
		return "minilm"
	}
	return "tiny"
}

// ParseSize reads "tiny" or "minilm".
func ParseSize(v string) (Size, error) {
	switch v {
	case "tiny":
		return Tiny, nil
	case "minilm":
		return MiniLM, nil
	}
	return 0, fmt.Errorf("testmodel: unknown size %q (want tiny or minilm)", v)
}

// ModelType is the architecture of a model, as config.json's model_type
// names it.
type ModelType string

// The architectures testmodel builds.
const (
	BERT  ModelType = "bert"  // an encoder (the default)
	Qwen3 ModelType = "qwen3" // a decoder, in the tiny size only
)

// ParseModelType reads "bert" or "qwen3".
func ParseModelType(v string) (ModelType, error) {
	switch t := ModelType(v); t {
	case BERT, Qwen3:
		return t, nil
	}
	return "", fmt.Errorf("testmodel: unknown architecture %q (want bert or qwen3)", v)
}

// Config selects the model to write. The zero value is the tiny BERT model,
// seed 0, output last_hidden_state only, with token_type_ids, mean pooling,
// max_seq_length 512.
type Config struct {
	// ModelType is the architecture; "" = BERT. Qwen3 needs Tokenizer and
	// has no token_type_ids, sentence_embedding output or cross-encoder
	// head; its pooling defaults to last-token.
	ModelType      ModelType
	Size           Size
	Seed           uint64
	Pooled         bool   // also output sentence_embedding [B,H] (mean, L2-normalized)
	NoTokenTypeIDs bool   // model without the token_type_ids input
	Pooling        string // 1_Pooling mode: "mean" (default), "cls" or "lasttoken"
	MaxSeqLength   int    // sentence_bert_config.json max_seq_length; 0 = 512
	// Hidden overrides the size's hidden width (a multiple of its heads):
	// tests serving two models tell them apart by it. 0 = the size's.
	Hidden int
	// Tokenizer replaces the embedded MiniLM tokenizer.json, with Vocab
	// its vocabulary size (the embedding table's rows): a model of another
	// tokenizer family. nil = MiniLM's. Vocab 0 = the tokenizer's id space
	// (highest id + 1, added tokens included); a smaller one is an error.
	Tokenizer []byte
	Vocab     int
	// NumLabels > 0 makes a cross-encoder (a reranker) with that many
	// labels instead of an embedding model; 0 = an embedding model.
	NumLabels int
	// Opset is the graph's default-domain opset, MinOpset to DefaultOpset
	// (see WithOpset); 0 = DefaultOpset.
	Opset int
}

// MaxLabels bounds Config.NumLabels: rerankers have one or two labels, and
// a few more cover a classifier.
const MaxLabels = 16

// arch is the architecture cfg builds: its size's (or the tiny Qwen3's),
// with the overrides.
func (c Config) arch() Arch {
	a := c.Size.Arch()
	if c.ModelType == Qwen3 {
		a = tinyQwen3.Arch
	}
	if c.Hidden > 0 {
		a.Hidden = c.Hidden
	}
	if c.Tokenizer != nil {
		a.Vocab = c.Vocab
	}
	return a
}

// Option changes a Config; testenv takes them to describe the model a test wants.
type Option func(*Config)

// WithPooled adds the sentence_embedding output.
func WithPooled() Option { return func(c *Config) { c.Pooled = true } }

// WithoutTokenTypeIDs drops the token_type_ids input.
func WithoutTokenTypeIDs() Option { return func(c *Config) { c.NoTokenTypeIDs = true } }

// WithSeed sets the weight seed.
func WithSeed(seed uint64) Option { return func(c *Config) { c.Seed = seed } }

// WithPooling sets the 1_Pooling mode ("mean", "cls", "lasttoken").
func WithPooling(mode string) Option { return func(c *Config) { c.Pooling = mode } }

// WithMaxSeqLength sets sentence_bert_config.json's max_seq_length.
func WithMaxSeqLength(n int) Option { return func(c *Config) { c.MaxSeqLength = n } }

// WithHidden sets the hidden width.
func WithHidden(n int) Option { return func(c *Config) { c.Hidden = n } }

// WithTokenizer uses tokenizer.json data, whose vocabulary has vocab
// tokens (0: as many as its ids), instead of MiniLM's.
func WithTokenizer(data []byte, vocab int) Option {
	return func(c *Config) { c.Tokenizer, c.Vocab = data, vocab }
}

// WithNumLabels makes the model a cross-encoder with n labels (see
// Config.NumLabels): 1 for a reranker that outputs one logit per pair, 2
// for one scored by the softmax of its last label.
func WithNumLabels(n int) Option { return func(c *Config) { c.NumLabels = n } }

// WithSize sets the architecture's dimensions.
func WithSize(s Size) Option { return func(c *Config) { c.Size = s } }

// WithArch sets the architecture: BERT (the default) or Qwen3.
func WithArch(t ModelType) Option { return func(c *Config) { c.ModelType = t } }

// NewConfig applies opts to the zero Config.
func NewConfig(opts ...Option) Config {
	var c Config
	for _, o := range opts {
		o(&c)
	}
	return c
}

func (c Config) normalized() (Config, error) {
	if c.ModelType == "" {
		c.ModelType = BERT
	}
	if _, err := ParseModelType(string(c.ModelType)); err != nil {
		return c, err
	}
	if c.Pooling == "" {
		c.Pooling = "mean"
		if c.ModelType == Qwen3 {
			c.Pooling = "lasttoken" // Qwen3-Embedding's
		}
	}
	switch c.Pooling {
	case "mean", "cls", "lasttoken":
	default:
		return c, fmt.Errorf("testmodel: unknown pooling %q (want mean, cls or lasttoken)", c.Pooling)
	}
	if c.MaxSeqLength == 0 {
		c.MaxSeqLength = 512
	}
	a := c.arch()
	if c.MaxSeqLength < 0 || c.MaxSeqLength > a.MaxPos {
		return c, fmt.Errorf("testmodel: max_seq_length %d outside 1..%d", c.MaxSeqLength, a.MaxPos)
	}
	check := c.checkBERT
	if c.ModelType == Qwen3 {
		check = c.checkQwen3
	}
	if err := check(); err != nil {
		return c, err
	}
	if err := checkOpset(c.Opset); err != nil {
		return c, err
	}
	if c.ModelType == Qwen3 && c.Opset != 0 && c.Opset != DefaultOpset {
		return c, fmt.Errorf("testmodel: the Qwen3 model is written at opset %d only, not %d", DefaultOpset, c.Opset)
	}
	// Last, as it parses the tokenizer (5 MB for Qwen3's).
	if c.Tokenizer != nil {
		n, err := tokenizerVocab(c.Tokenizer)
		if err != nil {
			return c, err
		}
		// The embedding table must cover every id the tokenizer can emit,
		// or a valid id would index past it.
		if c.Vocab < 0 || (c.Vocab > 0 && c.Vocab < n) {
			return c, fmt.Errorf("testmodel: vocabulary %d does not cover the tokenizer's %d ids", c.Vocab, n)
		}
		if c.Vocab == 0 {
			c.Vocab = n
		}
	}
	return c, nil
}

// checkBERT refuses the options a BERT model cannot have.
func (c Config) checkBERT() error {
	a := c.arch()
	if c.Hidden < 0 || a.Hidden%a.Heads != 0 {
		return fmt.Errorf("testmodel: hidden %d is not a positive multiple of %d heads", a.Hidden, a.Heads)
	}
	if c.NumLabels < 0 || c.NumLabels > MaxLabels {
		return fmt.Errorf("testmodel: num_labels %d outside 0..%d (0 is an embedding model)", c.NumLabels, MaxLabels)
	}
	if c.NumLabels > 0 && c.Pooled {
		return errors.New("testmodel: a cross-encoder (num_labels > 0) has no sentence_embedding output")
	}
	return nil
}

// Write writes the model repository for cfg into dir, creating it.
func Write(dir string, cfg Config) error {
	cfg, err := cfg.normalized()
	if err != nil {
		return err
	}
	build := buildBERT
	if cfg.ModelType == Qwen3 {
		build = buildQwen3
	}
	model, err := build(cfg)
	if err != nil {
		return err
	}
	files := []struct {
		name string
		data []byte
	}{
		{"onnx/model.onnx", model},
		{"tokenizer.json", tokenizerOf(cfg)},
	}
	for name, v := range jsonFiles(cfg) {
		data, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return fmt.Errorf("testmodel: encode %s: %w", name, err)
		}
		files = append(files, struct {
			name string
			data []byte
		}{name, append(data, '\n')})
	}
	for _, f := range files {
		path := filepath.Join(dir, filepath.FromSlash(f.name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return fmt.Errorf("testmodel: %w", err)
		}
		if err := os.WriteFile(path, f.data, 0o644); err != nil {
			return fmt.Errorf("testmodel: %w", err)
		}
	}
	return nil
}

// tokenizerVocab is the id space of a tokenizer.json: its highest id + 1,
// over the model's vocabulary (a token-to-id map, or a unigram list whose
// indexes are the ids) and the added tokens.
func tokenizerVocab(data []byte) (int, error) {
	var f struct {
		Added []struct {
			ID int `json:"id"`
		} `json:"added_tokens"`
		Model struct {
			Vocab json.RawMessage `json:"vocab"`
		} `json:"model"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return 0, fmt.Errorf("testmodel: tokenizer.json: %w", err)
	}
	n := 0
	var byToken map[string]int
	var list []json.RawMessage
	switch {
	case json.Unmarshal(f.Model.Vocab, &byToken) == nil:
		for _, id := range byToken {
			n = max(n, id+1)
		}
	case json.Unmarshal(f.Model.Vocab, &list) == nil:
		n = len(list)
	default:
		return 0, errors.New("testmodel: tokenizer.json: model.vocab is neither a map nor a list")
	}
	for _, a := range f.Added {
		n = max(n, a.ID+1)
	}
	if n < 1 {
		return 0, errors.New("testmodel: tokenizer.json has no tokens")
	}
	return n, nil
}

// tokenizerOf is cfg's tokenizer.json: its own, or MiniLM's.
func tokenizerOf(cfg Config) []byte {
	if cfg.Tokenizer != nil {
		return cfg.Tokenizer
	}
	return tokenizerJSON
}
