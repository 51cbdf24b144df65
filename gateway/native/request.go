package native

import (
	"encoding/json"

	"github.com/embedgate/embedgate/gateway"
)

// Options are the request fields every embedding dialect shares; each
// codec's request struct embeds them next to its own inputs field.
type Options struct {
	Truncate            *bool      `json:"truncate"`
	TruncationDirection Direction  `json:"truncation_direction"`
	PromptName          *string    `json:"prompt_name"`
	Normalize           *bool      `json:"normalize"`
	Dimensions          Dimensions `json:"dimensions"`
	Model               *string    `json:"model"`
}

// Request is the native and TEI body; unknown fields are ignored.
type Request struct {
	Inputs Inputs `json:"inputs"`
	Options
}

// Decode parses body into r; errors are *gateway.Error. A missing or null
// inputs field is an error here, since it is the shape of the body; what
// the inputs hold is gateway.EmbedRequest.Validate's to check.
func (r *Request) Decode(body []byte) error {
	if err := json.Unmarshal(body, r); err != nil {
		return DecodeError(err)
	}
	if !r.Inputs.Set {
		return gateway.Errorf(gateway.Validation, "inputs", "missing field")
	}
	return nil
}

// EmbedRequest assembles the domain request from the decoded fields, with
// the defaults: truncate as lim.DefaultTruncate, normalize true.
func (o *Options) EmbedRequest(in Inputs, lim gateway.Limits) *gateway.EmbedRequest {
	req := &gateway.EmbedRequest{
		Inputs:     in.List,
		Truncate:   lim.DefaultTruncate,
		Direction:  gateway.Direction(o.TruncationDirection),
		Normalize:  true,
		Dimensions: int(o.Dimensions),
	}
	if o.Truncate != nil {
		req.Truncate = *o.Truncate
	}
	if o.Normalize != nil {
		req.Normalize = *o.Normalize
	}
	if o.PromptName != nil {
		req.PromptName = *o.PromptName
	}
	if o.Model != nil {
		req.Model = *o.Model
	}
	return req
}

// Dimensions is the optional Matryoshka size: a positive integer, or null
// or absent for all of the model's dimensions (0). Whether it fits the
// model is gateway.EmbedRequest.Validate's to say.
type Dimensions int

// UnmarshalJSON implements json.Unmarshaler.
func (d *Dimensions) UnmarshalJSON(data []byte) error {
	var n *int
	if err := json.Unmarshal(data, &n); err != nil || n != nil && *n <= 0 {
		return gateway.Errorf(gateway.Validation, "dimensions", "expected a positive integer, got %s", gateway.Clip(string(data)))
	}
	if n == nil {
		*d = 0
	} else {
		*d = Dimensions(*n)
	}
	return nil
}
