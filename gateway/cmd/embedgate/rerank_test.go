package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/backend/onnx"
	"github.com/embedgate/embedgate/gateway/backend/triton/tritontest"
	"github.com/embedgate/embedgate/gateway/internal/testenv"
	"github.com/embedgate/embedgate/gateway/testmodel"
	"github.com/embedgate/embedgate/gateway/tokenizer"
)

// scoreTolerance is how far a served score may be from the direct run's:
// both are float32 ONNX Runtime on the same tokens, so only the order of
// the batch's rows and their padding may change the last bits.
const scoreTolerance = 1e-5

// direct scores (query, document) pairs as the gateway must, without it:
// the pair built by the tokenizer's pair template, truncated LongestFirst
// to the model's length, run alone (one row, no padding) on ONNX Runtime.
// A gateway that built, padded or ordered pairs wrong disagrees with it.
type direct struct {
	tok    *tokenizer.Tokenizer
	be     *onnx.Backend
	maxLen int
}

func newDirect(t *testing.T, dir string, maxLen int) *direct {
	t.Helper()
	tok, err := tokenizer.LoadFile(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	return &direct{tok: tok, be: runner(t, dir), maxLen: maxLen}
}

// pair is one pair's logits and token count, with opts' truncation side.
func (d *direct) pair(t *testing.T, query, doc string, left bool) (logits []float32, tokens int) {
	t.Helper()
	enc := d.tok.EncodePair(query, doc, tokenizer.EncodeOptions{AddSpecialTokens: true, MaxLength: d.maxLen, TruncateLeft: left})
	b := &gateway.Batch{Rows: 1, Len: len(enc.IDs)}
	for j, id := range enc.IDs {
		b.InputIDs = append(b.InputIDs, int64(id))
		b.AttentionMask = append(b.AttentionMask, 1)
		b.TokenTypeIDs = append(b.TokenTypeIDs, int64(enc.TypeIDs[j]))
	}
	out, err := d.be.Embed(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Free()
	if out.Kind != gateway.Logits || out.Rows != 1 {
		t.Fatalf("direct run: output kind %v, %d rows; want logits of one row", out.Kind, out.Rows)
	}
	return slices.Clone(out.Data[:out.Hidden]), len(enc.IDs)
}

// scores are every document's expected score (the sigmoid of a one-label
// model's logit, or its raw logit) and the pairs' tokens in all.
func (d *direct) scores(t *testing.T, query string, docs []string, raw, left bool) (scores []float64, tokens int) {
	t.Helper()
	for _, doc := range docs {
		logits, n := d.pair(t, query, doc, left)
		if len(logits) != 1 {
			t.Fatalf("the tiny reranker has %d labels, want 1", len(logits))
		}
		s := float64(logits[0])
		if !raw {
			s = 1 / (1 + math.Exp(-s))
		}
		scores, tokens = append(scores, s), tokens+n
	}
	return scores, tokens
}

// apart is how far two scores must be for a test to tell them apart: ten
// times the tolerance (twice would do: a served score within the
// tolerance of one is not within it of the other).
const apart = 10 * scoreTolerance

// ranked is the documents' indexes by score, highest first. The test's
// documents must score apart, or the order checked would be chance.
func ranked(t *testing.T, scores []float64) []int {
	t.Helper()
	order := make([]int, len(scores))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case scores[a] > scores[b]:
			return -1
		case scores[a] < scores[b]:
			return 1
		}
		return 0
	})
	for k := 1; k < len(order); k++ {
		if scores[order[k-1]]-scores[order[k]] < apart {
			t.Fatalf("documents %d and %d score %g and %g: too close to tell their order", order[k-1], order[k], scores[order[k-1]], scores[order[k]])
		}
	}
	return order
}

// rank is one result of any dialect, its score under either name.
type rank struct {
	Index          int      `json:"index"`
	Score          *float64 `json:"score"`
	RelevanceScore *float64 `json:"relevance_score"`
	Text           *string  `json:"text"`
	Document       *struct {
		Text string `json:"text"`
	} `json:"document"`
}

func (r rank) score() float64 {
	if r.Score != nil {
		return *r.Score
	}
	if r.RelevanceScore != nil {
		return *r.RelevanceScore
	}
	return math.NaN()
}

// ranks reads a 200 rerank answer of path's dialect.
func ranks(t *testing.T, path string, r response) []rank {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("POST %s = %d %s", path, r.status, r.body)
	}
	if path == "/rerank" {
		return decode[[]rank](t, r)
	}
	return decode[cohereAnswer](t, r).Results
}

