package catalog

import (
	"strings"
	"testing"
)

func valid() Entry {
	return Entry{Name: "bge", ModelID: "BAAI/bge-small-en-v1.5"}
}

// wantProblems checks err holds exactly one line per want, each containing
// its substring, in order.
func wantProblems(t *testing.T, what string, err error, want []string) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Errorf("%s = %v, want nil", what, err)
		}
		return
	}
	if err == nil {
		t.Fatalf("%s = nil, want %q", what, want)
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) > 1 && strings.HasSuffix(lines[0], "problems:") {
		lines = lines[1:]
	}
	if len(lines) != len(want) {
		t.Errorf("%s = %d problems:\n%s\nwant %d: %q", what, len(lines), err, len(want), want)
		return
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("%s problem %d = %q, want it to contain %q", what, i, lines[i], w)
		}
	}
}

func TestEntryCheck(t *testing.T) {
	tests := []struct {
		name   string
		change func(e *Entry)
		want   []string
	}{
		{"minimal", func(e *Entry) {}, nil},
		{"everything", func(e *Entry) {
			*e = Entry{Name: "e5", Aliases: []string{"text-embedding-3-small", "e5-small"}, ModelID: "./e5", Revision: "v1",
				Backend: "onnx", ONNXFile: "onnx/model_qint8.onnx", Pooling: "mean", Prompts: map[string]string{"query": "query: ", "document": ""},
				DefaultPromptName: "query", Task: "embed", MaxBatchTokens: 8192, MaxBatchRequests: 16, MaxInputLength: 256}
		}, nil},
		{"triton fields", func(e *Entry) { e.Backend, e.TritonModel, e.TritonURL = "triton", "bge-trt", "triton:8001" }, nil},
		{"name with slash", func(e *Entry) { e.Name = "BAAI/bge-small-en-v1.5" }, nil},
		{"no name", func(e *Entry) { e.Name = "" }, []string{"name is empty"}},
		{"name with space", func(e *Entry) { e.Name = "bge small" }, []string{`name "bge small" contains whitespace`}},
		{"name with tab", func(e *Entry) { e.Name = "bge\tsmall" }, []string{"contains whitespace"}},
		{"name with control", func(e *Entry) { e.Name = "bge\x00" }, []string{"contains a control character"}},
		{"name not utf-8", func(e *Entry) { e.Name = "bge\xff" }, []string{"is not valid UTF-8"}},
		{"no model id", func(e *Entry) { e.ModelID = "" }, []string{"model_id is required"}},
		{"blank model id", func(e *Entry) { e.ModelID = "  " }, []string{"model_id is required"}},
		{"padded model id", func(e *Entry) { e.ModelID = " BAAI/bge " }, []string{"leading or trailing spaces"}},
		{"unknown backend", func(e *Entry) { e.Backend = "tensorrt" }, []string{`backend "tensorrt" is not one of onnx, triton`}},
		{"onnx_file with triton", func(e *Entry) { e.Backend, e.ONNXFile = "triton", "model.onnx" },
			[]string{`onnx_file is only for backend onnx (backend is "triton")`}},
		{"onnx_file without backend", func(e *Entry) { e.ONNXFile = "model.onnx" }, []string{`onnx_file is only for backend onnx (backend is "")`}},
		{"onnx_file absolute", func(e *Entry) { e.Backend, e.ONNXFile = "onnx", "/etc/model.onnx" },
			[]string{"must be a relative path inside the model directory"}},
		{"onnx_file escapes", func(e *Entry) { e.Backend, e.ONNXFile = "onnx", "../other/model.onnx" },
			[]string{"must be a relative path inside the model directory"}},
		{"triton fields with onnx", func(e *Entry) { e.Backend, e.TritonModel, e.TritonURL = "onnx", "bge", "triton:8001" },
			[]string{"triton_model is only for backend triton", "triton_url is only for backend triton"}},
		{"unknown pooling", func(e *Entry) { e.Pooling = "max" }, []string{`pooling "max" is not one of cls, mean, last-token`}},
		{"unknown task", func(e *Entry) { e.Task = "classify" }, []string{`task "classify" is not one of embed, rerank`}},
		{"rerank with pooling", func(e *Entry) { e.Task, e.Pooling = "rerank", "cls" }, []string{"pooling is for embedding models: a rerank model has none"}},
		{"rerank with prompts", func(e *Entry) { e.Task, e.Prompts, e.DefaultPromptName = "rerank", map[string]string{"q": "q: "}, "q" },
			[]string{"default_prompt_name is for embedding models", "prompts are for embedding models"}},
		{"negative numbers", func(e *Entry) { e.MaxBatchTokens, e.MaxBatchRequests, e.MaxInputLength = -1, -2, -3 },
			[]string{"max_batch_tokens must be >= 0", "max_batch_requests must be >= 0", "max_input_length must be >= 0 (0 = the default), got -3"}},
		{"empty alias", func(e *Entry) { e.Aliases = []string{"a", ""} }, []string{"aliases[1] is empty"}},
		{"alias with space", func(e *Entry) { e.Aliases = []string{"text embedding"} }, []string{`aliases[0] "text embedding" contains whitespace`}},
		{"alias is name", func(e *Entry) { e.Aliases = []string{"bge"} }, []string{`alias "bge" is the model's name`}},
		{"alias twice", func(e *Entry) { e.Aliases = []string{"a", "b", "a"} }, []string{`alias "a" is listed twice`}},
		{"empty prompt name", func(e *Entry) { e.Prompts = map[string]string{"": "x", "q": "q: "} }, []string{"prompts: a prompt has an empty name"}},
		{"every problem", func(e *Entry) {
			*e = Entry{Name: "a b", Aliases: []string{"a b"}, Backend: "x", Pooling: "max", Task: "classify", MaxInputLength: -1}
		}, []string{"name", "aliases[0]", "model_id", "backend", "pooling", "task", "max_input_length"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := valid()
			tt.change(&e)
			wantProblems(t, "Check()", e.Check(), tt.want)
		})
	}
}

