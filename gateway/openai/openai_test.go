package openai

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/native/codectest"
)

func TestDecodeEmbed(t *testing.T) {
	ids := func(v ...int32) gateway.Input { return gateway.Input{IDs: v, IsIDs: true} }
	base := func(in ...gateway.Input) *gateway.EmbedRequest {
		return &gateway.EmbedRequest{Inputs: in, Truncate: true, Normalize: true}
	}
	tests := []struct {
		name string
		body string
		want *gateway.EmbedRequest
	}{
		{"string", `{"input":"a"}`, base(gateway.Input{Text: "a"})},
		{"model", `{"input":"a","model":"text-embedding-3-small"}`, &gateway.EmbedRequest{Inputs: []gateway.Input{{Text: "a"}}, Truncate: true, Normalize: true, Model: "text-embedding-3-small"}},
		{"list", `{"input":["a","b"]}`, base(gateway.Input{Text: "a"}, gateway.Input{Text: "b"})},
		{"ids", `{"input":[1,2]}`, base(ids(1, 2))},
		{"id lists", `{"input":[[1],[2,3]]}`, base(ids(1), ids(2, 3))},
		{"float", `{"input":"a","encoding_format":"float"}`, base(gateway.Input{Text: "a"})},
		{"format null", `{"input":"a","encoding_format":null}`, base(gateway.Input{Text: "a"})},
		{"base64", `{"input":"a","encoding_format":"base64"}`, &gateway.EmbedRequest{Inputs: []gateway.Input{{Text: "a"}}, Truncate: true, Normalize: true, Base64: true}},
		{"dimensions", `{"input":"a","dimensions":8}`, &gateway.EmbedRequest{Inputs: []gateway.Input{{Text: "a"}}, Truncate: true, Normalize: true, Dimensions: 8}},
		{"user and model", `{"input":"a","user":"u-1","model":null}`, base(gateway.Input{Text: "a"})},
		{"extra fields", `{"input":"a","truncate":false,"prompt_name":"query","truncation_direction":"left"}`,
			&gateway.EmbedRequest{Inputs: []gateway.Input{{Text: "a"}}, Normalize: true, PromptName: "query", Direction: gateway.Left}},
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
	rows := append(codectest.CommonErrorRows("input"), codectest.IDRows("input")...)
	rows = append(rows,
		codectest.ErrorRow{Name: "inputs is not input", Body: `{"inputs":"a"}`, Kind: gateway.Validation, Param: "input"},
		codectest.ErrorRow{Name: "format unknown", Body: `{"input":"a","encoding_format":"int8"}`, Kind: gateway.Validation, Param: "encoding_format"},
		codectest.ErrorRow{Name: "format case", Body: `{"input":"a","encoding_format":"Float"}`, Kind: gateway.Validation, Param: "encoding_format"},
		codectest.ErrorRow{Name: "format number", Body: `{"input":"a","encoding_format":1}`, Kind: gateway.Validation, Param: "encoding_format"},
		codectest.ErrorRow{Name: "user object", Body: `{"input":"a","user":{}}`, Kind: gateway.Validation, Param: "user"},
	)
	codectest.CheckErrors(t, rows, codectest.Validated(Codec{}.DecodeEmbed), Param)
}

func TestAppendEmbedFloat(t *testing.T) {
	res := &gateway.EmbedResult{Embeddings: [][]float32{{0.5, -1}, {2, 0.125}}, Usage: gateway.Usage{PromptTokens: 5}}
	got, err := Codec{}.AppendEmbed(nil, res, &gateway.EmbedRequest{}, "tiny-bert")
	if err != nil {
		t.Fatal(err)
	}
	want := `{"object":"list","data":[{"object":"embedding","embedding":[0.5,-1],"index":0},{"object":"embedding","embedding":[2,0.125],"index":1}],` +
		`"model":"tiny-bert","usage":{"prompt_tokens":5,"total_tokens":5}}`
	if string(got) != want {
		t.Errorf("AppendEmbed = %s, want %s", got, want)
	}
}

// response is the OpenAI wire format, field by field.
type response struct {
	Object string `json:"object"`
	Data   []struct {
		Object    string `json:"object"`
		Embedding string `json:"embedding"`
		Index     int    `json:"index"`
	} `json:"data"`
	Model string `json:"model"`
	Usage struct {
		PromptTokens int `json:"prompt_tokens"`
		TotalTokens  int `json:"total_tokens"`
	} `json:"usage"`
}

func TestAppendEmbedBase64RoundTrip(t *testing.T) {
	vecs := [][]float32{{0.1, -0.2, 3.5, float32(math.SmallestNonzeroFloat32)}, {1, 0, -0, math.MaxFloat32}, {42}}
	res := &gateway.EmbedResult{Embeddings: vecs, Usage: gateway.Usage{PromptTokens: 9}}
	req, err := Codec{}.DecodeEmbed([]byte(`{"input":["a","b","c"],"encoding_format":"base64"}`), codectest.Limits())
	if err != nil {
		t.Fatal(err)
	}
	b, err := Codec{}.AppendEmbed(nil, res, req, "m")
	if err != nil {
		t.Fatal(err)
	}
	var got response
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("Unmarshal(%s) error = %v", b, err)
	}
	if got.Object != "list" || got.Model != "m" || got.Usage.PromptTokens != 9 || got.Usage.TotalTokens != 9 || len(got.Data) != len(vecs) {
		t.Fatalf("AppendEmbed = %s, want list of %d for model m with 9 tokens", b, len(vecs))
	}
	for i, d := range got.Data {
		if d.Index != i || d.Object != "embedding" {
			t.Errorf("data[%d] = index %d object %q, want index %d object embedding", i, d.Index, d.Object, i)
		}
		raw, err := base64.StdEncoding.DecodeString(d.Embedding)
		if err != nil {
			t.Fatalf("data[%d] base64: %v", i, err)
		}
		v := make([]float32, len(raw)/4)
		for j := range v {
			v[j] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*j:]))
		}
		if !reflect.DeepEqual(v, vecs[i]) {
			t.Errorf("data[%d] decodes to %v, want %v", i, v, vecs[i])
		}
	}
}

