package testmodel_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/embedgate/embedgate/gateway/hfmodel"
	"github.com/embedgate/embedgate/gateway/testmodel"
)

// The generator is locked by the hash of its output: a change to the graph,
// the weights or the encoder shows here first (and then golden.json in
// backend/onnx needs regenerating with scripts/reference_model.py).
const (
	tinySHA256       = "f7df52a0292f8383410add26139663339dd8956dd00a858e8d585bbb49efc01f"
	tinyPooledSHA256 = "37363ea5ab3276ea8d960c8e9ee72c92876e7e4de7628807de2f8fd468a827c6"
	// The tiny reranker (one label, seed 0); reranker_test.go checks its
	// logits against a hand computation.
	tinyRerankerSHA256 = "4113294bb494f95ec6bebda1c45ec618fda6f40a6c4e54b6cbab620e8bb6ba4f"
)

func sha(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

func TestWriteDeterministic(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  testmodel.Config
		want string
	}{
		{"Tiny", testmodel.Config{}, tinySHA256},
		{"TinyPooled", testmodel.NewConfig(testmodel.WithPooled()), tinyPooledSHA256},
		{"TinyReranker", testmodel.NewConfig(testmodel.WithNumLabels(1)), tinyRerankerSHA256},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			start := time.Now()
			if err := testmodel.Write(dir, tt.cfg); err != nil {
				t.Fatalf("Write: %v", err)
			}
			t.Logf("generated in %v", time.Since(start))
			if got := sha(t, filepath.Join(dir, "onnx", "model.onnx")); got != tt.want {
				t.Errorf("sha256(model.onnx) = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestSeedChangesWeights(t *testing.T) {
	dir := t.TempDir()
	if err := testmodel.Write(dir, testmodel.NewConfig(testmodel.WithSeed(7))); err != nil {
		t.Fatal(err)
	}
	if got := sha(t, filepath.Join(dir, "onnx", "model.onnx")); got == tinySHA256 {
		t.Errorf("seed 7 wrote the seed-0 model")
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func TestWriteFiles(t *testing.T) {
	dir := t.TempDir()
	cfg := testmodel.NewConfig(testmodel.WithPooling("cls"), testmodel.WithMaxSeqLength(128))
	if err := testmodel.Write(dir, cfg); err != nil {
		t.Fatal(err)
	}
	type dims struct {
		ModelType    string `json:"model_type"`
		HiddenSize   int    `json:"hidden_size"`
		VocabSize    int    `json:"vocab_size"`
		MaxPosition  int    `json:"max_position_embeddings"`
		NumLayers    int    `json:"num_hidden_layers"`
		NumHeads     int    `json:"num_attention_heads"`
		Intermediate int    `json:"intermediate_size"`
	}
	var conf dims
	readJSON(t, filepath.Join(dir, "config.json"), &conf)
	if want := (dims{"bert", 32, 30522, 512, 2, 2, 64}); conf != want {
		t.Errorf("config.json = %+v, want %+v", conf, want)
	}

	var tok map[string]any
	readJSON(t, filepath.Join(dir, "tokenizer_config.json"), &tok)
	for k, want := range map[string]string{"pad_token": "[PAD]", "cls_token": "[CLS]", "sep_token": "[SEP]", "unk_token": "[UNK]", "mask_token": "[MASK]"} {
		if tok[k] != want {
			t.Errorf("tokenizer_config.json %s = %v, want %q", k, tok[k], want)
		}
	}

	var pool map[string]any
	readJSON(t, filepath.Join(dir, "1_Pooling", "config.json"), &pool)
	if pool["pooling_mode_cls_token"] != true || pool["pooling_mode_mean_tokens"] != false {
		t.Errorf("1_Pooling/config.json = %v, want cls pooling only", pool)
	}

	var sbert struct {
		MaxSeqLength int `json:"max_seq_length"`
	}
	readJSON(t, filepath.Join(dir, "sentence_bert_config.json"), &sbert)
	if sbert.MaxSeqLength != 128 {
		t.Errorf("max_seq_length = %d, want 128", sbert.MaxSeqLength)
	}

	var st map[string]any
	readJSON(t, filepath.Join(dir, "config_sentence_transformers.json"), &st)
	prompts, _ := st["prompts"].(map[string]any)
	if prompts["query"] != "query: " || prompts["passage"] != "passage: " {
		t.Errorf("prompts = %v, want query and passage", st["prompts"])
	}
	if v, ok := st["default_prompt_name"]; !ok || v != nil {
		t.Errorf("default_prompt_name = %v (present %v), want null", v, ok)
	}

	var modules []map[string]any
	readJSON(t, filepath.Join(dir, "modules.json"), &modules)
	if len(modules) != 3 || modules[1]["path"] != "1_Pooling" {
		t.Errorf("modules.json = %v, want Transformer, Pooling, Normalize", modules)
	}

	tj, err := os.ReadFile(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(tj, []byte(`"[CLS]": 101`)) && !bytes.Contains(tj, []byte(`"[CLS]":101`)) {
		t.Errorf("tokenizer.json lacks the MiniLM vocabulary")
	}
}

// TestWriteReranker checks the files of a cross-encoder repository: a
// transformers BertForSequenceClassification config that hfmodel reads as
// a reranker, the MiniLM tokenizer, and none of the sentence-transformers
// files of an embedding model.
func TestWriteReranker(t *testing.T) {
	for _, labels := range []int{1, 2} {
		t.Run(fmt.Sprintf("%dLabels", labels), func(t *testing.T) {
			dir := t.TempDir()
			if err := testmodel.Write(dir, testmodel.NewConfig(testmodel.WithNumLabels(labels), testmodel.WithMaxSeqLength(128))); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{"onnx/model.onnx", "config.json", "tokenizer.json", "tokenizer_config.json"} {
				if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
					t.Errorf("missing %s: %v", f, err)
				}
			}
			for _, f := range []string{"1_Pooling", "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json"} {
				if _, err := os.Stat(filepath.Join(dir, f)); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("%s: want no such file in a cross-encoder repository, got err %v", f, err)
				}
			}
			var conf struct {
				Architectures []string          `json:"architectures"`
				ModelType     string            `json:"model_type"`
				NumLabels     int               `json:"num_labels"`
				ID2Label      map[string]string `json:"id2label"`
				Label2ID      map[string]int    `json:"label2id"`
			}
			readJSON(t, filepath.Join(dir, "config.json"), &conf)
			if !slices.Equal(conf.Architectures, []string{"BertForSequenceClassification"}) || conf.ModelType != "bert" || conf.NumLabels != labels {
				t.Errorf("config.json = %+v, want a bert BertForSequenceClassification with %d labels", conf, labels)
			}
			if len(conf.ID2Label) != labels || len(conf.Label2ID) != labels {
				t.Errorf("id2label %v, label2id %v: want %d labels each", conf.ID2Label, conf.Label2ID, labels)
			}
			for id, name := range conf.ID2Label {
				if strconv.Itoa(conf.Label2ID[name]) != id {
					t.Errorf("id2label[%s] = %s, but label2id[%s] = %d", id, name, name, conf.Label2ID[name])
				}
			}

			m, err := hfmodel.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			if m.Task != hfmodel.TaskRerank || m.NumLabels != labels || m.MaxInputLength != 512 || m.Pooling != "" {
				t.Errorf("hfmodel.Open = task %q, %d labels, max input %d, pooling %q; want rerank, %d, 512, none",
					m.Task, m.NumLabels, m.MaxInputLength, m.Pooling, labels)
			}
		})
	}
}

// TestRerankerSharesEncoder: a reranker's encoder weights are those of the
// embedding model of its seed (the head's are drawn after them), which is
// what lets reranker_test.go check its logits against the embedding model's
// golden hidden states.
func TestRerankerSharesEncoder(t *testing.T) {
	dir := t.TempDir()
	inits := func(name string, cfg testmodel.Config) map[string][]float32 {
		path := filepath.Join(dir, name)
		if err := testmodel.Write(path, cfg); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(path, "onnx", "model.onnx"))
		if err != nil {
			t.Fatal(err)
		}
		return floatInits(t, b)
	}
	emb := inits("emb", testmodel.Config{})
	rr := inits("rr", testmodel.NewConfig(testmodel.WithNumLabels(1)))
	if len(emb) < 10 {
		t.Fatalf("embedding model has %d float initialisers", len(emb))
	}
	for name, w := range emb {
		if !slices.Equal(rr[name], w) {
			t.Errorf("initialiser %s differs between the embedding model and the reranker", name)
		}
	}
	for _, name := range []string{"pooler.dense.weight", "pooler.dense.bias", "classifier.weight", "classifier.bias"} {
		if rr[name] == nil {
			t.Errorf("reranker has no %s", name)
		}
	}
}

func TestWriteErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  testmodel.Config
	}{
		{"UnknownPooling", testmodel.NewConfig(testmodel.WithPooling("max"))},
		{"MaxSeqTooLong", testmodel.NewConfig(testmodel.WithMaxSeqLength(513))},
		{"NegativeMaxSeq", testmodel.NewConfig(testmodel.WithMaxSeqLength(-1))},
		{"NegativeLabels", testmodel.NewConfig(testmodel.WithNumLabels(-1))},
		{"TooManyLabels", testmodel.NewConfig(testmodel.WithNumLabels(testmodel.MaxLabels + 1))},
		{"PooledReranker", testmodel.NewConfig(testmodel.WithNumLabels(1), testmodel.WithPooled())},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := testmodel.Write(t.TempDir(), tt.cfg); err == nil {
				t.Errorf("Write(%+v) = nil, want an error", tt.cfg)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]testmodel.Size{"tiny": testmodel.Tiny, "minilm": testmodel.MiniLM} {
		if got, err := testmodel.ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %v, %v, want %v", in, got, err, want)
		}
	}
	if _, err := testmodel.ParseSize("huge"); err == nil {
		t.Errorf("ParseSize(huge) = nil error, want one")
	}
}

// TestOtherTokenizer writes a model of another width and tokenizer family
// (XLM-R's unigram, trimmed to 8,005 tokens in testdata), the second model
// of the multi-model tests, which run it.
func TestOtherTokenizer(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "tokenizer", "testdata", "xlmr-unigram.json"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := testmodel.Write(dir, testmodel.NewConfig(testmodel.WithHidden(16), testmodel.WithTokenizer(data, 8005))); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "tokenizer.json"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("tokenizer.json not the one given (err %v)", err)
	}
	var cfg struct {
		Vocab  int `json:"vocab_size"`
		Hidden int `json:"hidden_size"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &cfg); err != nil || cfg.Vocab != 8005 || cfg.Hidden != 16 {
		t.Fatalf("config.json = %+v (err %v), want vocab 8005 hidden 16", cfg, err)
	}
	if err := testmodel.Write(t.TempDir(), testmodel.NewConfig(testmodel.WithHidden(15))); err == nil {
		t.Fatal("hidden 15 with 2 heads: want an error")
	}
}
