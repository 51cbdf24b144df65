package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/embedgate/embedgate/gateway/catalog"
)

// modelDir writes a local model's files: tokenizer.json, config.json and
// two ONNX variants.
func modelDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range map[string]string{
		"tokenizer.json": `{"model":{"type":"WordPiece"}}`, "config.json": `{"hidden_size":32}`,
		"onnx/model.onnx": "weights", "onnx/model_fp16.onnx": "half",
	} {
		path := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestCacheIdentity(t *testing.T) {
	t.Parallel()
	onnxEntry := catalog.Entry{Name: "bge", Backend: "onnx"}
	identity := func(t *testing.T, e catalog.Entry, dir, weights string) string {
		t.Helper()
		id, err := cacheIdentity(e, dir, weights)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	weightsOf := func(dir string) string { return filepath.Join(dir, "onnx", "model.onnx") }

	t.Run("hub snapshot", func(t *testing.T) {
		t.Parallel()
		snap := filepath.Join(t.TempDir(), "models--org--bge", "snapshots", "abc123")
		if got, want := identity(t, onnxEntry, snap, filepath.Join(snap, "onnx", "model.onnx")), "bge|abc123|onnx:onnx/model.onnx"; got != want {
			t.Errorf("identity = %q, want %q", got, want)
		}
		triton := catalog.Entry{Name: "bge", Backend: "triton", TritonModel: "bge_onnx"}
		if got, want := identity(t, triton, snap, ""), "bge|abc123|triton:bge_onnx"; got != want {
			t.Errorf("identity = %q, want %q", got, want)
		}
	})

	t.Run("local files", func(t *testing.T) {
		t.Parallel()
		dir := modelDir(t)
		base := identity(t, onnxEntry, dir, weightsOf(dir))
		if !strings.HasPrefix(base, "bge|sha256:") || !strings.HasSuffix(base, "|onnx:onnx/model.onnx") {
			t.Errorf("identity = %q, want bge|sha256:…|onnx:onnx/model.onnx", base)
		}
		if again := identity(t, onnxEntry, dir, weightsOf(dir)); again != base {
			t.Errorf("identity changed with no change: %q then %q", base, again)
		}
		seen := map[string]string{base: "unchanged"}
		differs := func(what, id string) {
			t.Helper()
			if prev, ok := seen[id]; ok {
				t.Errorf("%s: identity %q is the same as with %s", what, id, prev)
			}
			seen[id] = what
		}
		differs("another name", identity(t, catalog.Entry{Name: "bge2", Backend: "onnx"}, dir, weightsOf(dir)))
		differs("another dtype", identity(t, onnxEntry, dir, filepath.Join(dir, "onnx", "model_fp16.onnx")))
		differs("triton", identity(t, catalog.Entry{Name: "bge", Backend: "triton", TritonModel: "bge"}, dir, ""))

		edits := []struct {
			what string
			edit func() error
		}{
			{"tokenizer.json changed", func() error {
				return os.WriteFile(filepath.Join(dir, "tokenizer.json"), []byte(`{"model":{"type":"BPE"}}`), 0o644)
			}},
			{"config.json changed", func() error {
				return os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"hidden_size":64}`), 0o644)
			}},
			{"weights touched", func() error {
				future := time.Now().Add(time.Hour)
				return os.Chtimes(weightsOf(dir), future, future)
			}},
			{"weights resized", func() error {
				fi, err := os.Stat(weightsOf(dir))
				if err != nil {
					return err
				}
				if err := os.WriteFile(weightsOf(dir), []byte("new weights"), 0o644); err != nil {
					return err
				}
				return os.Chtimes(weightsOf(dir), fi.ModTime(), fi.ModTime()) // only the size tells
			}},
		}
		for _, ed := range edits {
			if err := ed.edit(); err != nil {
				t.Fatal(err)
			}
			differs(ed.what, identity(t, onnxEntry, dir, weightsOf(dir)))
		}
	})

	t.Run("missing files", func(t *testing.T) {
		t.Parallel()
		dir := modelDir(t)
		if err := os.Remove(weightsOf(dir)); err != nil {
			t.Fatal(err)
		}
		if _, err := cacheIdentity(onnxEntry, dir, weightsOf(dir)); err == nil {
			t.Error("identity of a model without its weights: no error")
		}
		if err := os.Remove(filepath.Join(dir, "config.json")); err != nil {
			t.Fatal(err)
		}
		if _, err := cacheIdentity(catalog.Entry{Name: "bge", Backend: "triton"}, dir, ""); err == nil || !strings.Contains(err.Error(), "config.json") {
			t.Errorf("identity without config.json: %v, want an error naming it", err)
		}
	})
}
