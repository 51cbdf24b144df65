// Package tei is the codec of the text-embeddings-inference API: POST /embed
// (texts or token ids → [[..],..]), POST /rerank (a query and texts →
// ranks), POST /tokenize and the GET /info body, plus TEI's error bodies. It imports only gateway and native (whose wire
// pieces it shares).
package tei

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/native"
)

// Codec decodes and encodes the TEI API. The zero value is ready.
type Codec struct{}

// DecodeEmbed parses a /embed body: the native request, whose inputs may
// also be token ids.
func (Codec) DecodeEmbed(body []byte, lim gateway.Limits) (*gateway.EmbedRequest, error) {
	var w native.Request
	if err := w.Decode(body); err != nil {
		return nil, err
	}
	return w.EmbedRequest(w.Inputs, lim), nil
}

// AppendEmbed appends [[..],..], one vector per input in input order.
func (Codec) AppendEmbed(dst []byte, res *gateway.EmbedResult, _ *gateway.EmbedRequest, _ string) ([]byte, error) {
	var err error
	dst = append(dst, '[')
	for i, v := range res.Embeddings {
		if i > 0 {
			dst = append(dst, ',')
		}
		if dst, err = native.AppendFloats(dst, v); err != nil {
			return dst, err
		}
	}
	return append(dst, ']'), nil
}

// ErrorResponse is TEI's error: {"error":"<message>","error_type":"<Type>"},
// the native one but for a model of the wrong task: TEI answers /rerank on
// an embedding model, and /embed on a classifier, 424 with error_type
// Backend ("model is not a re-ranker model", "Model is not an embedding
// model": BackendError::Inference in router/src/http/server.rs and
// core/src/infer.rs), where the native API says 400.
func (Codec) ErrorResponse(e *gateway.Error) (int, []byte) {
	if e.Kind == gateway.WrongTask {
		return http.StatusFailedDependency, native.ErrorBody(native.Message(e.Param, e), "Backend")
	}
	return native.Codec{}.ErrorResponse(e)
}

type tokenizeRequest struct {
	Inputs              native.Inputs    `json:"inputs"`
	AddSpecialTokens    *bool            `json:"add_special_tokens"`
	PromptName          *string          `json:"prompt_name"`
	Truncate            *bool            `json:"truncate"`
	TruncationDirection native.Direction `json:"truncation_direction"`
	Model               *string          `json:"model"`
}

// DecodeTokenize parses a /tokenize body: inputs is a string or [string],
// add_special_tokens defaults to true, truncate (to the model's max input
// length, as /embed does) to lim.DefaultTruncate, and model to "" (the
// default model).
func DecodeTokenize(body []byte, lim gateway.Limits) (*gateway.TokenizeRequest, error) {
	var w tokenizeRequest
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, native.DecodeError(err)
	}
	if !w.Inputs.Set {
		return nil, gateway.Errorf(gateway.Validation, "inputs", "missing field")
	}
	req := &gateway.TokenizeRequest{Inputs: make([]string, len(w.Inputs.List)), AddSpecialTokens: true,
		Truncate: lim.DefaultTruncate, Direction: gateway.Direction(w.TruncationDirection)}
	for i, in := range w.Inputs.List {
		if in.IsIDs {
			return nil, gateway.Errorf(gateway.Validation, gateway.InputParam(i), "expected a string")
		}
		req.Inputs[i] = in.Text
	}
	if w.AddSpecialTokens != nil {
		req.AddSpecialTokens = *w.AddSpecialTokens
	}
	if w.PromptName != nil {
		req.PromptName = *w.PromptName
	}
	if w.Truncate != nil {
		req.Truncate = *w.Truncate
	}
	if w.Model != nil {
		req.Model = *w.Model
	}
	return req, nil
}