func TestErrorResponse(t *testing.T) {
	tests := []struct {
		name string
		err  *gateway.Error
		want string
	}{
		{"validation", gateway.Errorf(gateway.Validation, "input[2]", "empty input"),
			`{"error":{"message":"input[2]: empty input","type":"invalid_request_error","param":"input[2]","code":null}}`},
		{"malformed", gateway.Errorf(gateway.Malformed, "", "malformed JSON"),
			`{"error":{"message":"malformed JSON","type":"invalid_request_error","param":null,"code":null}}`},
		{"unauthorized", gateway.Errorf(gateway.Unauthorized, "", "invalid api key"),
			`{"error":{"message":"invalid api key","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`},
		{"rate limited", gateway.Errorf(gateway.RateLimited, "", "rate limit exceeded"),
			`{"error":{"message":"rate limit exceeded","type":"requests","param":null,"code":"rate_limit_exceeded"}}`},
		{"overloaded", gateway.Errorf(gateway.Overloaded, "", "full"),
			`{"error":{"message":"full","type":"server_overloaded","param":null,"code":null}}`},
		{"unhealthy", gateway.Errorf(gateway.Unhealthy, "", "down"),
			`{"error":{"message":"down","type":"server_error","param":null,"code":null}}`},
		{"timeout", gateway.Errorf(gateway.Timeout, "", "late"),
			`{"error":{"message":"late","type":"timeout","param":null,"code":null}}`},
		{"backend", &gateway.Error{Kind: gateway.Backend, Msg: "inference failed", Err: errors.New("hidden")},
			`{"error":{"message":"inference failed","type":"server_error","param":null,"code":null}}`},
		{"not found", gateway.Errorf(gateway.NotFound, "", "no route"),
			`{"error":{"message":"no route","type":"invalid_request_error","param":null,"code":null}}`},
		{"unknown model", gateway.UnknownModel("e5"),
			"{\"error\":{\"message\":\"The model `e5` does not exist or you do not have access to it.\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":\"model_not_found\"}}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errorBody(Codec{}.ErrorResponse(tt.err)); got != tt.want {
				t.Errorf("ErrorResponse(%v) = %s, want %s", tt.err, got, tt.want)
			}
		})
	}
}

