//go:build cgo

package infer

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/backend/onnx"
	"github.com/embedgate/embedgate/gateway/internal/testenv"
	"github.com/embedgate/embedgate/gateway/testmodel"
	"github.com/embedgate/embedgate/gateway/tokenizer"
)

// recorder keeps the batches the engine sends, for the raw benchmark to
// run the very same ones.
type recorder struct {
	Backend
	mu      sync.Mutex
	batches []*gateway.Batch
	on      bool
}

func (r *recorder) Embed(ctx context.Context, b *gateway.Batch) (*gateway.Output, error) {
	r.mu.Lock()
	if r.on {
		r.batches = append(r.batches, b)
	}
	r.mu.Unlock()
	return r.Backend.Embed(ctx, b)
}

// benchDocs are n documents of 5 to 80 words from a seeded generator: a
// search's top hits, short snippets to passages.
func benchDocs(n int) []string {
	words := strings.Fields("the capital of france is paris a city on the seine known for art food fashion and history " +
		"berlin germany rome italy madrid spain river museum tower bridge people live work visit every year")
	rng := rand.New(rand.NewPCG(1, 2))
	docs := make([]string, n)
	for i := range docs {
		w := make([]string, 5+rng.IntN(76))
		for j := range w {
			w[j] = words[rng.IntN(len(words))]
		}
		docs[i] = strings.Join(w, " ")
	}
	return docs
}

// BenchmarkRerank measures pairs per second of Engine.Rerank on a
// generated cross-encoder (tiny, and MiniLM-size) against raw ONNX
// Runtime (the onnx backend alone) running the very batches the engine
// built for the same request: what tokenizing, batching, padding and
// scoring cost above inference (engine/raw is the engine's share of the
// raw rate). Each request reranks 32 documents against one query;
// "engine-4" runs 4 clients at once, so tokenization overlaps inference.
// Run e.g. -bench Rerank -benchtime 3s.
func BenchmarkRerank(b *testing.B) {
	for _, size := range []struct {
		name string
		dir  func(testing.TB, ...testmodel.Option) string
	}{{"tiny", testenv.TinyReranker}, {"minilm", func(tb testing.TB, opts ...testmodel.Option) string {
		return testenv.MiniLMModel(tb, append(opts, testmodel.WithNumLabels(1))...)
	}}} {
		b.Run(size.name, func(b *testing.B) { benchmarkRerank(b, size.dir(b)) })
	}
}

func benchmarkRerank(b *testing.B, dir string) {
	be, err := onnx.Open(onnx.Options{LibraryPath: testenv.ORTLib(b), ModelPath: filepath.Join(dir, "onnx", "model.onnx")})
	if err != nil {
		b.Fatal(err)
	}
	defer be.Close()
	tok, err := tokenizer.LoadFile(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		b.Fatal(err)
	}
	rec := &recorder{Backend: be}
	opts := Options{Task: gateway.TaskRerank, Name: "bench", MaxInputLength: 512, MaxConcurrent: 64, MaxBatchTokens: 8192,
		MaxBatchRequests: 32, MaxClientBatch: 64, MaxInflight: 1, DefaultTruncate: true, Workers: 2}
	eng, err := New(opts, tok, rec, discard(), prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	defer eng.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	defer func() { cancel(); <-done }()

	req := &gateway.RerankRequest{Query: "what is the capital of france", Documents: benchDocs(32), Truncate: true}
	rerank := func() {
		if _, err := eng.Rerank(context.Background(), req); err != nil {
			b.Fatal(err)
		}
	}
	rerank() // warm-up: the runtime sizes its arena
	rec.mu.Lock()
	rec.on = true
	rec.mu.Unlock()
	rerank()
	rec.mu.Lock()
	rec.on = false
	batches := rec.batches
	rec.mu.Unlock()
	pairs := float64(len(req.Documents))

	raw := func() {
		for _, batch := range batches {
			out, err := be.Embed(context.Background(), batch)
			if err != nil {
				b.Fatal(err)
			}
			out.Free()
		}
	}
	// Raw and engine runs alternate, each timed on its own: on a shared
	// machine the load drifts within seconds, and two benchmarks run one
	// after the other compared two different machines.
	b.Run("engine-vs-raw", func(b *testing.B) {
		var rawTime, engineTime time.Duration
		for b.Loop() {
			t0 := time.Now()
			raw()
			t1 := time.Now()
			rerank()
			rawTime, engineTime = rawTime+t1.Sub(t0), engineTime+time.Since(t1)
		}
		n := pairs * float64(b.N)
		b.ReportMetric(n/rawTime.Seconds(), "raw-pairs/s")
		b.ReportMetric(n/engineTime.Seconds(), "engine-pairs/s")
		b.ReportMetric(rawTime.Seconds()/engineTime.Seconds(), "engine/raw")
	})
	b.Run("engine-4", func(b *testing.B) {
		b.SetParallelism(max(1, 4/runtime.GOMAXPROCS(0))) // 4 clients on 2 cores
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := eng.Rerank(context.Background(), req); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(pairs*float64(b.N)/b.Elapsed().Seconds(), "pairs/s")
	})
	b.Logf("%d pairs in %d batches %s", len(req.Documents), len(batches), shapes(batches))
}

// shapes lists batches' [rows×len].
func shapes(batches []*gateway.Batch) string {
	s := make([]string, len(batches))
	for i, b := range batches {
		s[i] = fmt.Sprintf("%dx%d", b.Rows, b.Len)
	}
	return strings.Join(s, " ")
}
