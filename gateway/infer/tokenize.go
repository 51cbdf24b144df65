package infer

import (
	"context"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/tokenizer"
)

// Tokenize returns the tokens of each input with byte offsets into the
// text the model sees (the prompt, if any, included).
//
// It is held to the limits of Embed, since its cost is the same
// tokenization and its answer is larger than the input: it takes a place
// at the same gate (see enter), and an input longer than the model's
// max input length is truncated as req asks or refused as Embed refuses
// it. So an answer holds at most --max-client-batch-size × the max input
// length tokens: without the limits, 8 requests of 2 MB each answered
// 68 MB apiece, past --max-concurrent-requests.
func (e *Engine) Tokenize(ctx context.Context, req *gateway.TokenizeRequest) ([][]gateway.Token, error) {
	if err := e.enterCall(); err != nil {
		return nil, err
	}
	defer e.active.leave()
	if err := req.Validate(e.Limits()); err != nil {
		return nil, err
	}
	prompt, err := e.prompt(req.PromptName)
	if err != nil {
		return nil, err
	}
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.gate.Done()
	limit := e.opts.MaxInputLength
	opts := tokenizer.EncodeOptions{AddSpecialTokens: req.AddSpecialTokens, Offsets: true, TruncateLeft: req.Direction == gateway.Left}
	if req.Truncate {
		opts.MaxLength = limit
	}
	out := make([][]gateway.Token, len(req.Inputs))
	for i, in := range req.Inputs {
		if err := ctx.Err(); err != nil {
			return nil, gateway.ContextError(err)
		}
		text := prompt + in
		enc := e.tok.Encode(text, opts)
		if len(enc.IDs) > limit {
			return nil, tooLong(i, len(enc.IDs), limit)
		}
		out[i] = tokens(enc, text)
	}
	return out, nil
}

// tokens turns enc, an encoding of text with offsets, into the answer's
// tokens. Truncation keeps each token's offsets into the whole text.
func tokens(enc tokenizer.Encoding, text string) []gateway.Token {
	toks := make([]gateway.Token, len(enc.IDs))
	for j, id := range enc.IDs {
		special := enc.SpecialTokensMask[j] == 1
		t := gateway.Token{ID: id, Special: special, Start: enc.Offsets[j][0], Stop: enc.Offsets[j][1], Text: enc.Tokens[j]}
		if !special && t.Start <= t.Stop && t.Stop <= len(text) {
			t.Text = text[t.Start:t.Stop]
		}
		toks[j] = t
	}
	return toks
}
