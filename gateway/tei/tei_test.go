package tei

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/native/codectest"
)

func TestDecodeEmbed(t *testing.T) {
	ids := func(v ...int32) gateway.Input { return gateway.Input{IDs: v, IsIDs: true} }
	tests := []struct {
		name string
		body string
		want *gateway.EmbedRequest
	}{
		{"string", `{"inputs":"a"}`, &gateway.EmbedRequest{Inputs: []gateway.Input{{Text: "a"}}, Truncate: true, Normalize: true}},
		{"ids", `{"inputs":[101,7592,102]}`, &gateway.EmbedRequest{Inputs: []gateway.Input{ids(101, 7592, 102)}, Truncate: true, Normalize: true}},
		{"id lists", `{"inputs":[[101],[101,102]]}`, &gateway.EmbedRequest{Inputs: []gateway.Input{ids(101), ids(101, 102)}, Truncate: true, Normalize: true}},
		{"all fields", `{"inputs":["a","b"],"truncate":false,"truncation_direction":"LEFT","prompt_name":"query","normalize":false,"dimensions":2,"model":"e5"}`,
			&gateway.EmbedRequest{Inputs: []gateway.Input{{Text: "a"}, {Text: "b"}}, Direction: gateway.Left, PromptName: "query", Dimensions: 2, Model: "e5"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Codec{}.DecodeEmbed([]byte(tt.body), codectest.Limits())
			if err != nil {
				t.Fatalf("DecodeEmbed(%s) error = %v", tt.body, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("DecodeEmbed(%s) = %+v, want %+v", tt.body, got, tt.want)
			}
		})
	}
}

func TestDecodeEmbedErrors(t *testing.T) {
	rows := append(codectest.CommonErrorRows("inputs"), codectest.IDRows("inputs")...)
	codectest.CheckErrors(t, rows, codectest.Validated(Codec{}.DecodeEmbed), nil)
}

func TestAppendEmbed(t *testing.T) {
	res := &gateway.EmbedResult{Embeddings: [][]float32{{0.25, -0.5}, {1, 0}, {3e-8, 2}}}
	got, err := Codec{}.AppendEmbed(nil, res, nil, "m")
	if err != nil {
		t.Fatal(err)
	}
	if want := `[[0.25,-0.5],[1,0],[3e-08,2]]`; string(got) != want {
		t.Errorf("AppendEmbed = %s, want %s", got, want)
	}
}

func TestErrorResponse(t *testing.T) {
	got := errorBody(Codec{}.ErrorResponse(gateway.Errorf(gateway.Validation, "inputs[0][1]", "token id out of range")))
	if want := `{"error":"inputs[0][1]: token id out of range","error_type":"Validation"}`; got != want {
		t.Errorf("ErrorResponse = %s, want %s", got, want)
	}
}

func TestDecodeTokenize(t *testing.T) {
	tests := []struct {
		name string
		body string
		want *gateway.TokenizeRequest
	}{
		{"string", `{"inputs":"a b"}`, &gateway.TokenizeRequest{Inputs: []string{"a b"}, AddSpecialTokens: true, Truncate: true}},
		{"list", `{"inputs":["a","b"]}`, &gateway.TokenizeRequest{Inputs: []string{"a", "b"}, AddSpecialTokens: true, Truncate: true}},
		{"no special tokens", `{"inputs":"a","add_special_tokens":false}`, &gateway.TokenizeRequest{Inputs: []string{"a"}, Truncate: true}},
		{"prompt", `{"inputs":"a","prompt_name":"query","add_special_tokens":null}`, &gateway.TokenizeRequest{Inputs: []string{"a"}, AddSpecialTokens: true, PromptName: "query", Truncate: true}},
		{"no truncation, from the left", `{"inputs":"a","truncate":false,"truncation_direction":"left"}`,
			&gateway.TokenizeRequest{Inputs: []string{"a"}, AddSpecialTokens: true, Direction: gateway.Left}},
		{"model", `{"inputs":"a","model":"e5"}`, &gateway.TokenizeRequest{Inputs: []string{"a"}, AddSpecialTokens: true, Truncate: true, Model: "e5"}},
		{"model null", `{"inputs":"a","model":null}`, &gateway.TokenizeRequest{Inputs: []string{"a"}, AddSpecialTokens: true, Truncate: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeTokenize([]byte(tt.body), codectest.Limits())
			if err != nil {
				t.Fatalf("DecodeTokenize(%s) error = %v", tt.body, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("DecodeTokenize(%s) = %+v, want %+v", tt.body, got, tt.want)
			}
		})
	}
}

func TestDecodeTokenizeErrors(t *testing.T) {
	rows := []codectest.ErrorRow{
		{Name: "malformed", Body: `{"inputs":`, Kind: gateway.Malformed},
		{Name: "missing", Body: `{}`, Kind: gateway.Validation, Param: "inputs"},
		{Name: "empty", Body: `{"inputs":[]}`, Kind: gateway.Empty, Param: "inputs"},
		{Name: "empty string", Body: `{"inputs":""}`, Kind: gateway.Empty, Param: "inputs"},
		{Name: "ids", Body: `{"inputs":[1,2]}`, Kind: gateway.Validation, Param: "inputs[0]"},
		{Name: "too many", Body: `{"inputs":["a","b","c","d"]}`, Kind: gateway.Validation, Param: "inputs"},
		{Name: "add_special_tokens string", Body: `{"inputs":"a","add_special_tokens":"no"}`, Kind: gateway.Validation, Param: "add_special_tokens"},
		{Name: "model number", Body: `{"inputs":"a","model":7}`, Kind: gateway.Validation, Param: "model"},
	}
	codectest.CheckErrors(t, rows, func(b []byte) error {
		req, err := DecodeTokenize(b, codectest.Limits())
		if err != nil {
			return err
		}
		return req.Validate(codectest.Limits())
	}, nil)
}

func TestAppendTokens(t *testing.T) {
	toks := [][]gateway.Token{
		{{ID: 101, Text: "[CLS]", Special: true}, {ID: 7592, Text: "hello", Start: 0, Stop: 5}, {ID: 102, Text: "[SEP]", Special: true}},
		{{ID: 1, Text: `"q"`, Start: 0, Stop: 3}},
	}
	got := AppendTokens(nil, toks)
	want := `[[{"id":101,"text":"[CLS]","special":true,"start":0,"stop":0},{"id":7592,"text":"hello","special":false,"start":0,"stop":5},` +
		`{"id":102,"text":"[SEP]","special":true,"start":0,"stop":0}],[{"id":1,"text":"\"q\"","special":false,"start":0,"stop":3}]]`
	if string(got) != want {
		t.Errorf("AppendTokens = %s, want %s", got, want)
	}
}

func TestEncodeInfo(t *testing.T) {
	tiny := gateway.Info{ModelID: "tiny", Revision: "main", Pooling: "mean", Dimensions: 8, MaxInputLength: 16, MaxClientBatch: 3, Backend: "onnx", Version: "dev",
		Name: "tiny-bert", Aliases: []string{"text-embedding-3-small"}, State: "ready", Task: gateway.TaskEmbed}
	other := gateway.Info{ModelID: "/models/e5", Dimensions: 384, MaxInputLength: 512, Backend: "triton", Name: "e5", State: "loading", Task: gateway.TaskEmbed}
	rr := gateway.Info{ModelID: "BAAI/bge-reranker-base", MaxInputLength: 512, Backend: "triton", Name: "rr", State: "ready", Task: gateway.TaskRerank}
	b, err := EncodeInfo(tiny, []gateway.Info{tiny, other, rr})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"model_id": "tiny", "model_sha": "main", "dimensions": 8.0, "max_input_length": 16.0, "max_client_batch_size": 3.0, "backend": "onnx", "version": "dev"} {
		if got[k] != want {
			t.Errorf("EncodeInfo()[%q] = %v, want %v", k, got[k], want)
		}
	}
	if p := got["model_type"].(map[string]any)["embedding"].(map[string]any)["pooling"]; p != "mean" {
		t.Errorf("EncodeInfo() pooling = %v, want mean", p)
	}
	models, _ := json.Marshal(got["models"])
	want := `[{"aliases":["text-embedding-3-small"],"backend":"onnx","dimensions":8,"max_input_length":16,"model_id":"tiny","name":"tiny-bert","state":"ready","task":"embed"},` +
		`{"aliases":[],"backend":"triton","dimensions":384,"max_input_length":512,"model_id":"/models/e5","name":"e5","state":"loading","task":"embed"},` +
		`{"aliases":[],"backend":"triton","dimensions":0,"max_input_length":512,"model_id":"BAAI/bge-reranker-base","name":"rr","state":"ready","task":"rerank"}]`
	if string(models) != want {
		t.Errorf("EncodeInfo() models = %s, want %s", models, want)
	}
	b, err = EncodeInfo(rr, nil)
	if err != nil || !strings.Contains(string(b), `"model_type":{"reranker":{}}`) {
		t.Errorf("EncodeInfo(reranker) = %s, %v; want model_type reranker", b, err)
	}
}

func FuzzDecode(f *testing.F) {
	for _, r := range append(codectest.CommonErrorRows("inputs"), codectest.IDRows("inputs")...) {
		f.Add([]byte(r.Body))
	}
	f.Add([]byte(`{"inputs":[[101,102],"x"],"truncation_direction":"Left","dimensions":3}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		lim := codectest.Limits()
		req, err := Codec{}.DecodeEmbed(body, lim)
		if err != nil {
			var ge *gateway.Error
			if !errors.As(err, &ge) {
				t.Fatalf("DecodeEmbed(%q) error = %v (%T), want a *gateway.Error", body, err, err)
			}
			return
		}
		if err := req.Validate(lim); err != nil {
			var ge *gateway.Error
			if !errors.As(err, &ge) {
				t.Fatalf("Validate(%q) error = %v (%T), want a *gateway.Error", body, err, err)
			}
			return
		}
		if len(req.Inputs) == 0 || len(req.Inputs) > lim.MaxClientBatch {
			t.Fatalf("DecodeEmbed(%q) = %d inputs", body, len(req.Inputs))
		}
		for i, in := range req.Inputs {
			if (in.IsIDs && len(in.IDs) == 0) || (!in.IsIDs && in.Text == "") {
				t.Fatalf("DecodeEmbed(%q) input %d empty", body, i)
			}
			for _, id := range in.IDs {
				if id < 0 {
					t.Fatalf("DecodeEmbed(%q) input %d has id %d", body, i, id)
				}
			}
		}
		if _, err := DecodeTokenize(body, lim); err != nil && gateway.KindOf(err) == gateway.Internal {
			t.Fatalf("DecodeTokenize(%q) error = %v, want a client error", body, err)
		}
	})
}

func errorBody(_ int, body []byte) string { return string(body) }
