// Package openai is the codec of the OpenAI embeddings API (POST
// /v1/embeddings and /embeddings, GET /v1/models and /v1/models/{id}): request decoding, float
// or base64 responses, and OpenAI-shaped error bodies.
// It imports only gateway and native (whose wire pieces it shares).
package openai

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"strconv"
	"strings"

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
	Input          native.Inputs `json:"input"`
	EncodingFormat Format        `json:"encoding_format"`
	User           *string       `json:"user"`
	native.Options
}

// DecodeEmbed parses body. model (in native.Options) picks the served
// model; user is accepted and not used; encoding_format sets req.Base64.
func (Codec) DecodeEmbed(body []byte, lim gateway.Limits) (*gateway.EmbedRequest, error) {
	var w request
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, native.DecodeError(err)
	}
	if !w.Input.Set {
		return nil, gateway.Errorf(gateway.Validation, "inputs", "missing field")
	}
	req := w.EmbedRequest(w.Input, lim)
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

// ErrorResponse is OpenAI's error: its status and
// {"error":{"message":..,"type":..,"param":..,"code":..}}, with params in
// OpenAI's names ("input[3]" for the native "inputs[3]").
func (Codec) ErrorResponse(e *gateway.Error) (int, []byte) {
	w := native.WireOf(e.Kind)
	typ := w.OpenAIType
	if e.Kind == gateway.RateLimited && e.Limit != "" {
		typ = e.Limit // "requests" or "tokens", as OpenAI says which limit refused
	}
	param := Param(e.Param)
	dst := append([]byte(nil), `{"error":{"message":`...)
	dst = native.AppendString(dst, native.Message(param, e))
	dst = append(dst, `,"type":`...)
	dst = native.AppendString(dst, typ)
	dst = append(dst, `,"param":`...)
	dst = appendStringOrNull(dst, param)
	dst = append(dst, `,"code":`...)
	dst = appendStringOrNull(dst, w.OpenAICode)
	return w.OpenAIStatus, append(dst, `}}`...)
}

// Param is a native param path in OpenAI's names: its inputs field is
// "input".
func Param(native string) string {
	if rest, ok := strings.CutPrefix(native, "inputs"); ok && (rest == "" || rest[0] == '[') {
		return "input" + rest
	}
	return native
}

func appendStringOrNull(dst []byte, s string) []byte {
	if s == "" {
		return append(dst, "null"...)
	}
	return native.AppendString(dst, s)
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
	// Task is embedgate's own field: "embed" or "rerank", so a client can
	// tell the models of /v1/embeddings from those of /v1/rerank. OpenAI's
	// SDKs keep unknown fields.
	Task string `json:"task,omitempty"`
}

// Listed is one entry of GET /v1/models: a served model's name or alias,
// and the task of the model it names.
type Listed struct{ ID, Task string }

// EncodeModels is the GET /v1/models body: one model object per entry,
// created at created (Unix seconds).
func EncodeModels(models []Listed, created int64) ([]byte, error) {
	list := modelList{Object: "list", Data: make([]model, len(models))}
	for i, m := range models {
		list.Data[i] = newModel(m, created)
	}
	return encode(list)
}

// EncodeModel is the GET /v1/models/{id} body: one model object.
func EncodeModel(m Listed, created int64) ([]byte, error) { return encode(newModel(m, created)) }

func newModel(m Listed, created int64) model {
	return model{ID: m.ID, Object: "model", Created: created, OwnedBy: "embedgate", Task: m.Task}
}

func encode(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, &gateway.Error{Kind: gateway.Internal, Msg: "internal error", Err: err}
	}
	return b, nil
}
