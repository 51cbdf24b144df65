package catalog

import (
	"reflect"
	"strings"
	"testing"
)

func TestFromTriton(t *testing.T) {
	tests := []struct {
		name    string
		model   string
		params  map[string]string
		want    Entry
		wantErr []string
	}{
		{"minimal", "bge-small-en-v1.5", map[string]string{"hf_model_id": "BAAI/bge-small-en-v1.5"},
			Entry{Name: "bge-small-en-v1.5", ModelID: "BAAI/bge-small-en-v1.5", Backend: "triton", TritonModel: "bge-small-en-v1.5",
				TritonURL: "triton:8001", Source: "triton triton:8001"}, nil},
		{"every parameter", "qwen3", map[string]string{
			"hf_model_id": " Qwen/Qwen3-Embedding-0.6B ", "hf_revision": "v2", "pooling": "last-token",
			"aliases": " text-embedding-3-large, qwen ,,", "task": "embed",
			"EXECUTION_ENV_PATH": "$$TRITON_MODEL_DIRECTORY/env.tar.gz", // Triton's own: ignored
		}, Entry{Name: "qwen3", Aliases: []string{"text-embedding-3-large", "qwen"}, ModelID: "Qwen/Qwen3-Embedding-0.6B",
			Revision: "v2", Backend: "triton", TritonModel: "qwen3", TritonURL: "triton:8001", Pooling: "last-token", Task: "embed",
			Source: "triton triton:8001"}, nil},
		{"reranker", "bge-reranker-base", map[string]string{"hf_model_id": "BAAI/bge-reranker-base", "task": "rerank"},
			Entry{Name: "bge-reranker-base", ModelID: "BAAI/bge-reranker-base", Backend: "triton", TritonModel: "bge-reranker-base",
				TritonURL: "triton:8001", Task: "rerank", Source: "triton triton:8001"}, nil},
		{"empty aliases", "m", map[string]string{"hf_model_id": "x", "aliases": " , "},
			Entry{Name: "m", ModelID: "x", Backend: "triton", TritonModel: "m", TritonURL: "triton:8001", Source: "triton triton:8001"}, nil},
		{"max input length", "m", map[string]string{"hf_model_id": "x", "max_input_length": " 2048 "},
			Entry{Name: "m", ModelID: "x", Backend: "triton", TritonModel: "m", TritonURL: "triton:8001", MaxInputLength: 2048,
				Source: "triton triton:8001"}, nil},
		{"max input length not a number", "m", map[string]string{"hf_model_id": "x", "max_input_length": "2k"}, Entry{},
			[]string{`max_input_length "2k" is not a whole number of tokens`}},
		{"negative max input length", "m", map[string]string{"hf_model_id": "x", "max_input_length": "-1"}, Entry{},
			[]string{"max_input_length must be >= 0"}},
		{"no params", "resnet50", nil, Entry{}, []string{`triton model "resnet50" at triton:8001: no hf_model_id parameter`}},
		{"blank model id", "m", map[string]string{"hf_model_id": "  "}, Entry{}, []string{"no hf_model_id parameter"}},
		{"bad values", "m", map[string]string{"hf_model_id": "x", "pooling": "max", "task": "classify", "aliases": "m, a b"}, Entry{},
			[]string{`triton model "m" at triton:8001: `, `pooling "max" is not one of`, `task "classify" is not one of embed, rerank`,
				`alias "m" is the model's name`, `aliases[1] "a b" contains whitespace`}},
		{"bad name", "a b", map[string]string{"hf_model_id": "x"}, Entry{}, []string{`name "a b" contains whitespace`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromTriton("triton:8001", tt.model, tt.params)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("FromTriton = %+v\nwant %+v", got, tt.want)
			}
			if tt.wantErr == nil {
				if err != nil {
					t.Errorf("FromTriton error = %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("FromTriton error = nil, want %q", tt.wantErr)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("FromTriton error %q spans lines; want one log line", err)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("FromTriton error = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}
