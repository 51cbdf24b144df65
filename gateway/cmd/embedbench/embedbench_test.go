package main

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/internal/testenv"
	"github.com/embedgate/embedgate/gateway/tokenizer"
	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// smallMix is DefaultMix with fewer requests, to keep tests quick under
// -race.
func smallMix(seed uint64, requests int) MixOptions {
	o := DefaultMix(seed)
	o.Requests = requests
	return o
}

func TestMixProportions(t *testing.T) {
	m, err := NewMix(smallMix(1, 1024))
	if err != nil {
		t.Fatal(err)
	}
	bounds := [numKinds][2]int{kindQuery: {5, 20}, kindPassage: {100, 300}, kindDoc: {500, 540}}
	var kinds [numKinds]int
	var routes [numRoutes]int
	inputs := 0
	for _, r := range m.Requests {
		if n := len(r.Inputs); n < 1 || n > 16 {
			t.Fatalf("request has %d inputs, want 1-16", n)
		}
		routes[r.Route]++
		for _, in := range r.Inputs {
			kinds[in.Kind]++
			inputs++
			lo, hi := bounds[in.Kind][0], bounds[in.Kind][1]
			if in.Words < lo || in.Words > hi {
				t.Fatalf("kind %d input of %d tokens, want %d-%d", in.Kind, in.Words, lo, hi)
			}
		}
	}
	near := func(name string, got int, total int, want float64) {
		t.Helper()
		if share := float64(got) / float64(total); math.Abs(share-want) > 0.04 {
			t.Errorf("%s share = %.3f, want %.2f ± 0.04", name, share, want)
		}
	}
	near("query", kinds[kindQuery], inputs, 0.6)
	near("passage", kinds[kindPassage], inputs, 0.3)
	near("doc", kinds[kindDoc], inputs, 0.1)
	near("openai base64", routes[routeOpenAIBase64], len(m.Requests), 0.5)
	near("openai float", routes[routeOpenAIFloat], len(m.Requests), 0.25)
	near("tei", routes[routeTEI], len(m.Requests), 0.25)
	if mean := float64(inputs) / float64(len(m.Requests)); math.Abs(mean-8.5) > 0.5 {
		t.Errorf("mean inputs per request = %.2f, want 8.5 ± 0.5", mean)
	}
}

func TestMixDeterministic(t *testing.T) {
	a, err := NewMix(smallMix(7, 128))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewMix(smallMix(7, 128))
	c, _ := NewMix(smallMix(8, 128))
	if !bytes.Equal(a.Requests[100].Body, b.Requests[100].Body) {
		t.Error("same seed gave different bodies")
	}
	if bytes.Equal(a.Requests[100].Body, c.Requests[100].Body) {
		t.Error("different seeds gave the same body")
	}
}

