package catalog

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const goodYAML = `# two embedding models and a reranker
models:
  - name: bge-small
    aliases: [text-embedding-3-small, bge]
    model_id: BAAI/bge-small-en-v1.5
    backend: triton
    triton_model: bge-small-en-v1.5
    triton_url: triton:8001
  - name: e5
    model_id: ./multilingual-e5-small
    revision: v1
    backend: onnx
    onnx_file: onnx/model_qint8.onnx
    pooling: mean
    prompts:
      query: "query: "
      passage: "passage: "
    default_prompt_name: query
    task: embed
    max_batch_tokens: 8192
    max_batch_requests: 16
    max_input_length: 256
  - name: rerank
    model_id: BAAI/bge-reranker-base
    task: rerank
`

const goodJSON = `{"models": [
  {"name": "bge-small", "aliases": ["text-embedding-3-small", "bge"], "model_id": "BAAI/bge-small-en-v1.5",
   "backend": "triton", "triton_model": "bge-small-en-v1.5", "triton_url": "triton:8001"},
  {"name": "e5", "model_id": "./multilingual-e5-small", "revision": "v1", "backend": "onnx",
   "onnx_file": "onnx/model_qint8.onnx", "pooling": "mean", "prompts": {"query": "query: ", "passage": "passage: "},
   "default_prompt_name": "query", "task": "embed", "max_batch_tokens": 8192, "max_batch_requests": 16, "max_input_length": 256},
  {"name": "rerank", "model_id": "BAAI/bge-reranker-base", "task": "rerank"}
]}`

func goodEntries(source string) []Entry {
	return []Entry{
		{Name: "bge-small", Aliases: []string{"text-embedding-3-small", "bge"}, ModelID: "BAAI/bge-small-en-v1.5",
			Backend: "triton", TritonModel: "bge-small-en-v1.5", TritonURL: "triton:8001", Source: source},
		{Name: "e5", ModelID: "./multilingual-e5-small", Revision: "v1", Backend: "onnx", ONNXFile: "onnx/model_qint8.onnx",
			Pooling: "mean", Prompts: map[string]string{"query": "query: ", "passage": "passage: "}, DefaultPromptName: "query",
			Task: "embed", MaxBatchTokens: 8192, MaxBatchRequests: 16, MaxInputLength: 256, Source: source},
		{Name: "rerank", ModelID: "BAAI/bge-reranker-base", Task: "rerank", Source: source},
	}
}

func TestLoad(t *testing.T) {
	bareYAML := strings.ReplaceAll(strings.Replace(goodYAML, "models:\n", "", 1), "\n  ", "\n") // dedented
	bareJSON := strings.TrimSuffix(strings.TrimPrefix(goodJSON, `{"models": `), "}")
	for _, tt := range []struct{ name, file, content string }{
		{"yaml", "models.yaml", goodYAML},
		{"yml", "models.yml", goodYAML},
		{"yaml bare list", "models.yaml", bareYAML},
		{"json", "models.json", goodJSON},
		{"json bare list", "models.json", bareJSON},
		{"json by content", "models.conf", goodJSON},
		{"json list by content", "models", bareJSON},
		{"yaml by content", "models.conf", goodYAML},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, tt.file, tt.content)
			got, err := Load(path)
			if err != nil {
				t.Fatalf("Load: %v\n%s", err, tt.content)
			}
			if want := goodEntries("file " + path); !reflect.DeepEqual(got, want) {
				t.Errorf("Load = %+v\nwant %+v", got, want)
			}
		})
	}
}

