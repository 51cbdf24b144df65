package testenv

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/embedgate/embedgate/gateway/testmodel"
)

func TestORTLibFromEnv(t *testing.T) {
	lib := filepath.Join(t.TempDir(), "libonnxruntime.so.1")
	if err := os.WriteFile(lib, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("ORT_LIB", lib)
	if got := ORTLib(t); got != lib {
		t.Errorf("ORTLib() = %q, want %q", got, lib)
	}
}

func TestTinyModelShared(t *testing.T) {
	// Parallel callers race to generate; all must get the same complete dir.
	const callers = 4
	dirs := make([]string, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() { dirs[i] = TinyModel(t, testmodel.WithSeed(42)) })
	}
	wg.Wait()
	for i, d := range dirs {
		if d != dirs[0] {
			t.Errorf("caller %d got %q, caller 0 got %q", i, d, dirs[0])
		}
	}
	for _, f := range []string{"onnx/model.onnx", "tokenizer.json", "config.json"} {
		if _, err := os.Stat(filepath.Join(dirs[0], f)); err != nil {
			t.Errorf("model dir lacks %s: %v", f, err)
		}
	}
	if other := TinyModel(t, testmodel.WithSeed(43)); other == dirs[0] {
		t.Errorf("different configs share dir %q", other)
	}
	entries, err := os.ReadDir(filepath.Dir(dirs[0]))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), strconv.Itoa(os.Getpid())+"-tmp-") {
			t.Errorf("leftover temporary dir %s", e.Name())
		}
	}
}

func TestTinyReranker(t *testing.T) {
	for _, tt := range []struct {
		opts   []testmodel.Option
		labels string
	}{
		{nil, `"num_labels": 1`},
		{[]testmodel.Option{testmodel.WithNumLabels(2)}, `"num_labels": 2`},
	} {
		dir := TinyReranker(t, tt.opts...)
		conf, err := os.ReadFile(filepath.Join(dir, "config.json"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(conf), `"BertForSequenceClassification"`) || !strings.Contains(string(conf), tt.labels) {
			t.Errorf("%s/config.json = %s, want a BertForSequenceClassification with %s", dir, conf, tt.labels)
		}
		if dir == TinyModel(t) {
			t.Errorf("the reranker and TinyModel share %s", dir)
		}
	}
}

// TestTinyQwen3: the decoder's directory holds a qwen3 config and the
// repository's Qwen3 tokenizer, is shared by callers with the same
// options, and options still apply.
func TestTinyQwen3(t *testing.T) {
	dir := TinyQwen3(t)
	conf, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(conf), `"model_type": "qwen3"`) || !strings.Contains(string(conf), `"vocab_size": 151669`) {
		t.Errorf("%s/config.json = %s, want a qwen3 config of vocabulary 151669", dir, conf)
	}
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(root, Qwen3Tokenizer))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "tokenizer.json"))
	if err != nil || string(got) != string(want) {
		t.Errorf("tokenizer.json is not %s (err %v)", Qwen3Tokenizer, err)
	}
	if again := TinyQwen3(t); again != dir {
		t.Errorf("second call got %s, first %s", again, dir)
	}
	other := TinyQwen3(t, testmodel.WithMaxSeqLength(64))
	sbert, err := os.ReadFile(filepath.Join(other, "sentence_bert_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if other == dir || !strings.Contains(string(sbert), `"max_seq_length": 64`) {
		t.Errorf("WithMaxSeqLength(64): dir %s (default %s), sentence_bert_config.json %s", other, dir, sbert)
	}
}

func TestSweepRemovesDeadProcesses(t *testing.T) {
	root := t.TempDir()
	// Pid 0x7ffffffe cannot exist on Linux (pid_max <= 2^22).
	dead := filepath.Join(root, "2147483646-abc")
	mine := filepath.Join(root, strconv.Itoa(os.Getpid())+"-abc")
	other := filepath.Join(root, "not-a-model")
	for _, d := range []string{dead, mine, other} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sweep(root)
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Errorf("dir of a dead process survived the sweep (stat err %v)", err)
	}
	for _, d := range []string{mine, other} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("sweep removed %s: %v", d, err)
		}
	}
}