// The 404 for a model that is not served is byte for byte what OpenAI
// sends (testdata/model_not_found.json, as its API answers an embeddings
// request naming a model that does not exist), so the SDKs raise their
// NotFoundError with the same message and code.
func TestUnknownModelMatchesOpenAI(t *testing.T) {
	raw, err := os.ReadFile("testdata/model_not_found.json")
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	if err := json.Compact(&want, raw); err != nil {
		t.Fatal(err)
	}
	status, got := Codec{}.ErrorResponse(gateway.UnknownModel("text-embedding-4-large"))
	if status != 404 || string(got) != want.String() {
		t.Errorf("ErrorResponse(UnknownModel) = %d %s, want 404 %s", status, got, want.String())
	}
}

func TestEncodeModels(t *testing.T) {
	b, err := EncodeModels([]Listed{{"bge-small", "embed"}, {"text-embedding-3-small", "embed"}, {"BAAI/bge-reranker-base", "rerank"}}, 1700000000)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"object":"list","data":[{"id":"bge-small","object":"model","created":1700000000,"owned_by":"embedgate","task":"embed"},` +
		`{"id":"text-embedding-3-small","object":"model","created":1700000000,"owned_by":"embedgate","task":"embed"},` +
		`{"id":"BAAI/bge-reranker-base","object":"model","created":1700000000,"owned_by":"embedgate","task":"rerank"}]}`
	if string(b) != want {
		t.Errorf("EncodeModels = %s, want %s", b, want)
	}
	if b, _ := EncodeModels(nil, 1); string(b) != `{"object":"list","data":[]}` {
		t.Errorf("EncodeModels(nil) = %s, want an empty list", b)
	}
	b, err = EncodeModel(Listed{"BAAI/bge-m3", "embed"}, 1700000000)
	if want := `{"id":"BAAI/bge-m3","object":"model","created":1700000000,"owned_by":"embedgate","task":"embed"}`; err != nil || string(b) != want {
		t.Errorf("EncodeModel = %s, %v; want %s", b, err, want)
	}
}

func FuzzDecode(f *testing.F) {
	for _, r := range append(codectest.CommonErrorRows("input"), codectest.IDRows("input")...) {
		f.Add([]byte(r.Body))
	}
	f.Add([]byte(`{"input":[[1,2],"x"],"encoding_format":"base64","dimensions":3,"model":"m","user":"u"}`))
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
		}
	})
}

func benchResult(rows, dims int) *gateway.EmbedResult {
	res := &gateway.EmbedResult{Usage: gateway.Usage{PromptTokens: rows * 10}}
	for i := range rows {
		v := make([]float32, dims)
		for j := range v {
			v[j] = float32(math.Sin(float64(i*dims + j)))
		}
		res.Embeddings = append(res.Embeddings, v)
	}
	return res
}

func BenchmarkAppendEmbed(b *testing.B) {
	res := benchResult(32, 384)
	for _, bc := range []struct {
		name string
		req  *gateway.EmbedRequest
	}{{"float", &gateway.EmbedRequest{}}, {"base64", &gateway.EmbedRequest{Base64: true}}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			buf := make([]byte, 0, 256<<10)
			for b.Loop() {
				var err error
				if buf, err = (Codec{}).AppendEmbed(buf[:0], res, bc.req, "m"); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(32*384*b.N)/b.Elapsed().Seconds(), "floats/s")
		})
	}
}

func BenchmarkDecodeEmbed(b *testing.B) {
	body := []byte(`{"input":["` + strings.Repeat("the quick brown fox jumps over the lazy dog ", 20) + `","short one","another input"],"model":"m","encoding_format":"base64"}`)
	lim := gateway.Limits{MaxClientBatch: 2048, Dimensions: 384}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := (Codec{}).DecodeEmbed(body, lim); err != nil {
			b.Fatal(err)
		}
	}
}

func errorBody(_ int, body []byte) string { return string(body) }