// TestMixTokens checks the promise the mix's lengths rest on: with the
// model's real tokenizer, every word is one token, so an input of n
// generated tokens encodes to n+2 with [CLS] and [SEP].
func TestMixTokens(t *testing.T) {
	tok, err := tokenizer.LoadFile(filepath.Join(testenv.TinyModel(t), "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range strings.Fields(wordText) {
		if ids := tok.Encode(w, tokenizer.EncodeOptions{}).IDs; len(ids) != 1 {
			t.Errorf("word %q is %d tokens, want 1", w, len(ids))
		}
	}
	m, err := NewMix(smallMix(3, 4))
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range m.Requests[0].Inputs {
		if got := len(tok.Encode(in.Text, tokenizer.EncodeOptions{AddSpecialTokens: true}).IDs); got != in.Words+2 {
			t.Errorf("input of %d generated tokens encodes to %d, want %d", in.Words, got, in.Words+2)
		}
	}
}

func TestRequestBodies(t *testing.T) {
	m, err := NewMix(smallMix(1, 8))
	if err != nil {
		t.Fatal(err)
	}
	tr := m.Targeter("http://127.0.0.1:1")
	seen := map[string]bool{}
	for range 8 {
		var tg vegeta.Target
		if err := tr(&tg); err != nil {
			t.Fatal(err)
		}
		seen[tg.URL] = true
		var body map[string]any
		if err := json.Unmarshal(tg.Body, &body); err != nil {
			t.Fatalf("body %s: %v", tg.Body, err)
		}
		field := "inputs"
		if strings.HasSuffix(tg.URL, "/v1/embeddings") {
			field = "input"
		}
		list, _ := body[field].([]any)
		if want := inputsFromRequestID(tg.Header.Get("X-Request-Id")); len(list) != want || want == 0 {
			t.Errorf("%s carries %d inputs, its request id says %d", tg.URL, len(list), want)
		}
	}
	if len(seen) < 2 {
		t.Errorf("8 requests used routes %v, want a mix", seen)
	}
}

func TestIdealBatches(t *testing.T) {
	tok, err := tokenizer.LoadFile(filepath.Join(testenv.TinyModel(t), "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewMix(smallMix(1, 256))
	if err != nil {
		t.Fatal(err)
	}
	batches, err := idealBatches(tok, m.Texts(1024), 512, 32, 16384)
	if err != nil {
		t.Fatal(err)
	}
	rows, real, padded := 0, 0, 0
	for _, b := range batches {
		if b.Rows > 32 || b.Rows*b.Len > 16384 || b.Len > 512 {
			t.Errorf("batch [%d,%d] over the limits", b.Rows, b.Len)
		}
		rows += b.Rows
		real += realTokens(b)
		padded += b.Rows * b.Len
	}
	if rows != 1024 {
		t.Errorf("batches hold %d rows, want 1024", rows)
	}
	if pad := 1 - float64(real)/float64(padded); pad > 0.10 {
		t.Errorf("ideal batches pad %.1f%%, want < 10%% (sorted, 32 rows)", 100*pad)
	}
}

func TestInstantShapes(t *testing.T) {
	spec := gateway.ModelSpec{Hidden: 4, Output: gateway.Hidden}
	z := newInstant(spec, 2, 3)
	out, err := z.Embed(t.Context(), &gateway.Batch{Rows: 2, Len: 3})
	if err != nil || len(out.Data) != 2*3*4 || out.Data[0] == 0 {
		t.Fatalf("Embed = %v, %v; want 24 non-zero values", out, err)
	}
	if _, err := z.Embed(t.Context(), &gateway.Batch{Rows: 3, Len: 3}); err == nil {
		t.Error("Embed of a batch larger than prepared: want an error")
	}
}

func TestParseMetrics(t *testing.T) {
	m := parseMetrics([]byte(`# HELP embedgate_batch_padding_ratio x
# TYPE embedgate_batch_padding_ratio histogram
embedgate_batch_padding_ratio_bucket{le="0.1"} 3
embedgate_batch_padding_ratio_sum 0.75
embedgate_batch_padding_ratio_count 5
embedgate_http_requests_total{route="/embed",status="200"} 7
embedgate_http_requests_total{route="/embed",status="429"} 2
`))
	if m["embedgate_batch_padding_ratio_sum"] != 0.75 || m["embedgate_batch_padding_ratio_count"] != 5 || m["embedgate_http_requests_total"] != 9 {
		t.Errorf("parseMetrics = %v", m)
	}
}

func TestInferenceTiming(t *testing.T) {
	body := []byte(`{"data":[],"usage":{"prompt_tokens":3,"total_tokens":3},"timings":{"tokenization":"120µs","queue":"2ms","inference":"35.5µs"}}`)
	if d, ok := inferenceTiming(body); !ok || d != 35500*time.Nanosecond {
		t.Errorf("inferenceTiming = %v, %v; want 35.5µs", d, ok)
	}
}

func TestReportRenders(t *testing.T) {
	l := func(name string, clients int, tokens float64) *Level {
		return &Level{Name: name, Clients: clients, Window: time.Second, Makespan: 20 * time.Second, TokPerCPU: 5000, Requests: 10, Embedding: 85, Tokens: tokens,
			Latency: quantiles{N: 10, P50: 40 * time.Millisecond, P90: 90 * time.Millisecond, P99: 2 * time.Second, Max: 2 * time.Second},
			Status:  map[int]int{200: 10, 504: 1}, Padding: 0.12, BatchRows: 20, GatewayCPU: 1.7, RSSMax: 600 << 20, HWM: 610 << 20}
	}
	over := l("instant", 1, 1000)
	over.Overhead = quantiles{N: 10, P50: 700 * time.Microsecond}
	mem := l("instant: 256 clients", 256, 1e5)
	mem.HWM = 120 << 20
	load := l("overload", 80, 9000)
	load.Status, load.Max429 = map[int]int{200: 90, 429: 5000}, 3*time.Millisecond
	raw := &Raw{Batches: 40, Rows: 32, Padding: 0.02, Tokens: 10000, Embeddings: 80, TokPerCPU: 6000}
	rep := &Report{RawRuns: []*Raw{raw, {Tokens: 9000, TokPerCPU: 5000}}, Date: time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC), Machine: "2 × test", Model: "m", Mix: "mix",
		Raw:      raw,
		Levels:   []*Level{l("onnx", 1, 5000), l("onnx", 64, 9500), l("triton", 64, 8000)},
		Overhead: over, Memory: []*Level{mem}, Overload: []*Level{load}, OverloadMax: 64}
	var buf bytes.Buffer
	if err := rep.Write(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"| raw 1 (baseline: best) | 40 | 32.0 | 2% | 80.0 | 10000 | 6000 |",
		"| onnx | 64 | 20.00s | 10.0 | 85.0 | 9500 | 0.95 | 5000 | 0.83 | 0 | 0.00 | 40ms | 90ms | 2.00s | 10 | 200: 10, 504: 1 | 12% / 0% | 20.0 |",
		"| onnx: tokens/s at 64 clients ÷ raw ORT | ≥ 0.90 | 0.95 (9500 / 10000 tokens/s); per CPU-second 0.83 (5000 / 6000) | met |",
		"| triton: tokens/s at 64 clients ÷ raw ORT | ≥ 0.90 | 0.80 (8000 / 10000 tokens/s); per CPU-second 0.83 (5000 / 6000) | **missed** |",
		"700µs minus inference | met |",
		"120 MB peak (VmHWM)",
		"| overload, 80 clients | only 200/429, 429s ≤ 1 s, no 5xx | 200: 90, 429: 5000; slowest 429 3.00ms | met |",
		"| overload: tokens/s of the admitted work ÷ the 64-client level | ≥ 0.90 | 0.95 (9000 / 9500 tokens/s) | met |", // OverloadMax: 64
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	for _, tt := range []struct {
		ms, secs string
		want     time.Duration
		ok       bool
	}{
		{"250", "1", 250 * time.Millisecond, true}, // the millisecond form wins
		{"", "2", 2 * time.Second, true},
		{"", "", 0, false},
		{"", "61", 0, false}, // over a minute: ignored, as the SDKs do
		{"x", "0", 0, false},
	} {
		h := http.Header{}
		if tt.ms != "" {
			h.Set("retry-after-ms", tt.ms)
		}
		if tt.secs != "" {
			h.Set("Retry-After", tt.secs)
		}
		got, ok := retryAfter(h)
		if ok != tt.ok || ok && got != tt.want {
			t.Errorf("retryAfter(ms=%q, s=%q) = %v, %v; want %v, %v", tt.ms, tt.secs, got, ok, tt.want, tt.ok)
		}
	}
}

// A client that got 429 sends nothing until the retry-after has passed,
// and says how long it waited.
func TestBackoffWaitsBeforeTheNextRequest(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("retry-after-ms", "80")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()
	c := &http.Client{Transport: backoff{next: http.DefaultTransport, until: time.Now().Add(time.Minute)}}
	start := time.Now()
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if waited := time.Since(start); waited < 80*time.Millisecond {
		t.Errorf("closing a 429's body returned after %v, before its retry-after of 80ms", waited)
	}
	if got := resp.Header.Get(backoffHeader); got != "80ms" {
		t.Errorf("%s = %q, want 80ms", backoffHeader, got)
	}
}