// cohereAnswer is what the tests read of a Cohere-dialect answer.
type cohereAnswer struct {
	Model   string `json:"model"`
	Results []rank `json:"results"`
	Usage   struct {
		PromptTokens int `json:"prompt_tokens"`
	} `json:"usage"`
}

// checkScores checks an answer's scores, document by document, against
// want, and that it lists them by score.
func checkScores(t *testing.T, what string, got []rank, want []float64) {
	t.Helper()
	for k, r := range got {
		if r.Index < 0 || r.Index >= len(want) {
			t.Fatalf("%s: result %d has index %d", what, k, r.Index)
		}
		if d := math.Abs(r.score() - want[r.Index]); !(d <= scoreTolerance) {
			t.Errorf("%s: document %d scores %g, the direct run %g", what, r.Index, r.score(), want[r.Index])
		}
		if k > 0 && got[k-1].score() < r.score() {
			t.Errorf("%s: result %d (%g) after a lower one (%g)", what, k, r.score(), got[k-1].score())
		}
	}
}

var (
	scoreNumbers = regexp.MustCompile(`"(score|relevance_score)":-?[0-9][0-9.eE+-]*`)
	uuidV4       = regexp.MustCompile(`^"id":"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"$`)
	idField      = regexp.MustCompile(`"id":"[^"]*"`)
)

// shape is a rerank body with every score written S and Cohere's id ID
// (checked to be a version 4 UUID): what is left is the exact shape.
func shape(t *testing.T, body []byte) string {
	t.Helper()
	s := scoreNumbers.ReplaceAllString(string(body), `"$1":S`)
	if id := idField.FindString(s); id != "" && !uuidV4.MatchString(id) {
		t.Errorf("id %s is not a version 4 UUID", id)
	}
	return idField.ReplaceAllString(s, `"id":"ID"`)
}

// rerankQuery and rerankDocs are the end-to-end tests' request: documents
// of different lengths, one (the fourth) longer than the 48 tokens the
// catalogue's rerankers take with the query, one in Japanese. The tiny
// reranker's seeded head scores them all near 0.08, yet at least 1e-4
// apart (see ranked).
const rerankQuery = "what does the quick fox do?"

var rerankDocs = []string{
	"The quick brown fox jumps over the lazy dog.",
	"short",
	"日本語のテキスト",
	strings.Repeat("the dog sleeps while the fox jumps ", 10),
	"a b c",
	"hello world",
}

// startRerankers serves one catalogue of an embedding model (tiny, the
// default) and the tiny reranker twice, in process (rr, its task read
// from config.json) and on the Triton stand-in (rr-triton, task rerank),
// both held to 48 tokens a pair so that truncation shows. It returns the
// gateway and the direct run of the reranker.
func startRerankers(t *testing.T) (*instance, *direct) {
	t.Helper()
	rr := testenv.TinyReranker(t)
	srv := tritontest.StartMulti(t, tritontest.WithModel("rr", runner(t, rr)))
	file := filepath.Join(t.TempDir(), "models.yaml")
	writeFile(t, file, fmt.Sprintf(`models:
  - {name: tiny, model_id: %s, backend: onnx}
  - {name: rr, model_id: %s, backend: onnx, max_input_length: 48}
  - {name: rr-triton, model_id: %s, backend: triton, triton_model: rr, triton_url: %s, task: rerank, max_input_length: 48}
`, testenv.TinyModel(t), rr, rr, srv.Addr()))
	env := catalogueEnv(t)
	env["MODELS_FILE"] = file
	return startGateway(t, env), newDirect(t, rr, 48)
}

