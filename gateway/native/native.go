// Package native is the codec of embedgate's own API (POST /api/v1/embed):
// JSON request → gateway.EmbedRequest, gateway.EmbedResult →
// JSON, and error bodies. It also holds the wire pieces the tei and openai
// codecs share (the text|ids Inputs union, DecodeError, fast float and
// string encoding), since they are dialects of the same request. It imports
// only gateway and the standard library.
package native

import (
	"time"

	"github.com/embedgate/embedgate/gateway"
)

// Codec decodes and encodes the native API. The zero value is ready.
type Codec struct{}

// DecodeEmbed parses body: the shape and types of its fields. What the
// values must be is gateway.EmbedRequest.Validate's. Errors are
// *gateway.Error naming the field or input index.
func (Codec) DecodeEmbed(body []byte, lim gateway.Limits) (*gateway.EmbedRequest, error) {
	var w Request
	if err := w.Decode(body); err != nil {
		return nil, err
	}
	for i, in := range w.Inputs.List {
		if in.IsIDs {
			param := "inputs"
			if len(w.Inputs.List) > 1 {
				param = gateway.InputParam(i)
			}
			return nil, gateway.Errorf(gateway.Validation, param, "token ids are not accepted here; use POST /embed or /v1/embeddings")
		}
	}
	return w.EmbedRequest(w.Inputs, lim), nil
}

// AppendEmbed appends the native response for res to dst:
// {"data":[{"embedding":[..],"index":i}],"usage":{..},"timings":{..}}.
// timings holds each stage's duration and "cached", the inputs the
// embedding cache served.
func (Codec) AppendEmbed(dst []byte, res *gateway.EmbedResult, _ *gateway.EmbedRequest, _ string) ([]byte, error) {
	var err error
	dst = append(dst, `{"data":[`...)
	for i, v := range res.Embeddings {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"embedding":`...)
		if dst, err = AppendFloats(dst, v); err != nil {
			return dst, err
		}
		dst = append(dst, `,"index":`...)
		dst = appendInt(dst, i)
		dst = append(dst, '}')
	}
	dst = append(dst, `],"usage":`...)
	dst = AppendUsage(dst, res.Usage)
	dst = append(dst, `,"timings":{"tokenization":`...)
	dst = appendDuration(dst, res.Timings.Tokenization)
	dst = append(dst, `,"queue":`...)
	dst = appendDuration(dst, res.Timings.Queue)
	dst = append(dst, `,"inference":`...)
	dst = appendDuration(dst, res.Timings.Inference)
	dst = append(dst, `,"cached":`...)
	dst = appendInt(dst, res.Cached)
	return append(dst, `}}`...), nil
}

// AppendUsage appends {"prompt_tokens":n,"total_tokens":n}.
func AppendUsage(dst []byte, u gateway.Usage) []byte {
	dst = append(dst, `{"prompt_tokens":`...)
	dst = appendInt(dst, u.PromptTokens)
	dst = append(dst, `,"total_tokens":`...)
	dst = appendInt(dst, u.PromptTokens)
	return append(dst, '}')
}

func appendDuration(dst []byte, d time.Duration) []byte {
	return AppendString(dst, d.String())
}
