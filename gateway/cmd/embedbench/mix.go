package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// Input kinds of the mix: what a search or RAG service sends. Token counts
// exclude the two special tokens the tokenizer adds.
const (
	kindQuery   = iota // 5-20 tokens: a user's search query
	kindPassage        // 100-300 tokens: a chunk being indexed
	kindDoc            // 500-540 tokens: a whole document, truncated to 512 by the gateway
	numKinds
)

// Routes the mix spreads requests over. Base64 is what the OpenAI SDKs
// send by default; TEI clients get float arrays.
const (
	routeOpenAIBase64 = iota
	routeOpenAIFloat
	routeTEI
	routeNative
	numRoutes
)

// MixOptions shape the generated requests.
type MixOptions struct {
	Seed     uint64
	Requests int                // distinct request bodies, handed out round robin
	Kinds    [numKinds]float64  // share of inputs of each kind
	Routes   [numRoutes]float64 // share of requests per route
	MinBatch int                // inputs per request, uniform in [MinBatch, MaxBatch]
	MaxBatch int
	Model    string // the OpenAI "model" field
}

// DefaultMix is the mix: 60% short queries, 30% passages, 10%
// documents, 1-16 inputs per request; half the requests OpenAI base64, a
// quarter OpenAI float, a quarter TEI.
func DefaultMix(seed uint64) MixOptions {
	return MixOptions{
		Seed: seed, Requests: 2048,
		Kinds:    [numKinds]float64{0.6, 0.3, 0.1},
		Routes:   [numRoutes]float64{routeOpenAIBase64: 0.5, routeOpenAIFloat: 0.25, routeTEI: 0.25},
		MinBatch: 1, MaxBatch: 16, Model: "minilm-bench",
	}
}

// ShortQueryMix is one short query per request on the native route, whose
// body carries precise timings: the light-load request the gateway
// overhead target is about.
func ShortQueryMix(seed uint64) MixOptions {
	return MixOptions{
		Seed: seed, Requests: 512,
		Kinds:    [numKinds]float64{kindQuery: 1},
		Routes:   [numRoutes]float64{routeNative: 1},
		MinBatch: 1, MaxBatch: 1, Model: "minilm-bench",
	}
}

// Input is one generated text and the kind it was drawn as.
type Input struct {
	Kind  int
	Words int // tokens the text is built to have (each word is one token)
	Text  string
}

// Request is one generated request body.
type Request struct {
	Route  int
	Inputs []Input
	Path   string
	Body   []byte
	Header http.Header // shared by every send: vegeta copies it
}

// Mix is a fixed, seeded set of requests.
type Mix struct {
	Requests []Request
}

// NewMix generates opts.Requests requests. The same options give the same
// bytes, so runs and levels see the same load.
func NewMix(opts MixOptions) (*Mix, error) {
	if opts.Requests < 1 || opts.MinBatch < 1 || opts.MaxBatch < opts.MinBatch {
		return nil, fmt.Errorf("mix: bad options: %d requests, batch %d-%d", opts.Requests, opts.MinBatch, opts.MaxBatch)
	}
	rng := rand.New(rand.NewPCG(opts.Seed, 0x656d626564)) // fixed stream: "embed"
	words := strings.Fields(wordText)
	m := &Mix{Requests: make([]Request, opts.Requests)}
	for i := range m.Requests {
		n := opts.MinBatch + rng.IntN(opts.MaxBatch-opts.MinBatch+1)
		r := Request{Route: pick(rng, opts.Routes[:]), Inputs: make([]Input, n)}
		for j := range r.Inputs {
			kind := pick(rng, opts.Kinds[:])
			tokens := tokensFor(rng, kind)
			r.Inputs[j] = Input{Kind: kind, Words: tokens, Text: sentenceText(rng, words, tokens)}
		}
		var err error
		if r.Path, r.Body, err = encodeRequest(r.Route, r.Inputs, opts.Model); err != nil {
			return nil, err
		}
		// The gateway echoes a sane x-request-id: the number of inputs rides
		// on it, so each response says how many embeddings it carries
		// whatever the route's body shape.
		r.Header = http.Header{
			"Content-Type": {"application/json"},
			"X-Request-Id": {"bench-" + strconv.Itoa(i) + "-n" + strconv.Itoa(n)},
		}
		m.Requests[i] = r
	}
	return m, nil
}