// TestRerankEndToEnd: the three rerank routes on both backends, their
// scores against the direct run, their exact shapes, and the catalogue's
// routing of an embedding model and two rerankers.
func TestRerankEndToEnd(t *testing.T) {
	t.Parallel()
	g, d := startRerankers(t)
	want, tokens := d.scores(t, rerankQuery, rerankDocs, false, false)
	order := ranked(t, want)
	docsJSON, _ := json.Marshal(rerankDocs)
	objectDocs := make([]map[string]string, len(rerankDocs))
	for i, doc := range rerankDocs {
		objectDocs[i] = map[string]string{"text": doc}
	}
	objectsJSON, _ := json.Marshal(objectDocs)
	q := strconv.Quote(rerankQuery)

	t.Run("scores", func(t *testing.T) {
		for _, model := range []string{"rr", "rr-triton"} {
			for _, c := range []struct{ path, body string }{
				{"/rerank", `{"model":"` + model + `","query":` + q + `,"texts":` + string(docsJSON) + `}`},
				{"/v1/rerank", `{"model":"` + model + `","query":` + q + `,"documents":` + string(docsJSON) + `}`},
				{"/v2/rerank", `{"model":"` + model + `","query":` + q + `,"documents":` + string(objectsJSON) + `}`},
			} {
				got := ranks(t, c.path, g.post(t, c.path, c.body))
				if len(got) != len(rerankDocs) {
					t.Fatalf("%s %s: %d results, want %d", c.path, model, len(got), len(rerankDocs))
				}
				checkScores(t, c.path+" "+model, got, want)
			}
		}
		raw, _ := d.scores(t, rerankQuery, rerankDocs, true, false)
		for _, model := range []string{"rr", "rr-triton"} {
			got := ranks(t, "/rerank", g.post(t, "/rerank", `{"model":"`+model+`","raw_scores":true,"query":`+q+`,"texts":`+string(docsJSON)+`}`))
			checkScores(t, "raw scores "+model, got, raw)
		}
	})

	t.Run("backends agree", func(t *testing.T) {
		byModel := map[string][]float64{}
		for _, model := range []string{"rr", "rr-triton"} {
			byModel[model] = make([]float64, len(rerankDocs))
			for _, r := range ranks(t, "/v1/rerank", g.post(t, "/v1/rerank", `{"model":"`+model+`","query":`+q+`,"documents":`+string(docsJSON)+`}`)) {
				byModel[model][r.Index] = r.score()
			}
		}
		for i := range rerankDocs {
			if d := math.Abs(byModel["rr"][i] - byModel["rr-triton"][i]); d > scoreTolerance {
				t.Errorf("document %d: onnx %g, triton %g", i, byModel["rr"][i], byModel["rr-triton"][i])
			}
		}
	})

	t.Run("tei shape", func(t *testing.T) {
		var plain, texts strings.Builder
		for k, i := range order {
			if k > 0 {
				plain.WriteByte(',')
				texts.WriteByte(',')
			}
			fmt.Fprintf(&plain, `{"index":%d,"score":S}`, i)
			fmt.Fprintf(&texts, `{"index":%d,"text":%s,"score":S}`, i, mustMarshal(t, rerankDocs[i]))
		}
		r := g.post(t, "/rerank", `{"query":`+q+`,"texts":`+string(docsJSON)+`}`)
		if got := shape(t, r.body); r.status != 200 || got != "["+plain.String()+"]" {
			t.Errorf("POST /rerank = %d\n%s\nwant\n[%s]", r.status, got, plain.String())
		}
		for _, h := range []string{"x-compute-tokens", "x-total-time", "x-tokenization-time", "x-queue-time", "x-inference-time"} {
			if r.header.Get(h) == "" {
				t.Errorf("no %s header", h)
			}
		}
		if got := r.header.Get("x-compute-tokens"); got != strconv.Itoa(tokens) {
			t.Errorf("x-compute-tokens = %s, want every pair's %d", got, tokens)
		}
		r = g.post(t, "/rerank", `{"query":`+q+`,"texts":`+string(docsJSON)+`,"return_text":true}`)
		if got := shape(t, r.body); got != "["+texts.String()+"]" {
			t.Errorf("POST /rerank with return_text =\n%s\nwant\n[%s]", got, texts.String())
		}
	})

	t.Run("cohere shape", func(t *testing.T) {
		for _, c := range []struct {
			path, docs, extra string
			topN              int
			documents         bool
		}{
			{"/v1/rerank", string(docsJSON), ``, len(rerankDocs), false},
			{"/v1/rerank", string(objectsJSON), `,"top_n":2,"return_documents":true`, 2, true},
			{"/v2/rerank", string(docsJSON), `,"top_n":99,"return_documents":false`, len(rerankDocs), false},
			{"/v2/rerank", string(objectsJSON), `,"top_n":1,"return_documents":true`, 1, true},
		} {
			var results strings.Builder
			for k, i := range order[:c.topN] {
				if k > 0 {
					results.WriteByte(',')
				}
				fmt.Fprintf(&results, `{"index":%d,"relevance_score":S`, i)
				if c.documents {
					fmt.Fprintf(&results, `,"document":{"text":%s}`, mustMarshal(t, rerankDocs[i]))
				}
				results.WriteByte('}')
			}
			version := `{"version":"1"}`
			if c.path == "/v2/rerank" {
				version = `{"version":"2","is_experimental":false}`
			}
			wantBody := fmt.Sprintf(`{"id":"ID","results":[%s],"meta":{"api_version":%s,"billed_units":{"search_units":1}},"model":"rr","usage":{"prompt_tokens":%d,"total_tokens":%d}}`,
				results.String(), version, tokens, tokens)
			r := g.post(t, c.path, `{"query":`+q+`,"documents":`+c.docs+c.extra+`}`)
			if got := shape(t, r.body); r.status != 200 || got != wantBody {
				t.Errorf("POST %s %s = %d\n%s\nwant\n%s", c.path, c.extra, r.status, got, wantBody)
			}
			checkScores(t, c.path+c.extra, ranks(t, c.path, r), want)
		}
	})

	t.Run("truncation", func(t *testing.T) {
		const long = 3 // rerankDocs' long document
		// The long document cut from the left instead, in logits, whose
		// differences the sigmoid would shrink.
		left, _ := d.scores(t, rerankQuery, rerankDocs, true, true)
		right, _ := d.scores(t, rerankQuery, rerankDocs, true, false)
		if math.Abs(left[long]-right[long]) < apart {
			t.Fatalf("the long document scores %g cut either side: the test cannot tell the sides", left[long])
		}
		for _, model := range []string{"rr", "rr-triton"} {
			got := ranks(t, "/rerank", g.post(t, "/rerank", `{"model":"`+model+`","truncation_direction":"Left","raw_scores":true,"query":`+q+`,"texts":`+string(docsJSON)+`}`))
			checkScores(t, "truncation_direction Left "+model, got, left)
		}

		r := g.post(t, "/rerank", `{"truncate":false,"query":`+q+`,"texts":`+string(docsJSON)+`}`)
		if e := decode[teiError](t, r); r.status != 422 || !strings.HasPrefix(e.Error, fmt.Sprintf("texts[%d]: ", long)) || e.ErrorType != "Validation" {
			t.Errorf("truncate false with a long text = %d %s, want 422 naming texts[%d]", r.status, r.body, long)
		}
		if r := g.post(t, "/rerank", `{"truncate":false,"query":`+q+`,"texts":["short"]}`); r.status != 200 {
			t.Errorf("truncate false with short texts = %d %s", r.status, r.body)
		}

		// max_tokens_per_doc cuts the document alone: five of its tokens,
		// which are its first five words.
		doc := "the quick brown fox jumps over the lazy dog"
		prefix := strings.Join(strings.Fields(doc)[:5], " ")
		if n := len(d.tok.Encode(prefix, tokenizer.EncodeOptions{}).IDs); n != 5 {
			t.Fatalf("%q is %d tokens, want 5", prefix, n)
		}
		cut, n := d.scores(t, rerankQuery, []string{prefix}, false, false)
		whole, _ := d.scores(t, rerankQuery, []string{doc}, false, false)
		if math.Abs(cut[0]-whole[0]) < apart {
			t.Fatalf("the document scores %g whole or cut: the test cannot tell", whole[0])
		}
		for _, model := range []string{"rr", "rr-triton"} {
			r := g.post(t, "/v1/rerank", `{"model":"`+model+`","query":`+q+`,"documents":["`+doc+`"],"max_tokens_per_doc":5}`)
			checkScores(t, "max_tokens_per_doc "+model, ranks(t, "/v1/rerank", r), cut)
			if u := decode[cohereAnswer](t, r).Usage; u.PromptTokens != n {
				t.Errorf("max_tokens_per_doc 5: %d prompt tokens, want %d", u.PromptTokens, n)
			}
		}
	})

	t.Run("routing", func(t *testing.T) {
		r := g.post(t, "/v1/rerank", `{"query":"q","documents":["a"]}`)
		if m := decode[cohereAnswer](t, r).Model; r.status != 200 || m != "rr" {
			t.Errorf("POST /v1/rerank without model = %d %s, want the first reranker, rr", r.status, r.body)
		}
		r = g.post(t, "/v1/embeddings", `{"input":"a"}`)
		if m := decode[embedding](t, r).Model; r.status != 200 || m != "tiny" {
			t.Errorf("POST /v1/embeddings without model = %d %s, want the default, tiny", r.status, r.body)
		}
		if n, r := g.dims(t, "tiny"); n != 32 {
			t.Errorf("tiny embeds %d dims (%d %s)", n, r.status, r.body)
		}
		type listed struct {
			Data []struct{ ID, Task string }
		}
		var got []string
		for _, m := range decode[listed](t, g.get(t, "/v1/models")).Data {
			got = append(got, m.ID+":"+m.Task)
		}
		if wantList := []string{"tiny:embed", "rr:rerank", "rr-triton:rerank"}; !slices.Equal(got, wantList) {
			t.Errorf("GET /v1/models = %v, want %v", got, wantList)
		}
		metrics := string(g.get(t, "/metrics").body)
		for _, series := range []string{`embedgate_queue_tokens{model="rr",task="rerank"}`, `embedgate_queue_tokens{model="tiny",task="embed"}`} {
			if !strings.Contains(metrics, series) {
				t.Errorf("/metrics lacks %s", series)
			}
		}
	})

	t.Run("errors", func(t *testing.T) {
		notReranker := "model `tiny` is an embedding model: it does not rerank (model is not a re-ranker model)"
		notEmbedder := "model `rr` is a rerank model: it does not embed"
		for _, c := range []struct {
			path, body string
			status     int
			wantBody   string
		}{
			{"/rerank", `{"model":"tiny","query":"q","texts":["a"]}`, 424, `{"error":"` + notReranker + `","error_type":"Backend"}`},
			{"/v1/rerank", `{"model":"tiny","query":"q","documents":["a"]}`, 400, `{"message":"` + notReranker + `"}`},
			{"/v2/rerank", `{"model":"tiny","query":"q","documents":["a"]}`, 400, `{"message":"` + notReranker + `"}`},
			{"/embed", `{"model":"rr","inputs":"a"}`, 424, `{"error":"` + notEmbedder + `","error_type":"Backend"}`},
			{"/api/v1/embed", `{"model":"rr","inputs":"a"}`, 400, `{"error":"` + notEmbedder + `","error_type":"Validation"}`},
			{"/v1/embeddings", `{"model":"rr-triton","input":"a"}`, 400,
				`{"error":{"message":"model ` + "`rr-triton`" + ` is a rerank model: it does not embed","type":"invalid_request_error","param":null,"code":null}}`},
			{"/v1/rerank", `{"model":"nope","query":"q","documents":["a"]}`, 404, `{"message":"The model ` + "`nope`" + ` does not exist or you do not have access to it."}`},
			{"/v1/rerank", `{"query":"q","documents":["a"],"top_n":0}`, 400, `{"message":"invalid request: top_n must be at least 1 - received 0"}`},
			{"/v2/rerank", `{"query":"q","documents":[]}`, 400, ``},
			{"/rerank", `{"query":"q","texts":[]}`, 400, ``},
		} {
			r := g.post(t, c.path, c.body)
			if r.status != c.status || c.wantBody != "" && string(r.body) != c.wantBody {
				t.Errorf("POST %s %s = %d %s\nwant %d %s", c.path, c.body, r.status, r.body, c.status, c.wantBody)
			}
		}
		// Too many documents: max_client_batch_size bounds them as inputs.
		many, _ := json.Marshal(slices.Repeat([]string{"x"}, 2049))
		if r := g.post(t, "/rerank", `{"query":"q","texts":`+string(many)+`}`); r.status != 413 {
			t.Errorf("2049 texts = %d %s, want 413", r.status, r.body)
		}
	})
}

