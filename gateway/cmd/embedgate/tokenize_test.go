package main

import (
	"bytes"
	"context"
	"io"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func minilmPath() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "tokenizer", "testdata", "minilm.json")
}

func TestTokenizeCommand(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		args  []string
		input string
		want  string
	}{
		{"special tokens", nil, `{"text":"Hello world!"}`, `{"ids":[101,7592,2088,999,102],"type_ids":[0,0,0,0,0],"attention_mask":[1,1,1,1,1]}`},
		{"none", []string{"--no-special-tokens"}, `{"text":"Hello world!"}`, `{"ids":[7592,2088,999],"type_ids":[0,0,0],"attention_mask":[1,1,1]}`},
		{"right", []string{"--max-length", "3"}, `{"text":"Hello world!"}`, `{"ids":[101,7592,102],"type_ids":[0,0,0],"attention_mask":[1,1,1]}`},
		{"left", []string{"--max-length", "3", "--truncation-direction", "left"}, `{"text":"Hello world!"}`, `{"ids":[101,999,102],"type_ids":[0,0,0],"attention_mask":[1,1,1]}`},
		{"pair", nil, `{"text":"Hello world!","pair":"Hi there"}`, `{"ids":[101,7592,2088,999,102,7632,2045,102],"type_ids":[0,0,0,0,0,1,1,1],"attention_mask":[1,1,1,1,1,1,1,1]}`},
		{"pair right", []string{"--max-length", "6"}, `{"text":"Hello world!","pair":"Hi there"}`, `{"ids":[101,7592,2088,102,7632,102],"type_ids":[0,0,0,0,1,1],"attention_mask":[1,1,1,1,1,1]}`},
		{"pair left", []string{"--max-length", "6", "--truncation-direction", "left"}, `{"text":"Hello world!","pair":"Hi there"}`, `{"ids":[101,2088,999,102,2045,102],"type_ids":[0,0,0,0,1,1],"attention_mask":[1,1,1,1,1,1]}`},
		{"pair none", []string{"--no-special-tokens", "--offsets"}, `{"text":"Hi","pair":"there"}`, `{"ids":[7632,2045],"type_ids":[0,1],"attention_mask":[1,1],"tokens":["hi","there"],"offsets":[[0,2],[0,5]]}`},
		{"null pair", nil, `{"text":"a","pair":null}`, `{"ids":[101,1037,102],"type_ids":[0,0,0],"attention_mask":[1,1,1]}`},
		{"two lines", nil, "{\"text\":\"a\"}\n\n{\"text\":\"b\"}\n", "{\"ids\":[101,1037,102],\"type_ids\":[0,0,0],\"attention_mask\":[1,1,1]}\n{\"ids\":[101,1038,102],\"type_ids\":[0,0,0],\"attention_mask\":[1,1,1]}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			args := append([]string{"embedgate", "tokenize", "--tokenizer", minilmPath()}, tt.args...)
			if err := run(context.Background(), args, func(string) string { return "" }, strings.NewReader(tt.input), &out, io.Discard, noSignals); err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimSpace(out.String()); got != tt.want {
				t.Errorf("tokenize %v = %s, want %s", tt.args, got, tt.want)
			}
		})
	}
	for _, bad := range [][]string{{}, {"--tokenizer", "/nonexistent.json"}, {"--tokenizer", minilmPath(), "--truncation-direction", "up"}, {"--tokenizer", minilmPath(), "--max-length", "-1"}} {
		err := run(context.Background(), append([]string{"embedgate", "tokenize"}, bad...), func(string) string { return "" }, strings.NewReader(""), io.Discard, io.Discard, noSignals)
		if err == nil {
			t.Errorf("tokenize %v succeeded, want an error", bad)
		}
	}
	for _, bad := range []string{"not json\n", `{"pair":"a"}`, `{"text":"a","pair":5}`} {
		err := run(context.Background(), []string{"embedgate", "tokenize", "--tokenizer", minilmPath()}, func(string) string { return "" }, strings.NewReader(bad), io.Discard, io.Discard, noSignals)
		if err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("bad input line %q: %v, want an error naming line 1", bad, err)
		}
	}
}

func TestHubRevision(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, modelID, dir, revision, want string
	}{
		{"local dir", "./models/x", "models/x", "main", ""},
		{"hub snapshot", "org/x", "/cache/models--org--x/snapshots/abc123", "main", "abc123"},
		{"other layout", "org/x", "/somewhere/else", "v1", "v1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := hubRevision(tt.modelID, tt.revision, tt.dir); got != tt.want {
				t.Errorf("hubRevision(%q, %q) = %q, want %q", tt.modelID, tt.dir, got, tt.want)
			}
		})
	}
}
