// Package gateway holds the domain types that flow through embedgate's
// pipeline: requests, inputs, padded batches, backend outputs, results and
// the one error type. It imports nothing of ours, so every stage can use it.
package gateway

import (
	"context"
	"time"
)

// Input is one item of a request: either text to tokenize or token ids that
// go to the model as given.
type Input struct {
	Text  string
	IDs   []int32
	IsIDs bool
}

// Direction says which end of an over-long input truncation cuts.
type Direction int

const (
	Right Direction = iota
	Left
)

// EmbedRequest is a decoded, API-independent embedding request.
type EmbedRequest struct {
	Inputs     []Input
	Truncate   bool
	Direction  Direction
	PromptName string // "" = the model's default prompt, if any
	Normalize  bool
	Dimensions int // 0 = all of the model's dimensions
	// Base64 asks for base64 vectors (OpenAI encoding_format); only the
	// codec that decoded the request reads it, when encoding the response.
	Base64 bool
	// Model is the served model's name or alias the request asked for;
	// "" = the default model. The server routes on it; the engine that
	// gets the request is already the model's.
	Model string

	// Charge, when set, is called with the request's token count after
	// tokenization and before admission, so a token rate limit can refuse
	// the request before it costs inference. An error ends the request.
	Charge func(ctx context.Context, tokens int) error

	// CacheScope isolates cache entries: "" = shared by every client,
	// else the name of the API key whose entries these are (the server
	// sets it as --cache-scope says).
	CacheScope string
	// NoCacheLookup skips the cache lookup but stores the fresh vectors
	// (Cache-Control: no-cache); NoCacheStore skips both (no-store).
	NoCacheLookup bool
	NoCacheStore  bool
}

// Limits are what codecs validate requests against.
type Limits struct {
	MaxClientBatch  int // inputs per request
	MaxInputLength  int // tokens per input, special tokens included
	Dimensions      int // the model's embedding size
	DefaultTruncate bool
}

// Timings of one request, each stage measured once.
type Timings struct {
	Tokenization time.Duration
	Queue        time.Duration
	Inference    time.Duration
	Total        time.Duration
}

// Usage counts the tokens a request cost (prompt tokens, special tokens
// included, after truncation).
type Usage struct {
	PromptTokens int
	Characters   int
}

// EmbedResult answers an EmbedRequest: one vector per input, in input order.
type EmbedResult struct {
	Embeddings [][]float32
	Usage      Usage
	Timings    Timings
	Cached     int // inputs served from the cache
}

// DType is the element type of the model's token inputs.
type DType int

const (
	Int64 DType = iota
	Int32
)

// OutputKind says what the backend returns for a batch.
type OutputKind int

const (
	// Hidden is last_hidden_state [B,L,H]: pooling happens in the gateway.
	Hidden OutputKind = iota
	// Pooled is sentence_embedding [B,H]: the model pooled (and maybe normalized).
	Pooled
	// Logits is a cross-encoder's logits [B,num_labels]: ModelSpec.Hidden
	// and Output.Hidden are num_labels.
	Logits
)

// The tasks a served model does: Info.Task and the engine's options name
// one. A model does one task only, as TEI's do.
const (
	TaskEmbed  = "embed"  // texts in, vectors out
	TaskRerank = "rerank" // (query, document) pairs in, relevance scores out
)

// ModelSpec describes a backend's model so the pipeline can feed it.
type ModelSpec struct {
	Name            string
	HasTokenTypeIDs bool
	InputDType      DType
	Output          OutputKind
	Hidden          int // embedding size H; num_labels for Logits
	MaxBatch        int // rows per call; 0 = no limit from the backend
	VocabSize       int // 0 = unknown
	// Version is the model version the backend serves (Triton's;
	// "" for onnx): the cache keys on it, so a new version never gets
	// the vectors of the old one.
	Version string
	// HasPositionIDs: the model takes position_ids (TensorPositionIDs),
	// which the backend fills itself (PositionIDs); a Batch has none.
	HasPositionIDs bool
}

// Batch is one padded [Rows, Len] call to a backend. Slices are row-major,
// Rows*Len long; padding rows carry attention 0.
type Batch struct {
	ID            string // request id sent to the backend, for correlation
	Rows, Len     int
	InputIDs      []int64
	AttentionMask []int64
	TokenTypeIDs  []int64
}

