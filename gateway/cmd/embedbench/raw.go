package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/tokenizer"
)

// Raw is the in-process ONNX Runtime baseline: what the model does on
// ideal batches, with no HTTP, tokenization or batching on the clock.
type Raw struct {
	Batches    int
	Rows       float64 // mean rows per batch
	Padding    float64 // share of padded positions over all batches
	Tokens     float64 // real tokens per second
	Embeddings float64 // rows per second
	TokPerCPU  float64 // real tokens per CPU-second of this process
	Elapsed    time.Duration
}

// idealBatches tokenizes texts as the gateway does (special tokens,
// truncated to maxLen), sorts them by length and cuts full batches under
// the gateway's default budget (maxRows rows, rows × longest ≤ maxTokens):
// the least padding any batcher could reach with these inputs.
func idealBatches(tok *tokenizer.Tokenizer, texts []string, maxLen, maxRows, maxTokens int) ([]*gateway.Batch, error) {
	seqs := make([][]int32, len(texts))
	for i, t := range texts {
		seqs[i] = tok.Encode(t, tokenizer.EncodeOptions{AddSpecialTokens: true, MaxLength: maxLen}).IDs
	}
	slices.SortStableFunc(seqs, func(a, b []int32) int { return len(a) - len(b) })
	var out []*gateway.Batch
	for start := 0; start < len(seqs); {
		end := start + 1
		for end < len(seqs) && end-start < maxRows && (end-start+1)*len(seqs[end]) <= maxTokens {
			end++
		}
		out = append(out, padBatch(seqs[start:end]))
		start = end
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("raw: no inputs")
	}
	return out, nil
}

// padBatch right-pads rows to the longest with id 0 and attention 0, like
// the batcher.
func padBatch(rows [][]int32) *gateway.Batch {
	longest := 0
	for _, r := range rows {
		longest = max(longest, len(r))
	}
	n := len(rows) * longest
	b := &gateway.Batch{ID: "raw", Rows: len(rows), Len: longest,
		InputIDs: make([]int64, n), AttentionMask: make([]int64, n), TokenTypeIDs: make([]int64, n)}
	for i, r := range rows {
		for j, id := range r {
			b.InputIDs[i*longest+j] = int64(id)
			b.AttentionMask[i*longest+j] = 1
		}
	}
	return b
}

func realTokens(b *gateway.Batch) int {
	n := 0
	for _, m := range b.AttentionMask {
		n += int(m)
	}
	return n
}

// runRaw runs the batches one at a time (as the gateway's onnx backend
// does), in whole passes of a seeded shuffled order until at least d has
// passed, so the tokens counted have the mix's length distribution; a
// warm-up on a few batches comes first (ONNX Runtime allocates on the first
// run of a shape).
func runRaw(ctx context.Context, m model, batches []*gateway.Batch, d time.Duration, seed uint64) (*Raw, error) {
	rng := rand.New(rand.NewPCG(seed, 1))
	for _, i := range rng.Perm(len(batches))[:min(4, len(batches))] {
		if _, err := m.Embed(ctx, batches[i]); err != nil {
			return nil, fmt.Errorf("raw: warm-up: %w", err)
		}
	}
	r := &Raw{}
	var rows, real, padded int
	cpu0, err := readProc("self")
	if err != nil {
		return nil, err
	}
	start := time.Now()
	for time.Since(start) < d {
		for _, i := range rng.Perm(len(batches)) {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			b := batches[i]
			if _, err := m.Embed(ctx, b); err != nil {
				return nil, fmt.Errorf("raw: %w", err)
			}
			r.Batches++
			rows += b.Rows
			real += realTokens(b)
			padded += b.Rows * b.Len
		}
	}
	r.Elapsed = time.Since(start)
	cpu1, err := readProc("self")
	if err != nil {
		return nil, err
	}
	r.TokPerCPU = float64(real) / (cpu1.cpu - cpu0.cpu).Seconds()
	s := r.Elapsed.Seconds()
	r.Rows = float64(rows) / float64(r.Batches)
	r.Padding = 1 - float64(real)/float64(padded)
	r.Tokens, r.Embeddings = float64(real)/s, float64(rows)/s
	return r, nil
}

// model is what the Triton stand-in and the raw baseline run: the
// tritontest.Model method set.
type model interface {
	Spec() gateway.ModelSpec
	Embed(ctx context.Context, b *gateway.Batch) (*gateway.Output, error)
	Health(ctx context.Context) error
}

// oneInstance runs one batch at a time, as Triton does for a model with
// instance_group count 1 (which is what the stand-in's config reports):
// further requests wait in Triton's queue, not on the CPU.
type oneInstance struct {
	mu sync.Mutex
	model
}

func (o *oneInstance) Embed(ctx context.Context, b *gateway.Batch) (*gateway.Output, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.model.Embed(ctx, b)
}

// instant answers every batch at once with a constant output of the
// model's shape: a backend that costs nothing, so that what a client sees is
// the gateway (and the gRPC hop) alone. The values are not zero, so that
// L2 normalization stays finite.
type instant struct {
	spec gateway.ModelSpec
	data []float32 // shared, read-only: large enough for the largest batch
}

func newInstant(spec gateway.ModelSpec, maxRows, maxLen int) *instant {
	n := maxRows * spec.Hidden
	if spec.Output == gateway.Hidden {
		n *= maxLen
	}
	data := make([]float32, n)
	for i := range data {
		data[i] = 0.01 * float32(i%spec.Hidden+1)
	}
	return &instant{spec: spec, data: data}
}

func (z *instant) Spec() gateway.ModelSpec { return z.spec }

func (z *instant) Health(context.Context) error { return nil }

func (z *instant) Embed(_ context.Context, b *gateway.Batch) (*gateway.Output, error) {
	n := b.Rows * z.spec.Hidden
	if z.spec.Output == gateway.Hidden {
		n *= b.Len
	}
	if n > len(z.data) {
		return nil, fmt.Errorf("instant: batch [%d,%d] larger than prepared", b.Rows, b.Len)
	}
	return &gateway.Output{Kind: z.spec.Output, Rows: b.Rows, Len: b.Len, Hidden: z.spec.Hidden, Data: z.data[:n]}, nil
}
