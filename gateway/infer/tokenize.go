package infer

import (
	"context"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/tokenizer"
)

// Tokenize returns the tokens of each input with byte offsets into the
// text the model sees (the prompt, if any, included).
func (e *Engine) Tokenize(ctx context.Context, req *gateway.TokenizeRequest) ([][]gateway.Token, error) {
	if err := req.Validate(e.Limits()); err != nil {
		return nil, err
	}
	prompt, err := e.prompt(req.PromptName)
	if err != nil {
		return nil, err
	}
	out := make([][]gateway.Token, len(req.Inputs))
	for i, in := range req.Inputs {
		if err := ctx.Err(); err != nil {
			return nil, gateway.ContextError(err)
		}
		text := prompt + in
		enc := e.tok.Encode(text, tokenizer.EncodeOptions{AddSpecialTokens: req.AddSpecialTokens, Offsets: true})
		toks := make([]gateway.Token, len(enc.IDs))
		for j, id := range enc.IDs {
			special := enc.SpecialTokensMask[j] == 1
			t := gateway.Token{ID: id, Special: special, Start: enc.Offsets[j][0], Stop: enc.Offsets[j][1], Text: enc.Tokens[j]}
			if !special && t.Start <= t.Stop && t.Stop <= len(text) {
				t.Text = text[t.Start:t.Stop]
			}
			toks[j] = t
		}
		out[i] = toks
	}
	return out, nil
}
