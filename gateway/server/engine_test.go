// The tests in this file run the real *infer.Engine on the tiny test model
// (ONNX Runtime in process).

package server

import (
	"context"
	"io"
	"path/filepath"
	"runtime"

	"encoding/base64"
	"encoding/binary"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/embedgate/embedgate/gateway/backend/onnx"
	"github.com/embedgate/embedgate/gateway/hfmodel"
	"github.com/embedgate/embedgate/gateway/internal/testenv"
	"github.com/embedgate/embedgate/gateway/pooling"
	"github.com/embedgate/embedgate/gateway/tokenizer"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/embedgate/embedgate/gateway/infer"
)

// engineOption adjusts newTinyEngine's options or replaces its backend
// (which starts as the tiny model on ONNX Runtime).
type engineOption func(opts *infer.Options, backend *infer.Backend)

// newTinyEngine builds and runs a real engine on the tiny test model.
func newTinyEngine(t *testing.T, tune ...engineOption) *infer.Engine {
	t.Helper()
	dir := testenv.TinyModel(t)
	model, err := hfmodel.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.LoadFile(model.TokenizerPath)
	if err != nil {
		t.Fatal(err)
	}
	be, err := onnx.Open(onnx.Options{LibraryPath: testenv.ORTLib(t), ModelPath: filepath.Join(dir, "onnx", "model.onnx"), IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	opts := infer.Options{
		ModelID: "tiny", Pooling: pooling.Mean, MaxInputLength: model.MaxInputLength, MaxConcurrent: 16,
		MaxBatchTokens: 4096, MaxBatchRequests: 8, MaxClientBatch: 64, DefaultTruncate: true, Workers: 2,
		Prompts: model.Prompts,
	}
	var backend infer.Backend = be
	for _, f := range tune {
		f(&opts, &backend)
	}
	eng, err := infer.New(opts, tok, backend, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	for !eng.Ready() {
		runtime.Gosched()
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("engine Run: %v", err)
		}
		_ = be.Close()
	})
	return eng
}

func newRealServer(t *testing.T) (*testServer, *infer.Engine) {
	t.Helper()
	eng := newTinyEngine(t)
	logs := &testenv.LogBuffer{}
	reg := prometheus.NewRegistry()
	// The fleet opens engines itself; this serves the test's own.
	s, err := newServer(Options{BodyLimit: 1 << 20, RequestTimeout: 10 * time.Second}, slog.New(slog.NewJSONHandler(logs, nil)), oneModel(eng), reg, nil, nil)
	if err != nil {
		t.Fatalf("newServer: %v", err)
	}
	t.Cleanup(func() { _ = s.App().Shutdown() })
	return &testServer{Server: s, reg: reg, logs: logs}, eng
}

func TestRealEmbedRoutes(t *testing.T) {
	s, eng := newRealServer(t)
	runEmbedCases(t, s, eng.Limits().Dimensions)
}

func TestRealProbes(t *testing.T) {
	s, _ := newRealServer(t)
	for _, path := range []string{"/health", "/ready", "/info", "/v1/models"} {
		if resp, body := s.do(t, http.MethodGet, path, "", ""); resp.StatusCode != 200 {
			t.Errorf("GET %s = %d, want 200 (%s)", path, resp.StatusCode, body)
		}
	}
	s.Drain()
	if resp, _ := s.do(t, http.MethodGet, "/ready", "", ""); resp.StatusCode != 503 {
		t.Errorf("GET /ready after Drain = %d, want 503", resp.StatusCode)
	}
}

// TestRealOrder checks that data[i] is input i's own embedding, whatever
// the batcher's length sorting did.
func TestRealOrder(t *testing.T) {
	s, _ := newRealServer(t)
	texts := []string{"a much longer sentence about nothing in particular", "hi", "medium length text"}
	var batch struct {
		Data []struct{ Embedding []float32 }
	}
	_, body := s.post(t, "/v1/embeddings", `{"input":["`+strings.Join(texts, `","`)+`"]}`)
	mustJSON(t, body, &batch)
	for i, txt := range texts {
		var one struct {
			Data []struct{ Embedding []float32 }
		}
		_, b := s.post(t, "/v1/embeddings", `{"input":"`+txt+`"}`)
		mustJSON(t, b, &one)
		if d := maxDiff(one.Data[0].Embedding, batch.Data[i].Embedding); d > 1e-4 {
			t.Errorf("data[%d] differs from %q alone by %g", i, txt, d)
		}
	}
}

func TestRealBase64MatchesFloat(t *testing.T) {
	s, _ := newRealServer(t)
	var f struct {
		Data []struct{ Embedding []float32 }
	}
	var b struct{ Data []struct{ Embedding string } }
	_, body := s.post(t, "/v1/embeddings", `{"input":"hello world"}`)
	mustJSON(t, body, &f)
	_, body = s.post(t, "/v1/embeddings", `{"input":"hello world","encoding_format":"base64"}`)
	mustJSON(t, body, &b)
	raw, err := base64.StdEncoding.DecodeString(b.Data[0].Embedding)
	if err != nil {
		t.Fatal(err)
	}
	v := make([]float32, len(raw)/4)
	for i := range v {
		v[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	if d := maxDiff(v, f.Data[0].Embedding); len(v) != len(f.Data[0].Embedding) || d != 0 {
		t.Errorf("base64 vector differs from float vector (len %d vs %d, diff %g)", len(v), len(f.Data[0].Embedding), d)
	}
}

func TestRealDimensions(t *testing.T) {
	s, _ := newRealServer(t)
	var r [][]float32
	_, body := s.post(t, "/embed", `{"inputs":"hello","dimensions":2}`)
	mustJSON(t, body, &r)
	if len(r) != 1 || len(r[0]) != 2 {
		t.Fatalf("dimensions 2 = %s", body)
	}
	if n := math.Hypot(float64(r[0][0]), float64(r[0][1])); math.Abs(n-1) > 1e-5 {
		t.Errorf("dimensions 2 normalized norm = %g, want 1", n)
	}
}

func TestRealValidation(t *testing.T) {
	s, eng := newRealServer(t)
	long := strings.Repeat("word ", eng.Limits().MaxInputLength+10)
	tests := []struct {
		name, path, body string
		status           int
		inMessage        string
	}{
		{"too long without truncate", "/embed", `{"inputs":["ok","` + long + `"],"truncate":false}`, 422, "inputs[1]"},
		{"too long truncated", "/embed", `{"inputs":"` + long + `","truncate":true}`, 200, ""},
		{"unknown prompt", "/api/v1/embed", `{"inputs":"a","prompt_name":"no-such-prompt"}`, 422, "prompt_name"},
		{"id past vocab", "/embed", `{"inputs":[[101,2147483647,102]]}`, 422, "inputs[0]"},
		{"openai too long", "/v1/embeddings", `{"input":"` + long + `","truncate":false}`, 400, "input"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := s.post(t, tt.path, tt.body)
			if resp.StatusCode != tt.status {
				t.Fatalf("POST %s = %d, want %d (%s)", tt.path, resp.StatusCode, tt.status, body)
			}
			if tt.status != 200 {
				if msg := checkErrorShape(t, tt.path, body, ""); !strings.Contains(msg, tt.inMessage) {
					t.Errorf("message %q does not name %q", msg, tt.inMessage)
				}
			}
		})
	}
}

func TestRealTokenize(t *testing.T) {
	s, _ := newRealServer(t)
	resp, body := s.post(t, "/tokenize", `{"inputs":"hello world"}`)
	var toks [][]struct {
		ID      int
		Text    string
		Special bool
	}
	mustJSON(t, body, &toks)
	if resp.StatusCode != 200 || len(toks) != 1 || len(toks[0]) < 3 || !toks[0][0].Special {
		t.Errorf("POST /tokenize = %d %s, want [CLS] hello world [SEP]", resp.StatusCode, body)
	}
}

func maxDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	var d float64
	for i := range a {
		d = max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}
