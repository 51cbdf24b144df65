package testmodel_test

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/embedgate/embedgate/gateway/hfmodel"
	"github.com/embedgate/embedgate/gateway/internal/testenv"
	"github.com/embedgate/embedgate/gateway/testmodel"
	"github.com/embedgate/embedgate/gateway/tokenizer"
)

// tinyQwen3SHA256 locks the decoder (seed 0) as tinySHA256 locks BERT;
// qwen3_ort_test.go checks its outputs against a hand computation.
const tinyQwen3SHA256 = "93506af7f8dc9f2457fb3f2820fddf444065db9fd09244b3ee9cc49558b45198"

// qwen3Tokenizer is the real Qwen3-Embedding tokenizer.json, which the
// tokenizer package's tests keep.
func qwen3Tokenizer(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "tokenizer", "testdata", "qwen3emb.json"))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// The decoder's tests share testenv.TinyQwen3's one copy: under the race
// detector each generation takes seconds.

func TestQwen3Deterministic(t *testing.T) {
	if got := sha(t, filepath.Join(testenv.TinyQwen3(t), "onnx", "model.onnx")); got != tinyQwen3SHA256 {
		t.Errorf("sha256(model.onnx) = %s, want %s", got, tinyQwen3SHA256)
	}
}

// TestQwen3Files checks the repository against what hfmodel and the
// tokenizer read from it: a qwen3 embedding model whose vocabulary is the
// tokenizer's whole id space, last-token pooling with Normalize, the
// Qwen3-Embedding prompts, and the tokenizer.json given, byte for byte.
func TestQwen3Files(t *testing.T) {
	dir := testenv.TinyQwen3(t)
	m, err := hfmodel.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.LoadFile(m.TokenizerPath)
	if err != nil {
		t.Fatal(err)
	}
	if m.ModelType != "qwen3" || m.Task != hfmodel.TaskEmbed || m.HiddenSize != 32 || m.MaxInputLength != 512 ||
		m.Pooling != "last-token" || !m.Normalize || m.DefaultPromptName != "" {
		t.Errorf("hfmodel.Open = %+v, want a qwen3 embedding model, hidden 32, max input 512, last-token, normalized, no default prompt", m)
	}
	if m.VocabSize != tok.VocabSize() || m.VocabSize != 151669 {
		t.Errorf("vocab_size %d, tokenizer's id space %d: want both 151669", m.VocabSize, tok.VocabSize())
	}
	want := map[string]string{"query": testmodel.Qwen3QueryPrompt, "document": ""}
	if len(m.Prompts) != 2 || m.Prompts["query"] != want["query"] || m.Prompts["document"] != "" {
		t.Errorf("prompts = %q, want %q", m.Prompts, want)
	}
	if !strings.HasPrefix(testmodel.Qwen3QueryPrompt, "Instruct: ") || !strings.HasSuffix(testmodel.Qwen3QueryPrompt, "\nQuery:") {
		t.Errorf("query prompt %q is not Qwen3-Embedding's", testmodel.Qwen3QueryPrompt)
	}
	enc := tok.Encode("hello", tokenizer.EncodeOptions{AddSpecialTokens: true})
	if len(enc.IDs) == 0 || enc.IDs[len(enc.IDs)-1] != 151643 {
		t.Errorf("Encode(hello) = %v, want <|endoftext|> (151643) last", enc.IDs)
	}
	got, err := os.ReadFile(m.TokenizerPath)
	if err != nil || !bytes.Equal(got, qwen3Tokenizer(t)) {
		t.Errorf("tokenizer.json is not the one given (err %v)", err)
	}

	var conf map[string]any
	readJSON(t, filepath.Join(dir, "config.json"), &conf)
	for k, v := range map[string]any{
		"model_type": "qwen3", "hidden_size": 32.0, "num_hidden_layers": 2.0, "num_attention_heads": 4.0,
		"num_key_value_heads": 2.0, "head_dim": 16.0, "intermediate_size": 64.0, "hidden_act": "silu",
		"rope_theta": 1e6, "rms_norm_eps": 1e-6, "max_position_embeddings": 32768.0,
		"tie_word_embeddings": true, "attention_bias": false, "use_sliding_window": false,
		"bos_token_id": 151643.0, "eos_token_id": 151643.0,
	} {
		if conf[k] != v {
			t.Errorf("config.json %s = %v, want %v", k, conf[k], v)
		}
	}
	var tc map[string]any
	readJSON(t, filepath.Join(dir, "tokenizer_config.json"), &tc)
	if tc["padding_side"] != "right" || tc["pad_token"] != "<|endoftext|>" || tc["tokenizer_class"] != "Qwen2Tokenizer" {
		t.Errorf("tokenizer_config.json = %v, want Qwen2Tokenizer padding right with <|endoftext|>", tc)
	}
}

