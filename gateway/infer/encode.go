package infer

import (
	"context"
	"sync"
	"unicode/utf8"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/tokenizer"
)

type encoded struct {
	ids, typeIDs []int32
	chars        int
}

// encode tokenizes req's inputs, in the tokenize span.
func (e *Engine) encode(ctx context.Context, req *gateway.EmbedRequest, prompt string) ([]encoded, error) {
	_, span := e.opts.Tracer.Start(ctx, spanTokenize)
	encs, err := e.encodeAll(ctx, req, prompt)
	endTokenize(span, encs, err)
	return encs, err
}

// encodeAll tokenizes req's inputs on the tokenization workers.
func (e *Engine) encodeAll(ctx context.Context, req *gateway.EmbedRequest, prompt string) ([]encoded, error) {
	return e.encodeEach(ctx, len(req.Inputs), func(i int) (encoded, error) {
		return e.encodeOne(i, req.Inputs[i], req, prompt)
	})
}

// encodeEach runs one(i) for i in [0, n) on the tokenization workers, in
// chunks so a large request uses every worker but a small one costs no
// goroutines. It returns the first error by index.
func (e *Engine) encodeEach(ctx context.Context, n int, one func(i int) (encoded, error)) ([]encoded, error) {
	out := make([]encoded, n)
	errs := make([]error, n)
	chunk := max(16, (n+cap(e.workers)-1)/cap(e.workers))
	var wg sync.WaitGroup
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		work := func() {
			select {
			case e.workers <- struct{}{}:
			case <-ctx.Done():
				for i := lo; i < hi; i++ {
					errs[i] = gateway.ContextError(ctx.Err())
				}
				return
			}
			defer func() { <-e.workers }()
			for i := lo; i < hi; i++ {
				out[i], errs[i] = one(i)
			}
		}
		if hi == n {
			work() // the last chunk runs here
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); work() }()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err // the first, by input index
		}
	}
	return out, nil
}

func (e *Engine) encodeOne(i int, in gateway.Input, req *gateway.EmbedRequest, prompt string) (encoded, error) {
	limit := e.opts.MaxInputLength
	if in.IsIDs {
		ids := in.IDs
		if len(ids) > limit {
			if !req.Truncate {
				return encoded{}, tooLong(i, len(ids), limit)
			}
			if req.Direction == gateway.Left {
				ids = ids[len(ids)-limit:]
			} else {
				ids = ids[:limit]
			}
		}
		return encoded{ids: ids, chars: 0}, nil
	}
	opts := tokenizer.EncodeOptions{AddSpecialTokens: true, TruncateLeft: req.Direction == gateway.Left}
	if req.Truncate {
		opts.MaxLength = limit
	}
	enc := e.tok.Encode(prompt+in.Text, opts)
	if len(enc.IDs) > limit {
		return encoded{}, tooLong(i, len(enc.IDs), limit)
	}
	return encoded{ids: enc.IDs, typeIDs: e.typeIDs(enc.TypeIDs), chars: utf8.RuneCountInString(in.Text)}, nil
}

// typeIDs are the type ids the batch carries for an encoding: none when
// the model takes none or they are all 0, which the batch's zeros stand for.
func (e *Engine) typeIDs(types []int32) []int32 {
	if !e.spec.HasTokenTypeIDs || allZero(types) {
		return nil
	}
	return types
}

func allZero(v []int32) bool {
	for _, x := range v {
		if x != 0 {
			return false
		}
	}
	return true
}