// TestRerankOneModel: the one-model flags on the tiny reranker serve it as
// a reranker, its task read from config.json (make run
// MODEL_ID=.cache/models/tiny-reranker); --task says otherwise only for a
// model that does that task.
func TestRerankOneModel(t *testing.T) {
	t.Parallel()
	rr := testenv.TinyReranker(t)
	env := baseEnv(t)
	env["MODEL_ID"] = rr
	g := startGateway(t, env)
	d := newDirect(t, rr, 512)
	want, _ := d.scores(t, rerankQuery, rerankDocs, false, false)
	docsJSON, _ := json.Marshal(rerankDocs)
	checkScores(t, "one model", ranks(t, "/rerank", g.post(t, "/rerank", `{"query":`+strconv.Quote(rerankQuery)+`,"texts":`+string(docsJSON)+`}`)), want)
	// Any model name finds the one model, as TEI's single model does.
	r := g.post(t, "/v1/rerank", `{"model":"rerank-english-v3.0","query":"q","documents":["a"]}`)
	if m := decode[cohereAnswer](t, r).Model; r.status != 200 || m != filepath.Base(rr) {
		t.Errorf("POST /v1/rerank = %d %s, want the one model", r.status, r.body)
	}
	if r := g.post(t, "/embed", `{"inputs":"a"}`); r.status != 424 || !strings.Contains(string(r.body), "is a rerank model: it does not embed") {
		t.Errorf("POST /embed on a reranker = %d %s, want 424", r.status, r.body)
	}
	r = g.get(t, "/info")
	info := decode[struct {
		ModelType map[string]any `json:"model_type"`
		Models    []struct{ Name, Task string }
	}](t, r)
	if _, ok := info.ModelType["reranker"]; !ok || len(info.Models) != 1 || info.Models[0].Name != filepath.Base(rr) || info.Models[0].Task != "rerank" {
		t.Errorf("GET /info = %s, want a reranker", r.body)
	}
	if r := g.get(t, "/ready"); r.status != 200 {
		t.Errorf("GET /ready = %d", r.status)
	}

	for _, c := range []struct{ name, model, task, pooling, want string }{
		{"embed a reranker", rr, "embed", "cls", "a cross-encoder's: serve it with task rerank"},
		{"rerank an embedder", testenv.TinyModel(t), "rerank", "", "task rerank needs a cross-encoder"},
		{"pool a reranker", rr, "", "mean", "the model is a reranker"},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := baseEnv(t)
			env["MODEL_ID"], env["TASK"], env["POOLING"], env["HOSTNAME"], env["PORT"] = c.model, c.task, c.pooling, "127.0.0.1", freePort(t)
			err := run(context.Background(), []string{"embedgate"}, func(k string) string { return env[k] }, nil, io.Discard, &testenv.LogBuffer{}, noSignals)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("run() = %v, want an error saying %q", err, c.want)
			}
		})
	}
}

