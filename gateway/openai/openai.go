// Package openai is the codec of the OpenAI embeddings API (POST
// /v1/embeddings and /embeddings, GET /v1/models): request decoding and
// validation, float or base64 responses, and OpenAI-shaped error bodies.
// It imports only gateway and native (whose wire pieces it shares).
package openai

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"strconv"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/native"
)

// Codec decodes and encodes the OpenAI API. The zero value is ready.
type Codec struct{}

// Format is encoding_format.
type Format int

const (
	Float  Format = iota // the default
	Base64               // little-endian float32 bytes, standard base64
)

// UnmarshalJSON implements json.Unmarshaler: "float", "base64" or null.
func (f *Format) UnmarshalJSON(data []byte) error {
	var s *string
	if err := json.Unmarshal(data, &s); err != nil {
		return gateway.Errorf(gateway.Validation, "encoding_format", `expected "float" or "base64"`)
	}
	switch {
	case s == nil || *s == "float":
		*f = Float
	case *s == "base64":
		*f = Base64
	default:
		return gateway.Errorf(gateway.Validation, "encoding_format", `expected "float" or "base64", got %q`, *s)
	}
	return nil
}

type request struct {
	Input               native.Inputs    `json:"input"`
	Model               *string          `json:"model"`
	EncodingFormat      Format           `json:"encoding_format"`
	Dimensions          *int             `json:"dimensions"`
	User                *string          `json:"user"`
	Truncate            *bool            `json:"truncate"`
	TruncationDirection native.Direction `json:"truncation_direction"`
	PromptName          *string          `json:"prompt_name"`
	Normalize           *bool            `json:"normalize"`
}

// DecodeEmbed parses and validates body. model and user are accepted and
// not used (one model is served); encoding_format sets req.Base64.
func (Codec) DecodeEmbed(body []byte, lim gateway.Limits) (*gateway.EmbedRequest, error) {
	var w request
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, native.DecodeError(err, "input")
	}
	if err := native.CheckInputs(w.Input, "input", lim); err != nil {
		return nil, err
	}
	req, err := native.Build(w.Input, w.Truncate, w.TruncationDirection, w.PromptName, w.Normalize, w.Dimensions, lim)
	if err != nil {
		return nil, err
	}
	req.Base64 = w.EncodingFormat == Base64
	return req, nil
}

// AppendEmbed appends {"object":"list","data":[..],"model":..,"usage":..}.
// Vectors are base64 when req.Base64, else JSON floats.
func (Codec) AppendEmbed(dst []byte, res *gateway.EmbedResult, req *gateway.EmbedRequest, model string) ([]byte, error) {
	var (
		err error
		raw []byte // one vector's bytes, reused across vectors
	)
	if req != nil && req.Base64 && len(res.Embeddings) > 0 {
		raw = make([]byte, 0, 4*len(res.Embeddings[0]))
	}
	dst = append(dst, `{"object":"list","data":[`...)
	for i, v := range res.Embeddings {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"object":"embedding","embedding":`...)
		if req != nil && req.Base64 {
			raw = raw[:0]
			for _, f := range v {
				raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(f))
			}
			dst = append(dst, '"')
			dst = base64.StdEncoding.AppendEncode(dst, raw)
			dst = append(dst, '"')
		} else if dst, err = native.AppendFloats(dst, v); err != nil {
			return dst, err
		}
		dst = append(dst, `,"index":`...)
		dst = strconv.AppendInt(dst, int64(i), 10)
		dst = append(dst, '}')
	}
	dst = append(dst, `],"model":`...)
	dst = native.AppendString(dst, model)
	dst = append(dst, `,"usage":`...)
	dst = native.AppendUsage(dst, res.Usage)
	return append(dst, '}'), nil
}

// ErrorBody is {"error":{"message":..,"type":..,"param":..,"code":..}}.
func (Codec) ErrorBody(e *gateway.Error) []byte {
	dst := append([]byte(nil), `{"error":{"message":`...)
	dst = native.AppendString(dst, native.Message(e))
	dst = append(dst, `,"type":`...)
	dst = native.AppendString(dst, typeOf(e.Kind))
	dst = append(dst, `,"param":`...)
	if e.Param != "" {
		dst = native.AppendString(dst, e.Param)
	} else {
		dst = append(dst, "null"...)
	}
	dst = append(dst, `,"code":`...)
	if e.Kind == gateway.Unauthorized {
		dst = append(dst, `"invalid_api_key"`...)
	} else {
		dst = append(dst, "null"...)
	}
	return append(dst, `}}`...)
}

// typeOf is OpenAI's error type for a kind.
func typeOf(k gateway.Kind) string {
	switch k {
	case gateway.RateLimited:
		return "rate_limit_exceeded"
	case gateway.Overloaded:
		return "server_overloaded"
	case gateway.Timeout:
		return "timeout"
	case gateway.Unhealthy, gateway.Backend, gateway.Internal:
		return "server_error"
	}
	return "invalid_request_error"
}

type modelList struct {
	Object string  `json:"object"`
	Data   []model `json:"data"`
}

type model struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

// EncodeModels is the GET /v1/models body listing the served model.
func EncodeModels(info gateway.Info) ([]byte, error) {
	b, err := json.Marshal(modelList{Object: "list", Data: []model{{ID: info.ModelID, Object: "model", OwnedBy: "embedgate"}}})
	if err != nil {
		return nil, &gateway.Error{Kind: gateway.Internal, Msg: "internal error", Err: err}
	}
	return b, nil
}
