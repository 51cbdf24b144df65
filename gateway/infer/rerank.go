package infer

import (
	"context"
	"fmt"
	"math"
	"time"
	"unicode/utf8"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/tokenizer"
)

// checkTask settles opts.Task ("" is embed) and checks that the model's
// output does it: a reranker reads a cross-encoder's logits, an embedder
// anything but (pooling logits would serve nonsense vectors).
func checkTask(opts *Options, spec gateway.ModelSpec) []error {
	if opts.Task == "" {
		opts.Task = gateway.TaskEmbed
	}
	switch opts.Task {
	case gateway.TaskEmbed:
		if spec.Output == gateway.Logits {
			return []error{fmt.Errorf("the model outputs %s [batch, %d], a cross-encoder's: serve it with task %s", gateway.TensorLogits, spec.Hidden, gateway.TaskRerank)}
		}
	case gateway.TaskRerank:
		if spec.Output != gateway.Logits {
			return []error{fmt.Errorf("task %s needs a cross-encoder, whose output is %s [batch, num_labels]; the model outputs embeddings", gateway.TaskRerank, gateway.TensorLogits)}
		}
	default:
		return []error{fmt.Errorf("unknown task %q: want %s or %s", opts.Task, gateway.TaskEmbed, gateway.TaskRerank)}
	}
	return nil
}

// Rerank scores each of req's documents against its query, in steps as
// Embed's: check → admit → encode pairs → enqueue → wait → score. Each
// (query, document) pair is one row of the same batches as embeddings,
// with the same admission and deadlines; nothing is cached. It returns a
// *gateway.Error for anything the client should see.
func (e *Engine) Rerank(ctx context.Context, req *gateway.RerankRequest) (*gateway.RerankResult, error) {
	start := time.Now()
	if err := e.enterCall(); err != nil {
		return nil, err
	}
	defer e.active.leave()
	if e.opts.Task != gateway.TaskRerank {
		return nil, gateway.WrongTaskError(e.displayName(), e.opts.Task)
	}
	if err := req.Validate(e.Limits()); err != nil {
		return nil, err
	}
	if err := e.admit(ctx); err != nil {
		return nil, err
	}
	defer e.gate.Done()
	_, span := e.opts.Tracer.Start(ctx, spanTokenize)
	encs, err := e.encodeEach(ctx, len(req.Documents), func(i int) (encoded, error) { return e.encodePair(i, req) })
	endTokenize(span, encs, err)
	if err != nil {
		return nil, err
	}
	tokenized := time.Now()
	e.m.tokenization.Observe(tokenized.Sub(start).Seconds())
	p, err := e.enqueue(ctx, req.Charge, encs, found{}, tokenized)
	if err != nil {
		return nil, err
	}
	if err := e.wait(ctx, p, found{}, tokenized); err != nil {
		return nil, err
	}
	res := &gateway.RerankResult{Scores: make([]float32, len(p.vecs))}
	for i, logits := range p.vecs {
		res.Scores[i] = score(logits, req.RawScores)
	}
	for _, enc := range encs {
		res.Usage.PromptTokens += len(enc.ids)
		res.Usage.Characters += enc.chars
	}
	res.Timings = gateway.Timings{Tokenization: tokenized.Sub(start), Queue: p.queueWait(), Total: time.Since(start)}
	res.Timings.Inference = max(0, res.Timings.Total-res.Timings.Tokenization-res.Timings.Queue)
	return res, nil
}

// encodePair encodes document i with the query as the model's pair
// template, cut to MaxTokensPerDoc first when set, then the pair to the
// model's max input length with LongestFirst when req truncates; a pair
// still longer is refused.
func (e *Engine) encodePair(i int, req *gateway.RerankRequest) (encoded, error) {
	limit := e.opts.MaxInputLength
	left := req.Direction == gateway.Left
	doc := req.Documents[i]
	if req.MaxTokensPerDoc > 0 {
		doc = e.cutDocument(doc, req.MaxTokensPerDoc, left)
	}
	opts := tokenizer.EncodeOptions{AddSpecialTokens: true, TruncateLeft: left}
	if req.Truncate {
		opts.MaxLength = limit
	}
	enc := e.tok.EncodePair(req.Query, doc, opts)
	if len(enc.IDs) > limit {
		return encoded{}, gateway.Errorf(gateway.Validation, gateway.TextParam(i),
			"the query and this text are %d tokens long together, more than the model's maximum of %d; set truncate to true or shorten them", len(enc.IDs), limit)
	}
	chars := utf8.RuneCountInString(req.Query) + utf8.RuneCountInString(doc)
	return encoded{ids: enc.IDs, typeIDs: e.typeIDs(enc.TypeIDs), chars: chars}, nil
}

// cutDocument is doc cut to its first n tokens (its last with left), as
// text, so that the pair template and LongestFirst then treat it as the
// whole document: Cohere's max_tokens_per_doc cuts each document before
// the query and it share the model's length. The cut falls at a token's
// end (start with left), which the document's own tokenization reads back
// as the same tokens.
func (e *Engine) cutDocument(doc string, n int, left bool) string {
	enc := e.tok.Encode(doc, tokenizer.EncodeOptions{MaxLength: n, TruncateLeft: left, Offsets: true})
	if len(enc.IDs) < n {
		return doc // whole already
	}
	lo, hi := 0, len(doc)
	if left {
		lo = enc.Offsets[0][0]
	} else {
		hi = enc.Offsets[len(enc.Offsets)-1][1]
	}
	if lo < 0 || hi > len(doc) || lo > hi {
		return doc // offsets that do not fit the text: keep it, LongestFirst still bounds the pair
	}
	return doc[lo:hi]
}

// score is a pair's relevance from the cross-encoder's logits, as
// sentence-transformers' CrossEncoder and TEI give it: raw, the last
// label's logit; else the sigmoid of a one-label model's logit, or the
// softmax probability of the last label of a model with more.
func score(logits []float32, raw bool) float32 {
	if len(logits) == 0 {
		return float32(math.NaN()) // never: the engine checks every batch's output shape
	}
	last := float64(logits[len(logits)-1])
	switch {
	case raw:
		return float32(last)
	case len(logits) == 1:
		return float32(1 / (1 + math.Exp(-last)))
	}
	peak := math.Inf(-1)
	for _, l := range logits {
		peak = max(peak, float64(l))
	}
	sum := 0.0
	for _, l := range logits {
		sum += math.Exp(float64(l) - peak)
	}
	return float32(math.Exp(last-peak) / sum)
}