// TestRerankDiscovered: a reranker found in Triton's repository serves
// beside the flags' embedding model, its task from its config.json when
// its parameters do not say; `embedgate models` lists both with their
// tasks.
func TestRerankDiscovered(t *testing.T) {
	t.Parallel()
	rr := testenv.TinyReranker(t, testmodel.WithNumLabels(2))
	srv := tritontest.StartMulti(t,
		tritontest.WithModel("rr2", runner(t, rr), tritontest.ModelParameters(map[string]string{"hf_model_id": rr})),
	)
	env := baseEnv(t) // the tiny embedding model, by the flags
	env["TRITON_DISCOVER"], env["TRITON_URL"] = "true", srv.Addr()
	g := startGateway(t, env)

	d := newDirect(t, rr, 512)
	logits, _ := d.pair(t, "q", "a fox", false)
	if len(logits) != 2 {
		t.Fatalf("%d labels, want 2", len(logits))
	}
	// Two labels: the softmax probability of the last.
	wantScore := 1 / (1 + math.Exp(float64(logits[0]-logits[1])))
	r := g.post(t, "/v2/rerank", `{"query":"q","documents":["a fox"]}`)
	got := ranks(t, "/v2/rerank", r)
	if m := decode[cohereAnswer](t, r).Model; m != "rr2" || len(got) != 1 || math.Abs(got[0].score()-wantScore) > scoreTolerance {
		t.Errorf("POST /v2/rerank = %s, want rr2 scoring %g", r.body, wantScore)
	}
	if n, r := g.dims(t, ""); n != 32 {
		t.Errorf("the flags' model embeds %d dims (%d %s)", n, r.status, r.body)
	}

	var out strings.Builder
	if err := run(context.Background(), []string{"embedgate", "models"}, func(k string) string { return env[k] }, nil, &out, io.Discard, noSignals); err != nil {
		t.Fatalf("embedgate models = %v\n%s", err, out.String())
	}
	lines := strings.Split(out.String(), "\n")
	for _, want := range [][]string{{"TASK"}, {"rr2", "rerank", "triton rr2@"}, {filepath.Base(testenv.TinyModel(t)), "embed", "32"}} {
		if !slices.ContainsFunc(lines, func(l string) bool {
			return !slices.ContainsFunc(want, func(w string) bool { return !strings.Contains(l, w) })
		}) {
			t.Errorf("embedgate models has no line with %q:\n%s", want, out.String())
		}
	}
}

func mustMarshal(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