// Output is what a backend returns for a Batch: Data is row-major,
// Rows*Hidden (Pooled, Logits) or Rows*Len*Hidden (Hidden) long.
type Output struct {
	Kind      OutputKind
	Rows, Len int
	Hidden    int
	Data      []float32
	// Release, if set, hands Data back to the backend, which may reuse it:
	// a [B,L,H] output is tens of megabytes, too much to leave to the
	// garbage collector at every batch. Whoever reads Data calls Release
	// once, when done, and does not touch Data after.
	Release func()
}

// Free calls o.Release, if o and it are set.
func (o *Output) Free() {
	if o != nil && o.Release != nil {
		o.Release()
	}
}

// RerankRequest is a decoded, API-independent rerank request: score each
// document against the query with a cross-encoder.
type RerankRequest struct {
	Model     string // as EmbedRequest.Model; "" = the default reranker
	Query     string
	Documents []string
	// TopN keeps the N best documents in the response; 0 = every
	// document. Only codecs read it: the engine scores every document.
	TopN            int
	ReturnDocuments bool // codecs echo each document's text
	// RawScores returns the last label's logit instead of a probability.
	RawScores bool
	// Truncate false refuses a pair longer than the model takes (422, as
	// TEI's truncate=false); codecs default it to true, since a rerank
	// API is expected to cut long documents rather than refuse them.
	Truncate  bool
	Direction Direction
	// MaxTokensPerDoc cuts each document alone to that many tokens
	// before pairing; 0 = no such cut (the Cohere codec sets Cohere's
	// 4096 by default).
	MaxTokensPerDoc int
	// Charge is EmbedRequest.Charge's: called with every pair's tokens.
	Charge func(ctx context.Context, tokens int) error
}

// RerankResult answers a RerankRequest: one score per document, in input
// order; codecs sort and cut.
type RerankResult struct {
	Scores  []float32
	Usage   Usage // PromptTokens: every pair's tokens, special tokens included
	Timings Timings
}

// Token is one token of a /tokenize answer; Start and Stop are byte offsets
// into the input text (after the prompt, if one was prepended).
type Token struct {
	ID      int32
	Text    string
	Special bool
	Start   int
	Stop    int
}

// TokenizeRequest is a decoded /tokenize request. Its inputs are held to
// the model's max input length as an EmbedRequest's are.
type TokenizeRequest struct {
	Inputs           []string
	AddSpecialTokens bool
	PromptName       string // "" = the model's default prompt, if any
	// Truncate cuts an input longer than the model's max input length
	// (the prompt and any special tokens included) at Direction's end;
	// false refuses it, 422. Codecs default it to Limits.DefaultTruncate,
	// as for an EmbedRequest.
	Truncate  bool
	Direction Direction
	Model     string // as EmbedRequest.Model
}

// Info describes a served model and its pipeline's limits for /info and
// /v1/models. ModelID is where the model came from (a hub repo or a
// directory); Name is what clients call it.
type Info struct {
	Name             string   // the served name: what a request's model matches
	Aliases          []string // the model's other names
	State            string   // "loading", "ready", "unhealthy" or "draining"
	ModelID          string
	Revision         string
	Pooling          string
	Dimensions       int
	MaxInputLength   int
	MaxBatchTokens   int
	MaxBatchRequests int
	MaxClientBatch   int
	MaxConcurrent    int
	Backend          string
	Version          string
	Prompts          map[string]string
	DefaultPrompt    string
	Task             string // TaskEmbed or TaskRerank
}

// Check rejects a batch the pipeline should never build: an empty or
// overflowing shape, slices of the wrong length, or negative ids (ONNX's
// Gather reads a negative index from the end of the table, so such an id
// would silently embed as another token). Backends call it before sending.
func (b *Batch) Check() error {
	if b == nil {
		return Errorf(Internal, "batch", "nil batch")
	}
	if b.Rows <= 0 || b.Len <= 0 {
		return Errorf(Internal, "batch", "batch shape [%d,%d] is empty", b.Rows, b.Len)
	}
	n := b.Rows * b.Len
	if n/b.Rows != b.Len {
		return Errorf(Internal, "batch", "batch shape [%d,%d] overflows", b.Rows, b.Len)
	}
	if len(b.InputIDs) != n || len(b.AttentionMask) != n || b.TokenTypeIDs != nil && len(b.TokenTypeIDs) != n {
		return Errorf(Internal, "batch", "batch [%d,%d] has %d input ids, %d mask and %d type ids, want %d each",
			b.Rows, b.Len, len(b.InputIDs), len(b.AttentionMask), len(b.TokenTypeIDs), n)
	}
	for i, id := range b.InputIDs {
		if id < 0 {
			return Errorf(Internal, "batch", "negative token id %d at row %d, position %d", id, i/b.Len, i%b.Len)
		}
	}
	return nil
}
