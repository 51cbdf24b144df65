//go:build cgo

package infer

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/backend/onnx"
	"github.com/embedgate/embedgate/gateway/backend/triton"
	"github.com/embedgate/embedgate/gateway/backend/triton/tritontest"
	"github.com/embedgate/embedgate/gateway/internal/testenv"
	"github.com/embedgate/embedgate/gateway/testmodel"
	"github.com/embedgate/embedgate/gateway/tokenizer"
)

// The rerank tests run the tiny cross-encoder (package testmodel) on ONNX
// Runtime and check the engine's scores against the same graph run
// directly, pair by pair, on pairs built here from EncodePair: a pair
// built, padded, typed or ordered wrong by the engine scores differently.

// scoreTolerance: the same pair run alone or padded in a batch may
// differ in the last bits of float32, never more.
const scoreTolerance = 1e-5

// openReranker opens the tiny reranker with labels labels and its
// tokenizer; the backend closes with the test.
func openReranker(t testing.TB, labels int) (*onnx.Backend, *tokenizer.Tokenizer) {
	t.Helper()
	return openDir(t, testenv.TinyReranker(t, testmodel.WithNumLabels(labels)))
}

// rerankOptions are a reranker's engine options: short inputs, so that
// truncation is easy to reach, and small batches, so that a request's
// pairs spread over several, of different lengths.
func rerankOptions() Options {
	return Options{Task: gateway.TaskRerank, Name: "rr", MaxInputLength: 32, MaxConcurrent: 8, MaxBatchTokens: 128,
		MaxBatchRequests: 3, MaxClientBatch: 16, MaxInflight: 1, DefaultTruncate: true, Workers: 2}
}

// startReranker runs an engine of opts on be until the test ends.
func startReranker(t *testing.T, opts Options, be Backend, tok *tokenizer.Tokenizer) *Engine {
	t.Helper()
	eng := newModel(t, opts, be, tok, discard(), prometheus.NewRegistry())
	run(t, eng)
	return eng
}

// directLogits runs the pair (query, doc) alone through be, unpadded,
// encoded with opts, and returns its logits and its length.
func directLogits(t *testing.T, be Backend, tok *tokenizer.Tokenizer, query, doc string, opts tokenizer.EncodeOptions) ([]float32, int) {
	t.Helper()
	opts.AddSpecialTokens = true
	enc := tok.EncodePair(query, doc, opts)
	n := len(enc.IDs)
	b := &gateway.Batch{ID: "direct", Rows: 1, Len: n, InputIDs: make([]int64, n), AttentionMask: make([]int64, n), TokenTypeIDs: make([]int64, n)}
	for i := range n {
		b.InputIDs[i], b.AttentionMask[i], b.TokenTypeIDs[i] = int64(enc.IDs[i]), 1, int64(enc.TypeIDs[i])
	}
	out, err := be.Embed(context.Background(), b)
	if err != nil {
		t.Fatalf("direct run: %v", err)
	}
	defer out.Free()
	return append([]float32(nil), out.Data...), n
}

// wantScore is sentence-transformers' CrossEncoder score, written out
// again here: the last logit raw, else sigmoid (one label) or the
// softmax of the last label.
func wantScore(logits []float32, raw bool) float64 {
	last := float64(logits[len(logits)-1])
	if raw {
		return last
	}
	if len(logits) == 1 {
		return 1 / (1 + math.Exp(-last))
	}
	sum := 0.0
	for _, l := range logits {
		sum += math.Exp(float64(l))
	}
	return math.Exp(last) / sum
}

var rerankDocs = []string{
	"Paris is the capital and most populous city of France.",
	"",
	"The cat sat on the mat.",
	"Berlin is the capital of Germany, and Paris that of France; both are large cities with long histories of their own.",
	"capital",
	"A completely unrelated sentence about cooking pasta with garlic, olive oil and a little chilli.",
	"France",
}

const rerankQuery = "What is the capital of France?"

