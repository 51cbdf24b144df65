package main

import (
	"bufio"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
)

// TestInvalidUTF8 posts the parity corpus's byte strings that are not valid
// UTF-8 as raw bytes inside JSON: the gateway replaces each ill-formed
// sequence as Rust's from_utf8_lossy does, so the ids equal the reference
// tokenizer's on the same input.
func TestInvalidUTF8(t *testing.T) {
	t.Parallel()
	// BERT drops U+FFFD, so only a byte-level BPE tokenizer shows whether
	// an invalid sequence became one replacement character or several.
	for _, name := range []string{"minilm", "roberta-bpe"} {
		t.Run(name, func(t *testing.T) { testInvalidUTF8(t, name) })
	}
}

func testInvalidUTF8(t *testing.T, tokenizerName string) {
	_, file, _, _ := runtime.Caller(0)
	data := filepath.Join(filepath.Dir(file), "..", "..", "tokenizer", "testdata")
	corpus, err := os.Open(filepath.Join(data, "corpus.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer corpus.Close()
	raw := map[int][]byte{}
	lineIDs := map[int]int{} // line number → id of the invalid byte strings
	sc := bufio.NewScanner(corpus)
	sc.Buffer(nil, 1<<24)
	for line := 0; sc.Scan(); line++ {
		var item struct {
			ID  int     `json:"id"`
			B64 *string `json:"b64"`
		}
		if err := json.Unmarshal(sc.Bytes(), &item); err != nil {
			t.Fatal(err)
		}
		if item.B64 != nil {
			b, err := base64.StdEncoding.DecodeString(*item.B64)
			if err != nil {
				t.Fatal(err)
			}
			raw[item.ID] = b
			lineIDs[line] = item.ID
		}
	}
	if len(raw) != 50 {
		t.Fatalf("corpus has %d invalid byte strings, want 50", len(raw))
	}
	f, err := os.Open(filepath.Join(data, "expected", tokenizerName+".jsonl.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	// The expected file has one line per corpus line, in the same order:
	// decode only the lines of invalid byte strings (the ids are checked).
	want := map[int][]int{}
	sc = bufio.NewScanner(zr)
	sc.Buffer(nil, 1<<26)
	for line := 0; sc.Scan(); line++ {
		id, ok := lineIDs[line]
		if !ok {
			continue
		}
		var exp struct {
			ID      int `json:"id"`
			Special struct {
				IDs []int `json:"ids"`
			} `json:"special"`
		}
		if err := json.Unmarshal(sc.Bytes(), &exp); err != nil {
			t.Fatal(err)
		}
		if exp.ID != id {
			t.Fatalf("expected line %d has id %d, corpus %d", line+1, exp.ID, id)
		}
		want[id] = exp.Special.IDs
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(want) != len(raw) {
		t.Fatalf("%s: expectations for %d of the %d invalid byte strings", tokenizerName, len(want), len(raw))
	}

	env := baseEnv(t)
	env["MODEL_ID"] = withTokenizer(t, env["MODEL_ID"], filepath.Join(data, tokenizerName+".json"))
	g := startGateway(t, env)
	for id, b := range raw {
		// Escape only what JSON requires; invalid bytes go through as they are.
		body := []byte(`{"inputs":"`)
		for _, c := range b {
			switch {
			case c == '"' || c == '\\':
				body = append(body, '\\', c)
			case c < 0x20:
				body = append(body, []byte(`\u00`)...)
				body = append(body, "0123456789abcdef"[c>>4], "0123456789abcdef"[c&15])
			default:
				body = append(body, c)
			}
		}
		body = append(body, `"}`...)
		r := g.post(t, "/tokenize", string(body))
		if r.status != 200 {
			t.Errorf("item %d: /tokenize %d %s", id, r.status, r.body)
			continue
		}
		toks := decode[[][]struct {
			ID int `json:"id"`
		}](t, r)
		var got []int
		for _, tok := range toks[0] {
			got = append(got, tok.ID)
		}
		if !slices.Equal(got, want[id]) {
			t.Errorf("item %d %q: ids %v, want %v", id, b, got, want[id])
		}
		if e := g.post(t, "/embed", string(body)); e.status != 200 {
			t.Errorf("item %d: /embed %d %s", id, e.status, e.body)
		}
	}
}

// withTokenizer returns a copy of the model directory dir whose
// tokenizer.json is the file tok (the model file itself is linked).
func withTokenizer(t *testing.T, dir, tok string) string {
	t.Helper()
	out := t.TempDir()
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		target := filepath.Join(out, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case rel == "tokenizer.json":
			return nil
		case filepath.Ext(path) == ".onnx":
			return os.Symlink(path, target)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(tok)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, "tokenizer.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}
