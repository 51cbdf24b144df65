// Package catalog says what the gateway serves: one Entry per model, read
// from a models file, discovered from Triton's repository, or made from
// the one-model flags. It opens nothing; fleet runs what it describes.
package catalog

// Entry is one served model as an operator describes it. Zero fields take
// the gateway's flag values.
type Entry struct {
	Name              string            `json:"name" yaml:"name"`
	Aliases           []string          `json:"aliases" yaml:"aliases"`
	ModelID           string            `json:"model_id" yaml:"model_id"`
	Revision          string            `json:"revision" yaml:"revision"`
	Backend           string            `json:"backend" yaml:"backend"`
	ONNXFile          string            `json:"onnx_file" yaml:"onnx_file"`
	TritonModel       string            `json:"triton_model" yaml:"triton_model"`
	TritonURL         string            `json:"triton_url" yaml:"triton_url"`
	Pooling           string            `json:"pooling" yaml:"pooling"`
	Prompts           map[string]string `json:"prompts" yaml:"prompts"`
	DefaultPromptName string            `json:"default_prompt_name" yaml:"default_prompt_name"`
	Task              string            `json:"task" yaml:"task"`
	MaxBatchTokens    int               `json:"max_batch_tokens" yaml:"max_batch_tokens"`
	MaxBatchRequests  int               `json:"max_batch_requests" yaml:"max_batch_requests"`
	MaxInputLength    int               `json:"max_input_length" yaml:"max_input_length"`
	// Source says where the entry came from, for logs and `embedgate
	// models`: "file models.yaml", "triton localhost:8001", "flags".
	Source string `json:"-" yaml:"-"`
}

// Names is the entry's name, then its aliases: every name a request may use.
func (e Entry) Names() []string { return append([]string{e.Name}, e.Aliases...) }