// Targeter hands out the requests round robin against baseURL; vegeta's
// workers call it concurrently.
func (m *Mix) Targeter(baseURL string) vegeta.Targeter {
	var next atomic.Uint64
	return func(t *vegeta.Target) error {
		r := &m.Requests[(next.Add(1)-1)%uint64(len(m.Requests))]
		t.Method, t.URL, t.Body, t.Header = http.MethodPost, baseURL+r.Path, r.Body, r.Header
		return nil
	}
}

// Texts returns the first n input texts of the mix in order, cycling, for
// the raw backend baseline (the same length distribution as the load).
func (m *Mix) Texts(n int) []string {
	var out []string
	for len(out) < n {
		for _, r := range m.Requests {
			for _, in := range r.Inputs {
				if len(out) == n {
					return out
				}
				out = append(out, in.Text)
			}
		}
	}
	return out
}

// inputsFromRequestID reads back the input count NewMix put in the id.
func inputsFromRequestID(id string) int {
	i := strings.LastIndex(id, "-n")
	if i < 0 {
		return 0
	}
	n, err := strconv.Atoi(id[i+2:])
	if err != nil {
		return 0
	}
	return n
}

func tokensFor(rng *rand.Rand, kind int) int {
	switch kind {
	case kindQuery:
		return 5 + rng.IntN(16)
	case kindPassage:
		return 100 + rng.IntN(201)
	default:
		return 500 + rng.IntN(41)
	}
}

// pick draws an index with probability proportional to weights.
func pick(rng *rand.Rand, weights []float64) int {
	total := 0.0
	for _, w := range weights {
		total += w
	}
	x := rng.Float64() * total
	for i, w := range weights {
		if x < w {
			return i
		}
		x -= w
	}
	return len(weights) - 1
}

// sentenceText builds text of exactly n tokens for a BERT uncased
// tokenizer: every word of wordText is one vocabulary entry, and each
// sentence ends with a period (one more token).
func sentenceText(rng *rand.Rand, words []string, n int) string {
	var b strings.Builder
	sentence := 0
	for i := 0; i < n; i++ {
		if sentence >= 6 && (i == n-1 || rng.IntN(8) == 0) {
			b.WriteByte('.')
			sentence = 0
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(words[rng.IntN(len(words))])
		sentence++
	}
	return b.String()
}

func encodeRequest(route int, inputs []Input, model string) (path string, body []byte, err error) {
	texts := make([]string, len(inputs))
	for i, in := range inputs {
		texts[i] = in.Text
	}
	switch route {
	case routeOpenAIBase64, routeOpenAIFloat:
		format := "float"
		if route == routeOpenAIBase64 {
			format = "base64"
		}
		body, err = json.Marshal(struct {
			Input          []string `json:"input"`
			Model          string   `json:"model"`
			EncodingFormat string   `json:"encoding_format"`
		}{texts, model, format})
		return "/v1/embeddings", body, err
	case routeTEI:
		body, err = json.Marshal(struct {
			Inputs []string `json:"inputs"`
		}{texts})
		return "/embed", body, err
	default:
		body, err = json.Marshal(struct {
			Inputs []string `json:"inputs"`
		}{texts})
		return "/api/v1/embed", body, err
	}
}

// wordText holds common English words that are whole entries of the BERT
// uncased vocabulary, so each is exactly one token (checked by a test).
const wordText = `
the of and to in is was for on that with as by at from his her they this which
have are be not had has were been their one all would there will can more other
about time new some could these two may first then do any like now such our
over also into only your after most made many before where through back years
much well should because each those people state very world still own see men
work long here both between life being under never day same another know while
last might great old year off come since against right take three house used
place small found part system water city high school group number market power
information service program data model search query result document text page
language learning network training test value method process problem study
research analysis design development control report support level order form
health public local family business country government company history
book music film game team season club league player album song series station
river area village town county district region island north south east west
early late large major general national international central modern human
social political economic natural free open simple common similar different
important possible available based known called named given shown seen held
built released started played moved served died born became remained continued
using making taking having getting following including according during within
without around across among toward along behind beyond above below near far
`
