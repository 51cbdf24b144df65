package infer

import (
	"slices"
	"strings"

	"github.com/embedgate/embedgate/gateway"
)

// checkRequest checks req against the limits (gateway's Validate, the one
// place of those rules) and what needs the model: token ids in its
// vocabulary. Token length is checked while encoding (tooLong).
func (e *Engine) checkRequest(req *gateway.EmbedRequest) error {
	if err := req.Validate(e.Limits()); err != nil {
		return err
	}
	vocab := e.tok.VocabSize()
	if e.spec.VocabSize > 0 {
		vocab = e.spec.VocabSize
	}
	for i, in := range req.Inputs {
		if !in.IsIDs {
			continue
		}
		for j, id := range in.IDs {
			if id < 0 || int(id) >= vocab {
				return gateway.Errorf(gateway.Validation, gateway.TokenParam(i, j), "token id %d is outside the vocabulary (0 to %d)", id, vocab-1)
			}
		}
	}
	return nil
}

func (e *Engine) prompt(name string) (string, error) {
	if name != "" {
		p, ok := e.opts.Prompts[name]
		if !ok {
			return "", gateway.Errorf(gateway.Validation, "prompt_name", "unknown prompt name %q; the model's prompts are: %s", gateway.Clip(name), promptNames(e.opts.Prompts))
		}
		return p, nil
	}
	if e.opts.DefaultPrompt != "" {
		return e.opts.DefaultPrompt, nil
	}
	return e.opts.Prompts[e.opts.DefaultPromptName], nil
}

func promptNames(prompts map[string]string) string {
	if len(prompts) == 0 {
		return "none"
	}
	names := make([]string, 0, len(prompts))
	for n := range prompts {
		names = append(names, n)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

func tooLong(i, n, limit int) error {
	return gateway.Errorf(gateway.Validation, gateway.InputParam(i), "input is %d tokens long, more than the model's maximum of %d; set truncate to true or shorten the input", n, limit)
}

// Limits are what codecs validate requests against.
func (e *Engine) Limits() gateway.Limits {
	return gateway.Limits{
		MaxClientBatch:  e.opts.MaxClientBatch,
		MaxInputLength:  e.opts.MaxInputLength,
		Dimensions:      e.spec.Hidden,
		DefaultTruncate: e.opts.DefaultTruncate,
	}
}
