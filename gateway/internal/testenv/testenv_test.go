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