// AppendTokens appends [[{"id","text","special","start","stop"}]], one list
// per input.
func AppendTokens(dst []byte, toks [][]gateway.Token) []byte {
	dst = append(dst, '[')
	for i, list := range toks {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '[')
		for j, t := range list {
			if j > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"id":`...)
			dst = strconv.AppendInt(dst, int64(t.ID), 10)
			dst = append(dst, `,"text":`...)
			dst = native.AppendString(dst, t.Text)
			dst = append(dst, `,"special":`...)
			dst = strconv.AppendBool(dst, t.Special)
			dst = append(dst, `,"start":`...)
			dst = strconv.AppendInt(dst, int64(t.Start), 10)
			dst = append(dst, `,"stop":`...)
			dst = strconv.AppendInt(dst, int64(t.Stop), 10)
			dst = append(dst, '}')
		}
		dst = append(dst, ']')
	}
	return append(dst, ']')
}

// info is the /info body: TEI's field names where TEI has them.
type info struct {
	ModelID               string            `json:"model_id"`
	Revision              *string           `json:"model_sha"` // null for a local model, as TEI
	ModelType             modelType         `json:"model_type"`
	Dimensions            int               `json:"dimensions"`
	MaxInputLength        int               `json:"max_input_length"`
	MaxBatchTokens        int               `json:"max_batch_tokens"`
	MaxBatchRequests      int               `json:"max_batch_requests"`
	MaxClientBatchSize    int               `json:"max_client_batch_size"`
	MaxConcurrentRequests int               `json:"max_concurrent_requests"`
	Backend               string            `json:"backend"`
	Version               string            `json:"version"`
	Prompts               map[string]string `json:"prompts,omitempty"`
	DefaultPromptName     string            `json:"default_prompt_name,omitempty"`
	Models                []modelInfo       `json:"models"`
}

// modelInfo is one entry of /info's models: not TEI's (TEI serves one
// model), so TEI clients ignore it.
type modelInfo struct {
	Name           string   `json:"name"`
	Aliases        []string `json:"aliases"`
	ModelID        string   `json:"model_id"`
	Backend        string   `json:"backend"`
	Dimensions     int      `json:"dimensions"`
	MaxInputLength int      `json:"max_input_length"`
	State          string   `json:"state"`
	Task           string   `json:"task"` // "embed" or "rerank"
}

// modelType is TEI's model_type: {"embedding":{"pooling":...}} for an
// embedding model, {"reranker":{}} for a reranker (TEI lists its labels
// there too; the gateway does not keep them).
type modelType struct {
	Embedding *embeddingModel `json:"embedding,omitempty"`
	Reranker  *struct{}       `json:"reranker,omitempty"`
}

type embeddingModel struct {
	Pooling string `json:"pooling"`
}

// EncodeInfo is the GET /info body: TEI's fields for in, and "models"
// listing each of models (name, aliases, source, backend, size, state).
func EncodeInfo(in gateway.Info, models []gateway.Info) ([]byte, error) {
	w := info{
		ModelID: in.ModelID, Revision: nonEmpty(in.Revision), Dimensions: in.Dimensions,
		MaxInputLength: in.MaxInputLength, MaxBatchTokens: in.MaxBatchTokens,
		MaxBatchRequests: in.MaxBatchRequests, MaxClientBatchSize: in.MaxClientBatch,
		MaxConcurrentRequests: in.MaxConcurrent, Backend: in.Backend, Version: in.Version,
		Prompts: in.Prompts, DefaultPromptName: in.DefaultPrompt,
	}
	if in.Task == gateway.TaskRerank {
		w.ModelType.Reranker = &struct{}{}
	} else {
		w.ModelType.Embedding = &embeddingModel{Pooling: in.Pooling}
	}
	w.Models = make([]modelInfo, len(models))
	for i, m := range models {
		aliases := m.Aliases
		if aliases == nil {
			aliases = []string{} // always a list: clients need not test for null
		}
		w.Models[i] = modelInfo{Name: m.Name, Aliases: aliases, ModelID: m.ModelID, Backend: m.Backend,
			Dimensions: m.Dimensions, MaxInputLength: m.MaxInputLength, State: m.State, Task: m.Task}
	}
	b, err := json.Marshal(w)
	if err != nil {
		return nil, &gateway.Error{Kind: gateway.Internal, Msg: "internal error", Err: err}
	}
	return b, nil
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