// TestRerankMatchesDirectRun: for one and two labels, raw or not, each
// score is the score of the pair run alone, and the usage counts every
// pair's tokens.
func TestRerankMatchesDirectRun(t *testing.T) {
	for _, labels := range []int{1, 2} {
		be, tok := openReranker(t, labels)
		eng := startReranker(t, rerankOptions(), be, tok)
		for _, raw := range []bool{false, true} {
			t.Run(fmt.Sprintf("labels=%d/raw=%v", labels, raw), func(t *testing.T) {
				res, err := eng.Rerank(context.Background(), &gateway.RerankRequest{Query: rerankQuery, Documents: rerankDocs, RawScores: raw, Truncate: true})
				if err != nil {
					t.Fatal(err)
				}
				if len(res.Scores) != len(rerankDocs) {
					t.Fatalf("got %d scores for %d documents", len(res.Scores), len(rerankDocs))
				}
				tokens := 0
				for i, doc := range rerankDocs {
					logits, n := directLogits(t, be, tok, rerankQuery, doc, tokenizer.EncodeOptions{MaxLength: 32})
					tokens += n
					if want := wantScore(logits, raw); math.Abs(float64(res.Scores[i])-want) > scoreTolerance {
						t.Errorf("score of texts[%d] = %v, want %v (logits %v run alone)", i, res.Scores[i], want, logits)
					}
				}
				if res.Usage.PromptTokens != tokens {
					t.Errorf("PromptTokens = %d, want %d (every pair's tokens)", res.Usage.PromptTokens, tokens)
				}
			})
		}
	}
}

// TestRerankPairsAreTyped: the tiny reranker tells a pair's halves apart
// by their type ids and order, by more than the tolerance; so the
// comparison with direct runs would catch an engine that lost or
// swapped them.
func TestRerankPairsAreTyped(t *testing.T) {
	be, tok := openReranker(t, 1)
	doc := rerankDocs[0]
	want, _ := directLogits(t, be, tok, rerankQuery, doc, tokenizer.EncodeOptions{})
	swapped, _ := directLogits(t, be, tok, doc, rerankQuery, tokenizer.EncodeOptions{})
	enc := tok.EncodePair(rerankQuery, doc, tokenizer.EncodeOptions{AddSpecialTokens: true})
	n := len(enc.IDs)
	untyped := &gateway.Batch{ID: "untyped", Rows: 1, Len: n, InputIDs: make([]int64, n), AttentionMask: make([]int64, n)}
	for i := range n {
		untyped.InputIDs[i], untyped.AttentionMask[i] = int64(enc.IDs[i]), 1
	}
	out, err := be.Embed(context.Background(), untyped)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Free()
	for name, got := range map[string]float32{"swapped": swapped[0], "without type ids": out.Data[0]} {
		if math.Abs(float64(got-want[0])) < 100*scoreTolerance {
			t.Errorf("the pair %s has logit %v, the pair %v: too close to tell them apart", name, got, want[0])
		}
	}
}

