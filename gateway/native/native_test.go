package native

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/native/codectest"
)

var testLimits = codectest.Limits()

func text(s ...string) []gateway.Input {
	in := make([]gateway.Input, len(s))
	for i, x := range s {
		in[i] = gateway.Input{Text: x}
	}
	return in
}

func TestDecodeEmbed(t *testing.T) {
	def := func(in []gateway.Input) *gateway.EmbedRequest {
		return &gateway.EmbedRequest{Inputs: in, Truncate: true, Normalize: true}
	}
	with := func(r *gateway.EmbedRequest, f func(*gateway.EmbedRequest)) *gateway.EmbedRequest { f(r); return r }
	tests := []struct {
		name string
		body string
		lim  gateway.Limits
		want *gateway.EmbedRequest
	}{
		{"string", `{"inputs":"hello"}`, testLimits, def(text("hello"))},
		{"list", `{"inputs":["a","b","c"]}`, testLimits, def(text("a", "b", "c"))},
		{"escapes", `{"inputs":["a\"b\\c\u00e9\n"]}`, testLimits, def(text("a\"b\\c\u00e9\n"))},
		{"utf8", `{"inputs":"héllo 世界"}`, testLimits, def(text("héllo 世界"))},
		{"whitespace", "{ \"inputs\" : [ \"a\" ,\n\t\"b\" ] }", testLimits, def(text("a", "b"))},
		{"unknown fields ignored", `{"inputs":"a","extra":{"k":[1,2]}}`, testLimits, def(text("a"))},
		{"model", `{"inputs":"a","model":"BAAI/bge-small-en-v1.5"}`, testLimits, with(def(text("a")), func(r *gateway.EmbedRequest) { r.Model = "BAAI/bge-small-en-v1.5" })},
		{"model null is default", `{"inputs":"a","model":null}`, testLimits, def(text("a"))},
		{"model empty is default", `{"inputs":"a","model":""}`, testLimits, def(text("a"))},
		{"truncate false", `{"inputs":"a","truncate":false}`, testLimits, with(def(text("a")), func(r *gateway.EmbedRequest) { r.Truncate = false })},
		{"truncate default from limits", `{"inputs":"a"}`, gateway.Limits{MaxClientBatch: 3, Dimensions: 8}, with(def(text("a")), func(r *gateway.EmbedRequest) { r.Truncate = false })},
		{"truncate null is default", `{"inputs":"a","truncate":null}`, testLimits, def(text("a"))},
		{"direction Left", `{"inputs":"a","truncation_direction":"Left"}`, testLimits, with(def(text("a")), func(r *gateway.EmbedRequest) { r.Direction = gateway.Left })},
		{"direction left lower", `{"inputs":"a","truncation_direction":"left"}`, testLimits, with(def(text("a")), func(r *gateway.EmbedRequest) { r.Direction = gateway.Left })},
		{"direction RIGHT", `{"inputs":"a","truncation_direction":"RIGHT"}`, testLimits, def(text("a"))},
		{"direction null", `{"inputs":"a","truncation_direction":null}`, testLimits, def(text("a"))},
		{"prompt_name", `{"inputs":"a","prompt_name":"query"}`, testLimits, with(def(text("a")), func(r *gateway.EmbedRequest) { r.PromptName = "query" })},
		{"prompt_name null", `{"inputs":"a","prompt_name":null}`, testLimits, def(text("a"))},
		{"normalize false", `{"inputs":"a","normalize":false}`, testLimits, with(def(text("a")), func(r *gateway.EmbedRequest) { r.Normalize = false })},
		{"dimensions", `{"inputs":"a","dimensions":4}`, testLimits, with(def(text("a")), func(r *gateway.EmbedRequest) { r.Dimensions = 4 })},
		{"dimensions max", `{"inputs":"a","dimensions":8}`, testLimits, with(def(text("a")), func(r *gateway.EmbedRequest) { r.Dimensions = 8 })},
		{"dimensions null", `{"inputs":"a","dimensions":null}`, testLimits, def(text("a"))},
		{"batch at limit", `{"inputs":["a","b","c"]}`, testLimits, def(text("a", "b", "c"))},
		{"no batch limit", `{"inputs":["a","b","c","d"]}`, gateway.Limits{Dimensions: 8, DefaultTruncate: true}, def(text("a", "b", "c", "d"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Codec{}.DecodeEmbed([]byte(tt.body), tt.lim)
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
	rows := append(codectest.CommonErrorRows("inputs"),
		codectest.ErrorRow{Name: "ids rejected", Body: `{"inputs":[1,2]}`, Kind: gateway.Validation, Param: "inputs"},
		codectest.ErrorRow{Name: "id lists rejected", Body: `{"inputs":["a",[1,2]]}`, Kind: gateway.Validation, Param: "inputs[1]"},
	)
	codectest.CheckErrors(t, rows, codectest.Validated(Codec{}.DecodeEmbed), nil)
}

func TestInputsIDs(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []gateway.Input
	}{
		{"one id list", `[1, 2,3]`, []gateway.Input{{IDs: []int32{1, 2, 3}, IsIDs: true}}},
		{"max id", `[2147483647]`, []gateway.Input{{IDs: []int32{2147483647}, IsIDs: true}}},
		{"zero", `[0]`, []gateway.Input{{IDs: []int32{0}, IsIDs: true}}},
		{"lists", `[[1],[2,3]]`, []gateway.Input{{IDs: []int32{1}, IsIDs: true}, {IDs: []int32{2, 3}, IsIDs: true}}},
		{"mixed", `["a",[2,3]]`, []gateway.Input{{Text: "a"}, {IDs: []int32{2, 3}, IsIDs: true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var in Inputs
			if err := json.Unmarshal([]byte(tt.body), &in); err != nil {
				t.Fatalf("Unmarshal(%s) error = %v", tt.body, err)
			}
			if !in.Set || !reflect.DeepEqual(in.List, tt.want) {
				t.Errorf("Unmarshal(%s) = %+v, want %+v", tt.body, in.List, tt.want)
			}
		})
	}
}

func TestInputsStringsMatchEncodingJSON(t *testing.T) {
	for _, s := range []string{`"plain"`, `"\u00e9\ud83d\ude00"`, `"\/\b\f"`, "\"bad \xff utf8\"", `"tab\tnl\n"`} {
		var in Inputs
		var want string
		if err := json.Unmarshal([]byte(s), &in); err != nil {
			t.Fatalf("Unmarshal(%s) error = %v", s, err)
		}
		if err := json.Unmarshal([]byte(s), &want); err != nil {
			t.Fatal(err)
		}
		if got := in.List[0].Text; got != want {
			t.Errorf("Unmarshal(%s) = %q, want %q", s, got, want)
		}
	}
}

func TestAppendEmbed(t *testing.T) {
	res := &gateway.EmbedResult{
		Embeddings: [][]float32{{0.5, -1, 1e-7}, {0, 3.25, 100}},
		Usage:      gateway.Usage{PromptTokens: 7, Characters: 12},
		Timings:    gateway.Timings{Tokenization: 120 * time.Microsecond, Queue: 2 * time.Millisecond, Inference: 35 * time.Millisecond},
		Cached:     1,
	}
	got, err := Codec{}.AppendEmbed(nil, res, nil, "m")
	if err != nil {
		t.Fatal(err)
	}
	want := `{"data":[{"embedding":[0.5,-1,1e-07],"index":0},{"embedding":[0,3.25,100],"index":1}],` +
		`"usage":{"prompt_tokens":7,"total_tokens":7},"timings":{"tokenization":"120µs","queue":"2ms","inference":"35ms","cached":1}}`
	if string(got) != want {
		t.Errorf("AppendEmbed = %s, want %s", got, want)
	}
	if !json.Valid(got) {
		t.Errorf("AppendEmbed = %s, not valid JSON", got)
	}
}

func TestAppendFloatsRoundTrip(t *testing.T) {
	v := []float32{0.1, -0.333333, 1.17549435e-38, 3.4028235e38, 1e-45, 0, 123456.78}
	b, err := AppendFloats(nil, v)
	if err != nil {
		t.Fatal(err)
	}
	var got []float32
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("Unmarshal(%s) error = %v", b, err)
	}
	if !reflect.DeepEqual(got, v) {
		t.Errorf("round trip = %v, want %v", got, v)
	}
}

func TestAppendFloatsNonFinite(t *testing.T) {
	nan := float32(0)
	nan /= nan
	if _, err := AppendFloats(nil, []float32{1, nan}); gateway.KindOf(err) != gateway.Internal {
		t.Errorf("AppendFloats(NaN) error = %v, want Internal", err)
	}
}

func TestAppendString(t *testing.T) {
	for _, s := range []string{"", "plain", `q"b\s`, "ctl\x00\x01\x1f\n\r\t", "héllo 世界", "bad\xffutf8", "<html>&"} {
		b := AppendString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("AppendString(%q) = %s: %v", s, b, err)
		}
		want := s
		if s == "bad\xffutf8" {
			want = "bad\ufffdutf8"
		}
		if got != want {
			t.Errorf("AppendString(%q) decodes to %q, want %q", s, got, want)
		}
	}
}

func TestErrorResponse(t *testing.T) {
	tests := []struct {
		name string
		err  *gateway.Error
		want string
	}{
		{"with param", gateway.Errorf(gateway.Empty, "inputs[1]", "empty input"), `{"error":"inputs[1]: empty input","error_type":"Empty"}`},
		{"malformed is Validation", gateway.Errorf(gateway.Malformed, "", "malformed JSON"), `{"error":"malformed JSON","error_type":"Validation"}`},
		{"cause hidden", &gateway.Error{Kind: gateway.Backend, Msg: "inference failed", Err: errors.New("secret detail")}, `{"error":"inference failed","error_type":"Backend"}`},
		{"overloaded", &gateway.Error{Kind: gateway.Overloaded, Msg: "model is overloaded"}, `{"error":"model is overloaded","error_type":"Overloaded"}`},
		{"unknown model", gateway.UnknownModel("e5"), "{\"error\":\"The model `e5` does not exist or you do not have access to it.\",\"error_type\":\"NotFound\"}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errorBody(Codec{}.ErrorResponse(tt.err)); got != tt.want {
				t.Errorf("ErrorResponse(%v) = %s, want %s", tt.err, got, tt.want)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	for _, r := range codectest.CommonErrorRows("inputs") {
		f.Add([]byte(r.Body))
	}
	for _, r := range codectest.IDRows("inputs") {
		f.Add([]byte(r.Body))
	}
	f.Add([]byte(`{"inputs":["a","b"],"truncate":false,"truncation_direction":"left","normalize":true,"dimensions":4,"prompt_name":"q"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := Codec{}.DecodeEmbed(body, testLimits)
		if err != nil {
			var ge *gateway.Error
			if !errors.As(err, &ge) {
				t.Fatalf("DecodeEmbed(%q) error = %v (%T), want a *gateway.Error", body, err, err)
			}
			return
		}
		if err := req.Validate(testLimits); err != nil {
			var ge *gateway.Error
			if !errors.As(err, &ge) {
				t.Fatalf("Validate(%q) error = %v (%T), want a *gateway.Error", body, err, err)
			}
			return
		}
		if len(req.Inputs) == 0 || len(req.Inputs) > testLimits.MaxClientBatch {
			t.Fatalf("DecodeEmbed(%q) = %d inputs, want 1..%d", body, len(req.Inputs), testLimits.MaxClientBatch)
		}
		for i, in := range req.Inputs {
			if in.IsIDs || in.Text == "" {
				t.Fatalf("DecodeEmbed(%q) input %d = %+v, want non-empty text", body, i, in)
			}
		}
		if req.Dimensions < 0 || req.Dimensions > testLimits.Dimensions {
			t.Fatalf("DecodeEmbed(%q) dimensions = %d", body, req.Dimensions)
		}
	})
}

func errorBody(_ int, body []byte) string { return string(body) }
