package hfmodel

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/embedgate/embedgate/gateway/hub"
	"github.com/embedgate/embedgate/gateway/hub/hubtest"
)

const commit = "abcdefabcdefabcdefabcdefabcdefabcdefabcd"

func hubEnv(t *testing.T, s *hubtest.Server, extra map[string]string) func(string) string {
	t.Helper()
	env := map[string]string{"HF_ENDPOINT": s.URL, "HF_HUB_CACHE": t.TempDir()}
	for k, v := range extra {
		env[k] = v
	}
	return func(k string) string { return env[k] }
}

func newHub(t *testing.T, repo string, files map[string]string) *hubtest.Server {
	t.Helper()
	s := hubtest.NewServer()
	t.Cleanup(s.Close)
	s.AddCommit(repo, commit, files)
	return s
}

func asked(reqs []string, file string) bool {
	return slices.ContainsFunc(reqs, func(r string) bool {
		return strings.HasSuffix(r, "/"+commit+"/"+file) || strings.HasSuffix(r, "/main/"+file)
	})
}

func TestResolveLocal(t *testing.T) {
	dir := writeDir(t, bertFiles())
	got, err := Resolve(context.Background(), dir, "main", true, "auto", func(string) string { return "" }, io.Discard)
	if err != nil || got != dir {
		t.Errorf("Resolve(%q) = %q, %v, want the directory itself", dir, got, err)
	}
	for _, id := range []string{"./Qwen3-Embedding-0.6B", "/no/such/model", "../x"} {
		if _, err := Resolve(context.Background(), id, "main", true, "auto", func(string) string { return "" }, io.Discard); err == nil || !strings.Contains(err.Error(), "does not exist") {
			t.Errorf("Resolve(%q) error = %v, want a missing-directory error", id, err)
		}
	}
	file := filepath.Join(dir, "config.json")
	if _, err := Resolve(context.Background(), file, "main", false, "auto", func(string) string { return "" }, io.Discard); err == nil {
		t.Errorf("Resolve(%q) error = nil, want a not-a-directory error", file)
	}
}

func TestResolveHub(t *testing.T) {
	tests := []struct {
		name      string
		files     map[string]string
		needONNX  bool
		dtype     string
		wantONNX  string   // relative path ONNXPath should return; "" = not checked
		notAsked  []string // files that must not be requested
		wantFiles []string // files that must be in the dir
	}{
		{"bert with onnx dir", bertFiles(), true, "auto", "onnx/model.onnx", []string{"model.onnx"},
			[]string{"config.json", "tokenizer.json", "tokenizer_config.json", "1_Pooling/config.json", "modules.json", "sentence_bert_config.json"}},
		{"top-level model.onnx", with(bertFiles(), map[string]string{"onnx/model.onnx": "", "model.onnx": "graph"}), true, "float32", "model.onnx", nil, nil},
		{"int8 quantized", with(bertFiles(), map[string]string{"onnx/model_quantized.onnx": "q"}), true, "int8", "onnx/model_quantized.onnx", []string{"onnx/model.onnx"}, nil},
		{"no onnx needed", bertFiles(), false, "auto", "", []string{"onnx/model.onnx"}, nil},
		{"qwen with prompts and external data", with(qwenFiles(), map[string]string{"onnx/model.onnx": "graph", "onnx/model.onnx_data": "weights"}), true, "auto", "onnx/model.onnx", nil,
			[]string{"config_sentence_transformers.json", "onnx/model.onnx_data"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newHub(t, "org/model", tt.files)
			dir, err := Resolve(context.Background(), "org/model", "main", tt.needONNX, tt.dtype, hubEnv(t, s, nil), io.Discard)
			if err != nil {
				t.Fatalf("Resolve() error = %v", err)
			}
			m, err := Open(dir)
			if err != nil {
				t.Fatalf("Open(resolved) error = %v", err)
			}
			if tt.wantONNX != "" {
				if got, err := m.ONNXPath(tt.dtype); err != nil || got != filepath.Join(dir, tt.wantONNX) {
					t.Errorf("ONNXPath(%q) = %q, %v, want %s in %s", tt.dtype, got, err, tt.wantONNX, dir)
				}
			}
			for _, f := range tt.wantFiles {
				if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
					t.Errorf("%s not downloaded: %v", f, err)
				}
			}
			for _, f := range tt.notAsked {
				if asked(s.Requests(), f) {
					t.Errorf("requests %q ask for %s", s.Requests(), f)
				}
			}
		})
	}
}

func TestResolveHubQwenPrompts(t *testing.T) {
	s := newHub(t, "Qwen/Qwen3-Embedding-0.6B", with(qwenFiles(), map[string]string{"onnx/model.onnx": "graph"}))
	dir, err := Resolve(context.Background(), "Qwen/Qwen3-Embedding-0.6B", "main", true, "auto", hubEnv(t, s, nil), io.Discard)
	if err != nil {
		t.Fatalf("Resolve() error = %v", err)
	}
	m, err := Open(dir)
	if err != nil {
		t.Fatalf("Open() error = %v", err)
	}
	if m.Pooling != "last-token" || m.Prompts["query"] != qwenQuery || m.MaxInputLength != 32768 {
		t.Errorf("Open() = pooling %q, query prompt %q, max %d, want last-token, the Qwen prompt, 32768", m.Pooling, m.Prompts["query"], m.MaxInputLength)
	}
}

