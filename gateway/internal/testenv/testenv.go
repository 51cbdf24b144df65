// Package testenv provides what tests and benchmarks of other packages need
// from the machine: the ONNX Runtime library and generated test models
// (package testmodel). Nothing here is for production code.
package testenv

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/embedgate/embedgate/gateway/testmodel"
)

// ortVersion is the runtime scripts/fetch-ort installs.
const ortVersion = "1.30.0"

// ORTLib returns the path of libonnxruntime.so.1: $ORT_LIB, else the copy
// `make setup` puts under the repository's .cache. When it is missing the
// test is skipped, except in CI (CI=true), where a missing install step must
// fail rather than turn green.
func ORTLib(t testing.TB) string {
	t.Helper()
	path := os.Getenv("ORT_LIB")
	if path == "" {
		root, err := repoRoot()
		if err != nil {
			t.Fatalf("testenv: %v", err)
		}
		path = filepath.Join(root, ".cache", "ort", ortVersion, "libonnxruntime.so.1")
	}
	if _, err := os.Stat(path); err != nil {
		msg := fmt.Sprintf("ONNX Runtime library not found (%v): run `make setup` or set ORT_LIB", err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return path
}

// repoRoot walks up from the working directory (a test's package dir) to
// the directory holding go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// TinyModel returns the directory of a generated tiny model with opts
// applied (see testmodel.Option).
func TinyModel(t testing.TB, opts ...testmodel.Option) string {
	t.Helper()
	return model(t, testmodel.NewConfig(opts...))
}

// TinyReranker returns the directory of a generated tiny cross-encoder:
// one label (output logits [B, 1]) unless opts say otherwise
// (testmodel.WithNumLabels(2)). Its encoder is TinyModel's of the same seed.
func TinyReranker(t testing.TB, opts ...testmodel.Option) string {
	t.Helper()
	return model(t, testmodel.NewConfig(append([]testmodel.Option{testmodel.WithNumLabels(1)}, opts...)...))
}

// TinyQwen3 returns the directory of a generated tiny Qwen3 decoder
// (testmodel.Qwen3): inputs input_ids, attention_mask and position_ids,
// output last_hidden_state, the real Qwen3 tokenizer (read from the
// tokenizer package's testdata), last-token pooling and Qwen3-Embedding's
// prompts; opts change it further.
func TinyQwen3(t testing.TB, opts ...testmodel.Option) string {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	tok, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(Qwen3Tokenizer)))
	if err != nil {
		t.Fatalf("testenv: the Qwen3 tokenizer: %v", err)
	}
	base := []testmodel.Option{testmodel.WithArch(testmodel.Qwen3), testmodel.WithTokenizer(tok, 0)}
	return model(t, testmodel.NewConfig(append(base, opts...)...))
}

// Qwen3Tokenizer is the Qwen3-Embedding tokenizer.json, relative to the
// repository root: the tokenizer tests' copy, which TinyQwen3 and
// `make testmodel` write into the decoder's directory rather than keep a
// second 5 MB copy.
const Qwen3Tokenizer = "gateway/tokenizer/testdata/qwen3emb.json"

// MiniLMModel returns the directory of a generated MiniLM-size model (90 MB,
// about 3 s to write): for benchmarks.
func MiniLMModel(b testing.TB, opts ...testmodel.Option) string {
	b.Helper()
	return model(b, testmodel.NewConfig(append([]testmodel.Option{testmodel.WithSize(testmodel.MiniLM)}, opts...)...))
}

// model generates cfg once per test process. Tests in one binary share the
// directory (keyed by process id and config), which lives under
// os.TempDir()/embedgate-testmodels because t.TempDir is per test. Writers
// race safely: each generates into its own directory and renames it into
// place; a loser discards its copy. Directories of processes that have
// exited are removed on the way, since nothing runs at process exit.
func model(t testing.TB, cfg testmodel.Config) string {
	t.Helper()
	key, err := json.Marshal(cfg)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	sum := sha256.Sum256(key)
	root := filepath.Join(os.TempDir(), "embedgate-testmodels")
	pid := strconv.Itoa(os.Getpid())
	dir := filepath.Join(root, pid+"-"+hex.EncodeToString(sum[:8]))
	if _, err := os.Stat(filepath.Join(dir, "onnx", "model.onnx")); err == nil {
		return dir
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	sweep(root)
	tmp, err := os.MkdirTemp(root, pid+"-tmp-")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if err := testmodel.Write(tmp, cfg); err != nil {
		os.RemoveAll(tmp)
		t.Fatalf("testenv: %v", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		// Another test won the race; its copy is identical.
		os.RemoveAll(tmp)
		if _, statErr := os.Stat(filepath.Join(dir, "onnx", "model.onnx")); statErr != nil {
			t.Fatalf("testenv: install model: %v", err)
		}
	}
	return dir
}

// sweep removes model directories left by processes that no longer run.
func sweep(root string) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, e := range entries {
		head, _, ok := strings.Cut(e.Name(), "-")
		pid, err := strconv.Atoi(head)
		if !ok || err != nil || pid == os.Getpid() || alive(pid) {
			continue
		}
		os.RemoveAll(filepath.Join(root, e.Name()))
	}
}

// alive reports whether process pid exists (signal 0 checks without sending).
func alive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	err = p.Signal(syscall.Signal(0))
	return err == nil || errors.Is(err, syscall.EPERM)
}
