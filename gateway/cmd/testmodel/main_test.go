package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/embedgate/embedgate/gateway/hfmodel"
)

func TestRun(t *testing.T) {
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	if err := run([]string{"testmodel", "-out", dir, "-pooled", "-seed", "3"}, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v (stderr %q)", err, stderr.String())
	}
	for _, f := range []string{"onnx/model.onnx", "config.json", "tokenizer.json", "tokenizer_config.json",
		"1_Pooling/config.json", "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("missing %s: %v", f, err)
		}
	}
	if !strings.Contains(stdout.String(), "wrote tiny model") {
		t.Errorf("stdout = %q, want a summary", stdout.String())
	}
}

func TestRunReranker(t *testing.T) {
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	if err := run([]string{"testmodel", "-out", dir, "-num-labels", "2"}, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v (stderr %q)", err, stderr.String())
	}
	conf, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(conf), `"BertForSequenceClassification"`) || !strings.Contains(string(conf), `"num_labels": 2`) {
		t.Errorf("config.json = %s, want a BertForSequenceClassification with 2 labels", conf)
	}
	if _, err := os.Stat(filepath.Join(dir, "modules.json")); err == nil {
		t.Error("a reranker has modules.json")
	}
	if !strings.Contains(stdout.String(), "wrote tiny reranker (num_labels 2)") {
		t.Errorf("stdout = %q, want a summary naming the reranker", stdout.String())
	}
}

func TestRunQwen3(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join("..", "..", "tokenizer", "testdata", "qwen3emb.json")
	var stdout, stderr bytes.Buffer
	if err := run([]string{"testmodel", "-out", dir, "-arch", "qwen3", "-tokenizer", tok, "-max-seq-length", "1024"}, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v (stderr %q)", err, stderr.String())
	}
	m, err := hfmodel.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.ModelType != "qwen3" || m.Pooling != "last-token" || m.MaxInputLength != 1024 || m.VocabSize != 151669 {
		t.Errorf("hfmodel.Open = type %q, pooling %q, max input %d, vocab %d; want qwen3, last-token, 1024, 151669",
			m.ModelType, m.Pooling, m.MaxInputLength, m.VocabSize)
	}
	if !strings.Contains(stdout.String(), "wrote tiny qwen3 model") {
		t.Errorf("stdout = %q, want a summary naming the qwen3 model", stdout.String())
	}
}

func TestRunErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
	}{
		{"NoOut", nil},
		{"BadSize", []string{"-out", "x", "-size", "huge"}},
		{"BadFlag", []string{"-nope"}},
		{"ExtraArgs", []string{"-out", "x", "extra"}},
		{"PooledReranker", []string{"-out", "x", "-num-labels", "1", "-pooled"}},
		{"BadArch", []string{"-out", "x", "-arch", "llama"}},
		{"Qwen3NoTokenizer", []string{"-out", "x", "-arch", "qwen3"}},
		{"MissingTokenizer", []string{"-out", "x", "-tokenizer", "no/such/tokenizer.json"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := run(append([]string{"testmodel"}, tt.args...), &out, &out); err == nil {
				t.Errorf("run(%q) = nil, want an error", tt.args)
			}
		})
	}
}