// TestQwen3Graph checks the graph's interface and that its initialisers
// carry HF's parameter names once each, with the embedding table covering
// the vocabulary.
func TestQwen3Graph(t *testing.T) {
	model, err := os.ReadFile(filepath.Join(testenv.TinyQwen3(t), "onnx", "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	graph := fields(t, model)[7][0]
	g := fields(t, graph)
	names := func(num int) []string {
		var out []string
		for _, m := range g[protowire.Number(num)] {
			f := fields(t, m)
			key := 1 // ValueInfoProto.name
			if num == 5 {
				key = 8 // TensorProto.name
			}
			out = append(out, string(f[protowire.Number(key)][0]))
		}
		return out
	}
	if in := names(11); !slices.Equal(in, []string{"input_ids", "attention_mask", "position_ids"}) {
		t.Errorf("inputs = %v, want input_ids, attention_mask, position_ids", in)
	}
	if out := names(12); !slices.Equal(out, []string{"last_hidden_state"}) {
		t.Errorf("outputs = %v, want last_hidden_state", out)
	}
	inits := names(5)
	seen := map[string]bool{}
	for _, n := range inits {
		if seen[n] {
			t.Errorf("initialiser %s appears twice", n)
		}
		seen[n] = true
	}
	w := floatInits(t, model)
	if got := len(w["embed_tokens.weight"]); got != 151669*32 {
		t.Errorf("embed_tokens.weight has %d values, want 151669 x 32", got)
	}
	for _, n := range []string{"layers.1.self_attn.q_proj.weight", "layers.1.self_attn.k_norm.weight", "layers.1.mlp.down_proj.weight", "norm.weight"} {
		if w[n] == nil {
			t.Errorf("no initialiser %s", n)
		}
	}
	// ONNX opset 17, as the BERT models.
	opset := fields(t, fields(t, model)[8][0])[2][0]
	if !bytes.Equal(opset, protowire.AppendVarint(nil, 17)) {
		t.Errorf("opset_import version = %v, want 17", opset)
	}
}

func TestQwen3Errors(t *testing.T) {
	tok := qwen3Tokenizer(t)
	q := []testmodel.Option{testmodel.WithArch(testmodel.Qwen3), testmodel.WithTokenizer(tok, 0)}
	for _, tt := range []struct {
		name string
		opts []testmodel.Option
	}{
		{"NoTokenizer", []testmodel.Option{testmodel.WithArch(testmodel.Qwen3)}},
		{"UnknownArch", []testmodel.Option{testmodel.WithArch("llama")}},
		{"VocabTooSmall", append(q, testmodel.WithTokenizer(tok, 151668))},
		{"BadTokenizer", append(q, testmodel.WithTokenizer([]byte(`{"model":{"vocab":7}}`), 0))},
		{"MiniLMSize", append(q, testmodel.WithSize(testmodel.MiniLM))},
		{"Pooled", append(q, testmodel.WithPooled())},
		{"Reranker", append(q, testmodel.WithNumLabels(1))},
		{"MaxSeqTooLong", append(q, testmodel.WithMaxSeqLength(32769))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := testmodel.Write(t.TempDir(), testmodel.NewConfig(tt.opts...)); err == nil {
				t.Error("Write = nil, want an error")
			}
		})
	}
	if _, err := testmodel.ParseModelType("llama"); err == nil {
		t.Error("ParseModelType(llama) = nil error, want one")
	}
	for _, v := range []string{"bert", "qwen3"} {
		if got, err := testmodel.ParseModelType(v); err != nil || string(got) != v {
			t.Errorf("ParseModelType(%q) = %q, %v", v, got, err)
		}
	}
}