// TestRerankTruncation: a pair over the model's length is cut with
// LongestFirst from the side asked, or refused (422 naming the text)
// without truncate; MaxTokensPerDoc cuts the document alone first.
func TestRerankTruncation(t *testing.T) {
	be, tok := openReranker(t, 1)
	eng := startReranker(t, rerankOptions(), be, tok)
	long := strings.Repeat("the quick brown fox jumps over the lazy dog ", 8) // 72 tokens
	docs := []string{"short one", long}
	for _, dir := range []gateway.Direction{gateway.Right, gateway.Left} {
		res, err := eng.Rerank(context.Background(), &gateway.RerankRequest{Query: rerankQuery, Documents: docs, Truncate: true, Direction: dir})
		if err != nil {
			t.Fatal(err)
		}
		tokens := 0
		for i, doc := range docs {
			logits, n := directLogits(t, be, tok, rerankQuery, doc, tokenizer.EncodeOptions{MaxLength: 32, TruncateLeft: dir == gateway.Left})
			tokens += n
			if want := wantScore(logits, false); math.Abs(float64(res.Scores[i])-want) > scoreTolerance {
				t.Errorf("direction %d: score of texts[%d] = %v, want %v", dir, i, res.Scores[i], want)
			}
		}
		if res.Usage.PromptTokens != tokens || tokens > 2*32 {
			t.Errorf("direction %d: PromptTokens = %d, want %d (each pair at most 32)", dir, res.Usage.PromptTokens, tokens)
		}
	}

	_, err := eng.Rerank(context.Background(), &gateway.RerankRequest{Query: rerankQuery, Documents: docs, Truncate: false})
	var ge *gateway.Error
	if !errors.As(err, &ge) || ge.Kind != gateway.Validation || ge.Param != "texts[1]" || !strings.Contains(ge.Msg, "maximum of 32") {
		t.Fatalf("Rerank(truncate false, a long text) = %v, want 422 on texts[1]", err)
	}

	// Each word is one token: max 5 tokens per document keeps its first
	// five words (its last five from the left).
	words := "one two three four five six seven eight"
	for _, tt := range []struct {
		dir  gateway.Direction
		same string
	}{{gateway.Right, "one two three four five"}, {gateway.Left, "four five six seven eight"}} {
		res, err := eng.Rerank(context.Background(), &gateway.RerankRequest{Query: rerankQuery, Documents: []string{words, "two"}, Truncate: true, Direction: tt.dir, MaxTokensPerDoc: 5})
		if err != nil {
			t.Fatal(err)
		}
		logits, n := directLogits(t, be, tok, rerankQuery, tt.same, tokenizer.EncodeOptions{})
		if want := wantScore(logits, false); math.Abs(float64(res.Scores[0])-want) > scoreTolerance {
			t.Errorf("direction %d: score of a document cut to 5 tokens = %v, want %v (that of %q)", tt.dir, res.Scores[0], want, tt.same)
		}
		if _, m := directLogits(t, be, tok, rerankQuery, "two", tokenizer.EncodeOptions{}); res.Usage.PromptTokens != n+m {
			t.Errorf("direction %d: PromptTokens = %d, want %d", tt.dir, res.Usage.PromptTokens, n+m)
		}
	}
}

// TestRerankWrongTask: a reranker does not embed, an embedder does not
// rerank; each says so, naming the model.
func TestRerankWrongTask(t *testing.T) {
	rbe, rtok := openReranker(t, 1)
	rr := startReranker(t, rerankOptions(), rbe, rtok)
	_, err := rr.Embed(context.Background(), &gateway.EmbedRequest{Inputs: texts("hello"), Truncate: true})
	var ge *gateway.Error
	if !errors.As(err, &ge) || ge.Kind != gateway.WrongTask || !strings.Contains(ge.Msg, "`rr` is a rerank model") {
		t.Errorf("Embed on a reranker = %v, want WrongTask naming rr", err)
	}

	ebe, etok := openTiny(t)
	em := newModel(t, model("mini", nil), ebe, etok, discard(), prometheus.NewRegistry())
	run(t, em)
	_, err = em.Rerank(context.Background(), &gateway.RerankRequest{Query: "q", Documents: []string{"d"}, Truncate: true})
	if !errors.As(err, &ge) || ge.Kind != gateway.WrongTask || !strings.Contains(ge.Msg, "`mini` is an embedding model") {
		t.Errorf("Rerank on an embedder = %v, want WrongTask naming mini", err)
	}
	if got := rr.Info(); got.Task != gateway.TaskRerank || got.Pooling != "" || got.Dimensions != 0 {
		t.Errorf("reranker Info: task %q, pooling %q, dimensions %d; want rerank, none, 0", got.Task, got.Pooling, got.Dimensions)
	}
	if got := em.Info().Task; got != gateway.TaskEmbed {
		t.Errorf("embedder Info().Task = %q, want embed (Options.Task was empty)", got)
	}
}