// TestLoadEveryProblem: one file with several broken entries gives one
// error listing every problem, each with its entry.
func TestLoadEveryProblem(t *testing.T) {
	yamlFile := `models:
  - name: ok
    model_id: BAAI/bge-small-en-v1.5
  - name: "bad name"
    model_id: m
    pooling: max
  - model_id: m
    backend: onnx
    triton_model: x
  - name: e5
    pooling_mode: mean
    model-id: ./e5
    task: classify
  - name: big
    model_id: m
    max_batch_tokens: lots
  - name: dup
    aliases: [ok, e5, x, x]
    model_id: m
`
	jsonFile := `{"models":[
  {"name":"ok","model_id":"BAAI/bge-small-en-v1.5"},
  {"name":"bad name","model_id":"m","pooling":"max"},
  {"model_id":"m","backend":"onnx","triton_model":"x"},
  {"name":"e5","pooling_mode":"mean","task":"classify"},
  {"name":"big","model_id":"m","max_batch_tokens":"lots"},
  {"name":"dup","aliases":["ok","e5","x","x"],"model_id":"m"}
]}`
	wantYAML := []string{
		`models[1] ("bad name"): name "bad name" contains whitespace`,
		`models[1] ("bad name"): pooling "max" is not one of`,
		`models[2]: name is empty`,
		`models[2]: triton_model is only for backend triton`,
		`models[3] ("e5"): line 11: unknown field "pooling_mode"`,
		`models[3] ("e5"): line 12: unknown field "model-id"`,
		`models[3] ("e5"): model_id is required`,
		`models[3] ("e5"): task "classify" is not one of embed, rerank`,
		`models[4] ("big"): line 16: cannot unmarshal`,
		`models[5] ("dup"): alias "x" is listed twice`,
		`models[5] ("dup"): alias "ok" is already used by models[0] ("ok")`,
		`models[5] ("dup"): alias "e5" is already used by models[3] ("e5")`,
	}
	// JSON stops at an entry's first unknown field, and says no line.
	wantJSON := []string{
		wantYAML[0], wantYAML[1], wantYAML[2], wantYAML[3],
		`models[3] ("e5"): invalid JSON: unknown field "pooling_mode"`,
		wantYAML[6], wantYAML[7],
		`models[4] ("big"): invalid JSON: cannot unmarshal string`,
		wantYAML[9], wantYAML[10], wantYAML[11],
	}
	for _, tt := range []struct {
		name, file, content string
		want                []string
	}{
		{"yaml", "models.yaml", yamlFile, wantYAML},
		{"json", "models.json", jsonFile, wantJSON},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, tt.file, tt.content)
			_, err := Load(path)
			wantProblems(t, "Load", err, tt.want)
			if err != nil && !strings.HasPrefix(err.Error(), "catalog: models file "+path+": 12 problems:\n") &&
				!strings.HasPrefix(err.Error(), "catalog: models file "+path+": 11 problems:\n") {
				t.Errorf("Load error does not start with the file and the count: %q", strings.SplitN(err.Error(), "\n", 2)[0])
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct{ name, file, content, want string }{
		{"one problem", "a.yaml", "models:\n  - {name: a}\n", `catalog: models file %s: models[0] ("a"): model_id is required`},
		{"unknown top-level yaml", "a.yaml", "model:\n  - {name: a, model_id: m}\n", `line 1: unknown field "model"`},
		{"unknown top-level json", "a.json", `{"model":[{"name":"a","model_id":"m"}]}`, `unknown field "model"`},
		{"unknown field flow yaml", "a.yaml", "- {name: a, model_id: m, tpm: 5}\n", `models[0] ("a"): line 1: unknown field "tpm"`},
		{"unknown field json list", "a.json", `[{"name":"a","model_id":"m","tpm":5}]`, `models[0] ("a"): invalid JSON: unknown field "tpm"`},
		{"empty", "a.yaml", "", "no models"},
		{"comments only", "a.yaml", "# nothing yet\n", "no models"},
		{"no entries yaml", "a.yaml", "models: []\n", "no models"},
		{"no entries json", "a.json", `{"models":[]}`, "no models"},
		{"models not a list", "a.yaml", "models: 5\n", "line 1: cannot unmarshal !!int `5`"},
		{"scalar file", "a.yaml", "hello\n", "line 1: cannot unmarshal !!str `hello`"},
		{"two documents", "a.yaml", "- {name: a, model_id: m}\n---\n- {name: b, model_id: m}\n", "more than one document"},
		{"string entry yaml", "a.yaml", "- {name: a, model_id: m}\n- b\n- [c]\n-\n- {name: d, model_id: m, pooling: max}\n",
			"models[1]: line 2: is \"b\", not a mapping of fields\nmodels[2]: line 3: is a list, not a mapping of fields\n" +
				"models[3]: line 4: is empty, not a mapping of fields\nmodels[4] (\"d\"): pooling"},
		{"null entry json", "a.json", `[null, 5, {"name":"d","model_id":"m","pooling":"max"}]`,
			"models[0]: is null, not an object of fields\nmodels[1]: is 5, not an object of fields\nmodels[2] (\"d\"): pooling"},
		{"anchors and merge keys", "a.yaml", "- &base {name: a, model_id: m, pooling: max}\n- <<: *base\n  name: b\n",
			"models[0] (\"a\"): pooling \"max\" is not one of cls, mean, last-token\nmodels[1] (\"b\"): pooling \"max\""},
		{"top-level problem and entry problems", "a.yaml", "models:\n  - {name: a}\nextra: 1\n",
			"line 3: unknown field \"extra\"\nmodels[0] (\"a\"): model_id is required"},
		{"malformed yaml", "a.yaml", "models: [\n", "invalid YAML"},
		{"malformed json", "a.json", `{"models":[`, "invalid JSON"},
		{"trailing json", "a.json", `[{"name":"a","model_id":"m"}] []`, "data after the top-level value"},
		{"entry not an object", "a.json", `["a"]`, `models[0]: is "a", not an object of fields`},
		{"duplicate names", "a.yaml", "- {name: a, model_id: m}\n- {name: a, model_id: n}\n", `models[1] ("a"): name "a" is already used by models[0] ("a")`},
		{"name is other's alias", "a.yaml", "- {name: a, aliases: [b], model_id: m}\n- {name: b, model_id: n}\n",
			`models[1] ("b"): name "b" is already used by models[0] ("a")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, tt.file, tt.content)
			entries, err := Load(path)
			want := tt.want
			if strings.Contains(want, "%s") {
				want = strings.Replace(want, "%s", path, 1)
			}
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("Load(%q) = %v, %v; want an error containing %q", tt.content, entries, err, want)
			}
			if entries != nil {
				t.Errorf("Load returned entries with an error: %+v", entries)
			}
		})
	}
	_, err := Load(filepath.Join(t.TempDir(), "absent.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(absent) = %v, want os.ErrNotExist in the chain", err)
	}
}

// TestLoadErrorsUnwrap: callers can still find each problem in the chain.
func TestLoadErrorsUnwrap(t *testing.T) {
	_, err := Load(writeFile(t, "a.yaml", "- {name: a}\n- {name: b}\n"))
	var multi interface{ Unwrap() []error }
	if !errors.As(err, &multi) || len(multi.Unwrap()) != 2 {
		t.Fatalf("Load error %v does not unwrap into its 2 problems", err)
	}
}