func TestCheckName(t *testing.T) {
	for name, ok := range map[string]bool{
		"bge": true, "BAAI/bge-small-en-v1.5": true, "text-embedding-3-small": true, "模型": true, "e5:v2": true,
		"": false, "a b": false, " a": false, "a\n": false, "a\u00a0b": false, "a\x7f": false, "\xc3": false,
	} {
		if err := CheckName(name); (err == nil) != ok {
			t.Errorf("CheckName(%q) = %v, want ok %v", name, err, ok)
		}
	}
	if err := CheckName("a b"); err == nil || err.Error() != `model name "a b" contains whitespace` {
		t.Errorf("CheckName(a b) = %v", err)
	}
}

func TestEqual(t *testing.T) {
	base := Entry{Name: "e5", Aliases: []string{"x"}, ModelID: "./e5", Prompts: map[string]string{"q": "query: "}, Source: "file a.yaml"}
	tests := []struct {
		name   string
		change func(e *Entry)
		want   bool
	}{
		{"same", func(e *Entry) {}, true},
		{"other source", func(e *Entry) { e.Source = "triton t:8001" }, true},
		{"other alias", func(e *Entry) { e.Aliases = []string{"y"} }, false},
		{"more aliases", func(e *Entry) { e.Aliases = []string{"x", "y"} }, false},
		{"alias order", func(e *Entry) { e.Aliases = []string{"y", "x"} }, false},
		{"other prompt", func(e *Entry) { e.Prompts = map[string]string{"q": "q: "} }, false},
		{"other revision", func(e *Entry) { e.Revision = "v2" }, false},
		{"other batch", func(e *Entry) { e.MaxBatchTokens = 1 }, false},
		{"other url", func(e *Entry) { e.TritonURL = "t:8001" }, false},
	}
	for _, tt := range tests {
		o := base
		o.Aliases = append([]string(nil), base.Aliases...)
		o.Prompts = map[string]string{"q": "query: "}
		tt.change(&o)
		if got := base.Equal(o); got != tt.want {
			t.Errorf("%s: Equal = %v, want %v", tt.name, got, tt.want)
		}
		if got := o.Equal(base); got != tt.want {
			t.Errorf("%s: Equal reversed = %v, want %v", tt.name, got, tt.want)
		}
	}
	nilMaps := Entry{Name: "a", ModelID: "m"}
	empty := Entry{Name: "a", ModelID: "m", Aliases: []string{}, Prompts: map[string]string{}}
	if !nilMaps.Equal(empty) || !empty.Equal(nilMaps) {
		t.Errorf("nil and empty aliases/prompts are not Equal")
	}
}

func TestNames(t *testing.T) {
	e := Entry{Name: "a", Aliases: []string{"b", "c"}}
	if got := strings.Join(e.Names(), ","); got != "a,b,c" {
		t.Errorf("Names() = %s, want a,b,c", got)
	}
	// Names must not write into the entry's own Aliases array.
	aliases := make([]string, 1, 4)
	aliases[0] = "b"
	e = Entry{Name: "a", Aliases: aliases}
	n := e.Names()
	n[1] = "changed"
	if e.Aliases[0] != "b" {
		t.Errorf("Names() shares the Aliases array")
	}
}