// TestNewChecksTask: the task must fit the model's output.
func TestNewChecksTask(t *testing.T) {
	rbe, rtok := openReranker(t, 1)
	ebe, etok := openTiny(t)
	for _, tt := range []struct {
		name string
		task string
		be   Backend
		tok  *tokenizer.Tokenizer
		want string
	}{
		{"reranker as embedder", "", rbe, rtok, "serve it with task rerank"},
		{"embedder as reranker", gateway.TaskRerank, ebe, etok, "task rerank needs a cross-encoder"},
		{"unknown task", "classify", ebe, etok, `unknown task "classify"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			opts := rerankOptions()
			opts.Task = tt.task
			_, err := New(opts, tt.tok, tt.be, discard(), prometheus.NewRegistry())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestRerankRequestChecks: the request's own limits, and the charge of
// every pair's tokens, which can refuse the request before inference.
func TestRerankRequestChecks(t *testing.T) {
	be, tok := openReranker(t, 1)
	eng := startReranker(t, rerankOptions(), be, tok)
	for _, tt := range []struct {
		name  string
		req   gateway.RerankRequest
		kind  gateway.Kind
		param string
	}{
		{"no documents", gateway.RerankRequest{Query: "q"}, gateway.Empty, "texts"},
		{"empty query", gateway.RerankRequest{Documents: []string{"d"}}, gateway.Empty, "query"},
		{"too many", gateway.RerankRequest{Query: "q", Documents: make([]string, 17)}, gateway.TooLarge, "texts"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := eng.Rerank(context.Background(), &tt.req)
			var ge *gateway.Error
			if !errors.As(err, &ge) || ge.Kind != tt.kind || ge.Param != tt.param {
				t.Fatalf("Rerank() = %v, want %v on %q", err, tt.kind, tt.param)
			}
		})
	}

	charged := 0
	limited := errors.New("over the token limit")
	req := &gateway.RerankRequest{Query: rerankQuery, Documents: rerankDocs[:3], Truncate: true,
		Charge: func(_ context.Context, tokens int) error { charged = tokens; return limited }}
	if _, err := eng.Rerank(context.Background(), req); !errors.Is(err, limited) {
		t.Fatalf("Rerank(charge refuses) = %v, want the charge's error", err)
	}
	want := 0
	for _, doc := range rerankDocs[:3] {
		_, n := directLogits(t, be, tok, rerankQuery, doc, tokenizer.EncodeOptions{MaxLength: 32})
		want += n
	}
	if charged != want {
		t.Errorf("charged %d tokens, want %d (every pair's)", charged, want)
	}
	if q := eng.backlog.Queued(); q != 0 {
		t.Errorf("%d tokens left in the backlog by a refused charge", q)
	}
}

// TestRerankThroughTriton: the Triton stand-in serving the same graph
// gives the same scores as ONNX Runtime in process.
func TestRerankThroughTriton(t *testing.T) {
	for _, labels := range []int{1, 2} {
		t.Run(fmt.Sprintf("labels=%d", labels), func(t *testing.T) {
			be, tok := openReranker(t, labels)
			srv := tritontest.Start(t, be, tritontest.WithName("rr"))
			tb, err := triton.Open(context.Background(), triton.Options{URL: srv.Addr(), Model: "rr", Timeout: 5 * time.Second, ReadyTimeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := tb.Close(); err != nil {
					t.Errorf("triton close: %v", err)
				}
			})
			local := startReranker(t, rerankOptions(), be, tok)
			remote := startReranker(t, rerankOptions(), tb, tok)
			req := &gateway.RerankRequest{Query: rerankQuery, Documents: rerankDocs, Truncate: true}
			want, err := local.Rerank(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			got, err := remote.Rerank(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			for i := range want.Scores {
				if math.Abs(float64(got.Scores[i]-want.Scores[i])) > scoreTolerance {
					t.Errorf("texts[%d]: Triton score %v, onnx %v", i, got.Scores[i], want.Scores[i])
				}
			}
		})
	}
}

func TestScore(t *testing.T) {
	for _, tt := range []struct {
		logits []float32
		raw    bool
		want   float64
	}{
		{[]float32{0}, false, 0.5},
		{[]float32{2}, true, 2},
		{[]float32{2}, false, 1 / (1 + math.Exp(-2))},
		{[]float32{1, 3}, true, 3},
		{[]float32{1, 3}, false, math.Exp(3) / (math.Exp(1) + math.Exp(3))},
		// Large logits: softmax must not overflow.
		{[]float32{1000, 1000}, false, 0.5},
		{[]float32{-1000}, false, 0},
		{nil, false, math.NaN()},
	} {
		got := float64(score(tt.logits, tt.raw))
		if math.IsNaN(tt.want) != math.IsNaN(got) || !math.IsNaN(got) && math.Abs(got-tt.want) > 1e-7 {
			t.Errorf("score(%v, raw %v) = %v, want %v", tt.logits, tt.raw, got, tt.want)
		}
	}
}