func TestResolveHubErrors(t *testing.T) {
	tests := []struct {
		name    string
		files   map[string]string
		token   string // required by the hub
		env     map[string]string
		dtype   string
		wantErr []string
		notIn   string
	}{
		{"missing tokenizer.json", with(bertFiles(), map[string]string{"tokenizer.json": ""}), "", nil, "auto", []string{"tokenizer.json", "org/model"}, ""},
		{"missing config.json", with(bertFiles(), map[string]string{"config.json": ""}), "", nil, "auto", []string{"config.json not found"}, ""},
		{"missing onnx", with(bertFiles(), map[string]string{"onnx/model.onnx": ""}), "", nil, "auto", []string{"no ONNX model for dtype auto (float32) in org/model", "onnx/model.onnx, model.onnx"}, ""},
		{"missing fp16", bertFiles(), "", nil, "float16", []string{"onnx/model_fp16.onnx"}, ""},
		{"unknown dtype", bertFiles(), "", nil, "bf16", []string{`unknown dtype "bf16"`}, ""},
		{"auth without token", bertFiles(), "hf_right", nil, "auto", []string{"401", "set HF_TOKEN"}, ""},
		{"auth with wrong token", bertFiles(), "hf_right", map[string]string{"HF_TOKEN": "hf_wrong"}, "auto", []string{"401", "HF_TOKEN"}, "hf_wrong"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newHub(t, "org/model", tt.files)
			if tt.token != "" {
				s.RequireToken("org/model", tt.token)
			}
			_, err := Resolve(context.Background(), "org/model", "main", true, tt.dtype, hubEnv(t, s, tt.env), io.Discard)
			if err == nil {
				t.Fatalf("Resolve() error = nil, want %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Resolve() error = %q, want it to contain %q", err, w)
				}
			}
			if tt.notIn != "" && strings.Contains(err.Error(), tt.notIn) {
				t.Errorf("Resolve() error = %q contains %q", err, tt.notIn)
			}
		})
	}
}

// TestResolveUnreachableHub: without the hub, the error says what to do:
// serve the local test model, or set HF_ENDPOINT or HF_HUB_OFFLINE.
// Before, it was the transport's error alone.
func TestResolveUnreachableHub(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	for _, tt := range []struct{ endpoint, cause string }{
		{closed, "connection refused"},
		{"https://hub.invalid", "the name hub.invalid does not resolve"}, // .invalid never resolves (RFC 2606)
	} {
		t.Run(tt.endpoint, func(t *testing.T) {
			env := map[string]string{"HF_ENDPOINT": tt.endpoint, "HF_HUB_CACHE": t.TempDir()}
			_, err := Resolve(context.Background(), "BAAI/bge-small-en-v1.5", "main", true, "auto", func(k string) string { return env[k] }, io.Discard)
			if !errors.Is(err, hub.ErrUnreachable) {
				t.Fatalf("Resolve() error = %v, want hub.ErrUnreachable", err)
			}
			for _, w := range []string{"cannot reach the hub " + tt.endpoint, tt.cause, "make run MODEL_ID=.cache/models/tiny-bert", "make setup", "HF_ENDPOINT", "HF_HUB_OFFLINE"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Resolve() error = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestResolveAuthWithToken(t *testing.T) {
	s := newHub(t, "org/private", bertFiles())
	s.RequireToken("org/private", "hf_right")
	if _, err := Resolve(context.Background(), "org/private", "main", true, "auto", hubEnv(t, s, map[string]string{"HF_TOKEN": "hf_right"}), io.Discard); err != nil {
		t.Errorf("Resolve() with the right HF_TOKEN error = %v", err)
	}
}

func TestResolveOfflineAfterDownload(t *testing.T) {
	s := newHub(t, "org/model", bertFiles())
	cache := t.TempDir()
	env := map[string]string{"HF_ENDPOINT": s.URL, "HF_HUB_CACHE": cache}
	getenv := func(k string) string { return env[k] }
	online, err := Resolve(context.Background(), "org/model", "main", true, "auto", getenv, io.Discard)
	if err != nil {
		t.Fatalf("Resolve() error = %v", err)
	}
	s.Reset()
	env["HF_HUB_OFFLINE"] = "1"
	offline, err := Resolve(context.Background(), "org/model", "main", true, "auto", getenv, io.Discard)
	if err != nil || offline != online {
		t.Errorf("offline Resolve() = %q, %v, want %q", offline, err, online)
	}
	if reqs := s.Requests(); len(reqs) != 0 {
		t.Errorf("offline Resolve() made requests %q", reqs)
	}
	if _, err := Resolve(context.Background(), "org/model", "main", true, "float16", getenv, io.Discard); err == nil || !strings.Contains(err.Error(), "onnx/model_fp16.onnx") {
		t.Errorf("offline Resolve(float16) error = %v, want one naming onnx/model_fp16.onnx", err)
	}
}
