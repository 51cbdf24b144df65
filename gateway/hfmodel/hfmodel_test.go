package hfmodel

import (
	"cmp"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeDir writes files (path → content) under a new temp dir.
func writeDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const qwenQuery = "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:"

// bertFiles is shaped like all-MiniLM-L6-v2.
func bertFiles() map[string]string {
	return map[string]string{
		"config.json":               `{"architectures":["BertModel"],"model_type":"bert","hidden_size":384,"vocab_size":30522,"max_position_embeddings":512,"pad_token_id":0}`,
		"tokenizer.json":            `{"version":"1.0"}`,
		"tokenizer_config.json":     `{"model_max_length":512}`,
		"sentence_bert_config.json": `{"max_seq_length":256,"do_lower_case":false}`,
		"modules.json": `[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
			{"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
			{"idx":2,"name":"2","path":"2_Normalize","type":"sentence_transformers.models.Normalize"}]`,
		"1_Pooling/config.json": `{"word_embedding_dimension":384,"pooling_mode_cls_token":false,"pooling_mode_mean_tokens":true,"pooling_mode_max_tokens":false,"pooling_mode_mean_sqrt_len_tokens":false}`,
		"onnx/model.onnx":       "graph",
	}
}

// qwenFiles is shaped like Qwen3-Embedding-0.6B.
func qwenFiles() map[string]string {
	return map[string]string{
		"config.json":    `{"architectures":["Qwen3ForCausalLM"],"model_type":"qwen3","hidden_size":1024,"vocab_size":151669,"max_position_embeddings":32768,"num_hidden_layers":28}`,
		"tokenizer.json": `{"version":"1.0"}`,
		"modules.json": `[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
			{"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
			{"idx":2,"name":"2","path":"2_Normalize","type":"sentence_transformers.models.Normalize"}]`,
		"1_Pooling/config.json":             `{"word_embedding_dimension":1024,"pooling_mode_cls_token":false,"pooling_mode_mean_tokens":false,"pooling_mode_max_tokens":false,"pooling_mode_mean_sqrt_len_tokens":false,"pooling_mode_weightedmean_tokens":false,"pooling_mode_lasttoken":true,"include_prompt":true}`,
		"config_sentence_transformers.json": `{"prompts":{"query":"Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:","document":""},"default_prompt_name":null,"similarity_fn_name":"cosine"}`,
	}
}

// rerankerFiles is shaped like bge-reranker-base (a transformers
// cross-encoder: no sentence-transformers files), with labels (JSON
// members) added to its config.json.
func rerankerFiles(labels string) map[string]string {
	if labels != "" {
		labels = "," + labels
	}
	return map[string]string{
		"config.json": `{"architectures":["XLMRobertaForSequenceClassification"],"model_type":"xlm-roberta","hidden_size":768,` +
			`"vocab_size":250002,"max_position_embeddings":514,"pad_token_id":1` + labels + `}`,
		"tokenizer.json":        `{"version":"1.0"}`,
		"tokenizer_config.json": `{"model_max_length":512}`,
		"onnx/model.onnx":       "graph",
	}
}

// with returns files with changes applied; an empty content deletes.
func with(files map[string]string, changes map[string]string) map[string]string {
	out := maps.Clone(files)
	for k, v := range changes {
		if v == "" {
			delete(out, k)
		} else {
			out[k] = v
		}
	}
	return out
}

func TestOpen(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  Model // Dir and TokenizerPath are checked separately
	}{
		{"bert", bertFiles(), Model{ModelType: "bert", HiddenSize: 384, VocabSize: 30522, MaxPositionEmbeddings: 512, MaxInputLength: 256, Pooling: "mean", Normalize: true}},
		{"qwen", qwenFiles(), Model{ModelType: "qwen3", HiddenSize: 1024, VocabSize: 151669, MaxPositionEmbeddings: 32768, MaxInputLength: 32768, Pooling: "last-token", Normalize: true,
			Prompts: map[string]string{"query": qwenQuery, "document": ""}}},
		{"cls without normalize", with(bertFiles(), map[string]string{
			"1_Pooling/config.json": `{"pooling_mode_cls_token":true,"pooling_mode_mean_tokens":false}`,
			"modules.json":          `[{"path":"1_Pooling","type":"sentence_transformers.models.Pooling"}]`,
		}), Model{ModelType: "bert", HiddenSize: 384, VocabSize: 30522, MaxPositionEmbeddings: 512, MaxInputLength: 256, Pooling: "cls"}},
		{"max_seq_length capped by positions", with(bertFiles(), map[string]string{"sentence_bert_config.json": `{"max_seq_length":8192}`}),
			Model{ModelType: "bert", HiddenSize: 384, VocabSize: 30522, MaxPositionEmbeddings: 512, MaxInputLength: 512, Pooling: "mean", Normalize: true}},
		{"no sentence-transformers files", map[string]string{"config.json": bertFiles()["config.json"], "tokenizer.json": "{}"},
			Model{ModelType: "bert", HiddenSize: 384, VocabSize: 30522, MaxPositionEmbeddings: 512, MaxInputLength: 512}},
		{"roberta offset", map[string]string{"config.json": `{"model_type":"xlm-roberta","hidden_size":768,"vocab_size":250002,"max_position_embeddings":514,"pad_token_id":1}`, "tokenizer.json": "{}"},
			Model{ModelType: "xlm-roberta", HiddenSize: 768, VocabSize: 250002, MaxPositionEmbeddings: 514, MaxInputLength: 512}},
		{"unsupported pooling mode", with(bertFiles(), map[string]string{"1_Pooling/config.json": `{"pooling_mode_max_tokens":true}`}),
			Model{ModelType: "bert", HiddenSize: 384, VocabSize: 30522, MaxPositionEmbeddings: 512, MaxInputLength: 256, Normalize: true}},
		{"pooling dir from modules.json", with(bertFiles(), map[string]string{
			"1_Pooling/config.json": "",
			"modules.json":          `[{"path":"2_Pool","type":"sentence_transformers.models.Pooling"}]`,
			"2_Pool/config.json":    `{"pooling_mode_lasttoken":true}`,
		}), Model{ModelType: "bert", HiddenSize: 384, VocabSize: 30522, MaxPositionEmbeddings: 512, MaxInputLength: 256, Pooling: "last-token"}},
		{"default prompt name", with(qwenFiles(), map[string]string{
			"config_sentence_transformers.json": `{"prompts":{"query":"q: ","passage":"p: "},"default_prompt_name":"passage"}`,
		}), Model{ModelType: "qwen3", HiddenSize: 1024, VocabSize: 151669, MaxPositionEmbeddings: 32768, MaxInputLength: 32768, Pooling: "last-token", Normalize: true,
			Prompts: map[string]string{"query": "q: ", "passage": "p: "}, DefaultPromptName: "passage"}},
		{"gpt-style names", map[string]string{"config.json": `{"model_type":"gpt2","n_embd":768,"vocab_size":50257,"n_positions":1024}`, "tokenizer.json": "{}"},
			Model{ModelType: "gpt2", HiddenSize: 768, VocabSize: 50257, MaxPositionEmbeddings: 1024, MaxInputLength: 1024}},
		{"reranker", rerankerFiles(`"id2label":{"0":"LABEL_0"},"label2id":{"LABEL_0":0}`),
			Model{ModelType: "xlm-roberta", Task: TaskRerank, NumLabels: 1, HiddenSize: 768, VocabSize: 250002, MaxPositionEmbeddings: 514, MaxInputLength: 512}},
		{"reranker with num_labels only", rerankerFiles(`"num_labels":1`),
			Model{ModelType: "xlm-roberta", Task: TaskRerank, NumLabels: 1, HiddenSize: 768, VocabSize: 250002, MaxPositionEmbeddings: 514, MaxInputLength: 512}},
		{"id2label wins over num_labels", rerankerFiles(`"num_labels":1,"id2label":{"0":"no","1":"yes"}`),
			Model{ModelType: "xlm-roberta", Task: TaskRerank, NumLabels: 2, HiddenSize: 768, VocabSize: 250002, MaxPositionEmbeddings: 514, MaxInputLength: 512}},
		{"reranker without labels: transformers' default 2", rerankerFiles(""),
			Model{ModelType: "xlm-roberta", Task: TaskRerank, NumLabels: 2, HiddenSize: 768, VocabSize: 250002, MaxPositionEmbeddings: 514, MaxInputLength: 512}},
		{"labels of an embedding model mean nothing", with(bertFiles(), map[string]string{
			"config.json": `{"architectures":["BertModel"],"model_type":"bert","hidden_size":384,"vocab_size":30522,"max_position_embeddings":512,"id2label":{"0":"LABEL_0"}}`,
		}), Model{ModelType: "bert", HiddenSize: 384, VocabSize: 30522, MaxPositionEmbeddings: 512, MaxInputLength: 256, Pooling: "mean", Normalize: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeDir(t, tt.files)
			m, err := Open(dir)
			if err != nil {
				t.Fatalf("Open() error = %v", err)
			}
			if m.Dir != dir || m.TokenizerPath != filepath.Join(dir, "tokenizer.json") {
				t.Errorf("Open() Dir, TokenizerPath = %q, %q, want %q and its tokenizer.json", m.Dir, m.TokenizerPath, dir)
			}
			got := *m
			got.Dir, got.TokenizerPath = "", ""
			if got.ModelType != tt.want.ModelType || got.HiddenSize != tt.want.HiddenSize || got.VocabSize != tt.want.VocabSize ||
				got.MaxPositionEmbeddings != tt.want.MaxPositionEmbeddings || got.MaxInputLength != tt.want.MaxInputLength ||
				got.Pooling != tt.want.Pooling || got.Normalize != tt.want.Normalize || got.DefaultPromptName != tt.want.DefaultPromptName ||
				!maps.Equal(got.Prompts, tt.want.Prompts) || got.Task != cmp.Or(tt.want.Task, TaskEmbed) || got.NumLabels != tt.want.NumLabels {
				t.Errorf("Open() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"no config.json", with(bertFiles(), map[string]string{"config.json": ""}), "required file config.json"},
		{"no tokenizer.json", with(bertFiles(), map[string]string{"tokenizer.json": ""}), "required file tokenizer.json"},
		{"bad config.json", with(bertFiles(), map[string]string{"config.json": "{"}), "parse config.json"},
		{"bad pooling config", with(bertFiles(), map[string]string{"1_Pooling/config.json": "[1"}), "parse 1_Pooling/config.json"},
		{"bad modules.json", with(bertFiles(), map[string]string{"modules.json": "{}"}), "parse modules.json"},
		{"no max length", map[string]string{"config.json": `{"model_type":"x","hidden_size":8}`, "tokenizer.json": "{}"}, "no max input length"},
		{"reranker with no labels", rerankerFiles(`"num_labels":0`), "num_labels 0, want at least 1 for a XLMRobertaForSequenceClassification model"},
		{"unknown default prompt", with(qwenFiles(), map[string]string{"config_sentence_transformers.json": `{"prompts":{"query":"q"},"default_prompt_name":"doc"}`}),
			`default_prompt_name "doc" is not one of its prompts`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(writeDir(t, tt.files))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Open() error = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestONNXPath(t *testing.T) {
	tests := []struct {
		name    string
		present []string
		dtype   string
		want    string // "" = error
		wantErr string
	}{
		{"auto", []string{"onnx/model.onnx", "onnx/model_fp16.onnx"}, "auto", "onnx/model.onnx", ""},
		{"empty = auto", []string{"onnx/model.onnx"}, "", "onnx/model.onnx", ""},
		{"float32 top level", []string{"model.onnx"}, "float32", "model.onnx", ""},
		{"onnx dir preferred", []string{"model.onnx", "onnx/model.onnx"}, "float32", "onnx/model.onnx", ""},
		{"float16", []string{"onnx/model.onnx", "onnx/model_fp16.onnx"}, "float16", "onnx/model_fp16.onnx", ""},
		{"int8", []string{"onnx/model_int8.onnx", "onnx/model_quantized.onnx"}, "int8", "onnx/model_int8.onnx", ""},
		{"int8 quantized", []string{"onnx/model_quantized.onnx"}, "int8", "onnx/model_quantized.onnx", ""},
		{"int8 top level", []string{"model_quantized.onnx"}, "int8", "model_quantized.onnx", ""},
		{"float16 missing", []string{"onnx/model.onnx"}, "float16", "", "no ONNX model for dtype float16: looked for onnx/model_fp16.onnx, model_fp16.onnx"},
		{"none", nil, "auto", "", "looked for onnx/model.onnx, model.onnx"},
		{"int8 lists all", nil, "int8", "", "looked for onnx/model_int8.onnx, onnx/model_quantized.onnx, model_int8.onnx, model_quantized.onnx"},
		{"unknown dtype", []string{"onnx/model.onnx"}, "bf16", "", `unknown dtype "bf16"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := bertFiles()
			delete(files, "onnx/model.onnx")
			for _, p := range tt.present {
				files[p] = "graph"
			}
			dir := writeDir(t, files)
			m, err := Open(dir)
			if err != nil {
				t.Fatalf("Open() error = %v", err)
			}
			got, err := m.ONNXPath(tt.dtype)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("ONNXPath(%q) = %q, %v, want error %q", tt.dtype, got, err, tt.wantErr)
				}
				return
			}
			if want := filepath.Join(dir, filepath.FromSlash(tt.want)); err != nil || got != want {
				t.Errorf("ONNXPath(%q) = %q, %v, want %q", tt.dtype, got, err, want)
			}
		})
	}
}
