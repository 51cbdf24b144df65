// Package catalog says what the gateway serves: one Entry per model, read
// from a models file, discovered from Triton's repository, or made from
// the one-model flags. It opens nothing; fleet runs what it describes.
//
// catalog imports only the standard library, the YAML decoder and the
// domain package gateway (for its task names), so the config package and
// `embedgate models` can use it without a backend.
package catalog

import (
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/embedgate/embedgate/gateway"
)

// Entry is one served model as an operator describes it. Zero fields take
// the gateway's flag values.
type Entry struct {
	Name              string            `json:"name" yaml:"name"`                 // required; what clients send as model
	Aliases           []string          `json:"aliases" yaml:"aliases"`           // more names for the same model
	ModelID           string            `json:"model_id" yaml:"model_id"`         // required: local directory or hub repo
	Revision          string            `json:"revision" yaml:"revision"`         // hub branch, tag or commit; "" = main
	Backend           string            `json:"backend" yaml:"backend"`           // "onnx" | "triton"; "" = --backend
	ONNXFile          string            `json:"onnx_file" yaml:"onnx_file"`       // onnx only: path inside the model directory; "" = the --dtype's file
	TritonModel       string            `json:"triton_model" yaml:"triton_model"` // triton only; "" = Name
	TritonURL         string            `json:"triton_url" yaml:"triton_url"`     // triton only; "" = --triton-url
	Pooling           string            `json:"pooling" yaml:"pooling"`           // "" = the model's 1_Pooling config
	Prompts           map[string]string `json:"prompts" yaml:"prompts"`           // added to, or overriding, the model's own
	DefaultPromptName string            `json:"default_prompt_name" yaml:"default_prompt_name"`
	Task              string            `json:"task" yaml:"task"`                             // "embed" or "rerank"; "" = from the model's config.json
	MaxBatchTokens    int               `json:"max_batch_tokens" yaml:"max_batch_tokens"`     // 0 = --max-batch-tokens
	MaxBatchRequests  int               `json:"max_batch_requests" yaml:"max_batch_requests"` // 0 = --max-batch-requests
	MaxInputLength    int               `json:"max_input_length" yaml:"max_input_length"`     // 0 = the model's; may only lower it
	// Source says where the entry came from, for logs and `embedgate
	// models`: "file models.yaml", "triton localhost:8001", "flags".
	Source string `json:"-" yaml:"-"`
}

// The tasks an entry may name: gateway's, here for the config package,
// which imports catalog alone.
const (
	TaskEmbed  = gateway.TaskEmbed
	TaskRerank = gateway.TaskRerank
)

// The values an entry's enumerated fields may take; "" (the default) is
// allowed in each too.
var (
	backends = []string{"onnx", "triton"}
	poolings = []string{"cls", "mean", "last-token"}
	tasks    = []string{TaskEmbed, TaskRerank}
)

// Names is the entry's name, then its aliases: every name a request may use.
func (e Entry) Names() []string { return append([]string{e.Name}, e.Aliases...) }

// Equal reports whether e and o describe the same pipeline, so a reload
// may keep the running one. A nil and an empty Aliases or Prompts are
// equal. Source is not compared: it says where the entry was read, not
// what is served.
func (e Entry) Equal(o Entry) bool {
	return reflect.DeepEqual(e.comparable(), o.comparable())
}

// comparable is e with Source cleared and empty collections nil.
func (e Entry) comparable() Entry {
	e.Source = ""
	if len(e.Aliases) == 0 {
		e.Aliases = nil
	}
	if len(e.Prompts) == 0 {
		e.Prompts = nil
	}
	return e
}

// Check returns every problem of the entry on its own, joined, one error
// each; nil if there is none. What depends on other entries (names used
// twice, the default model) is the job of the package's Check.
func (e Entry) Check() error { return errors.Join(e.problems()...) }

// problems is what Check reports, one error per problem, for callers that
// prefix each with the entry's place in a file.
func (e Entry) problems() []error {
	var p []error
	add := func(format string, args ...any) { p = append(p, fmt.Errorf(format, args...)) }
	if err := checkName("name", e.Name); err != nil {
		p = append(p, err)
	}
	e.aliasProblems(add)
	switch {
	case strings.TrimSpace(e.ModelID) == "":
		add("model_id is required (a local model directory or a hub repo)")
	case strings.TrimSpace(e.ModelID) != e.ModelID:
		add("model_id %q has leading or trailing spaces", e.ModelID)
	}
	oneOf(add, "backend", e.Backend, backends)
	e.backendProblems(add)
	oneOf(add, "pooling", e.Pooling, poolings)
	oneOf(add, "task", e.Task, tasks)
	e.rerankProblems(add)
	for _, k := range slices.Sorted(maps.Keys(e.Prompts)) {
		if strings.TrimSpace(k) == "" {
			add("prompts: a prompt has an empty name")
		}
	}
	for _, n := range []struct {
		field string
		v     int
	}{{"max_batch_tokens", e.MaxBatchTokens}, {"max_batch_requests", e.MaxBatchRequests}, {"max_input_length", e.MaxInputLength}} {
		if n.v < 0 {
			add("%s must be >= 0 (0 = the default), got %d", n.field, n.v)
		}
	}
	return p
}

// rerankProblems refuses what only an embedding model uses on an entry
// that says it reranks: a cross-encoder scores pairs, it neither pools nor
// takes prompts, and a setting that would silently do nothing is a mistake.
func (e Entry) rerankProblems(add func(string, ...any)) {
	if e.Task != TaskRerank {
		return
	}
	for _, f := range []struct{ field, value string }{
		{"pooling", e.Pooling}, {"default_prompt_name", e.DefaultPromptName},
	} {
		if f.value != "" {
			add("%s is for embedding models: a rerank model has none (drop %s or the task)", f.field, f.field)
		}
	}
	if len(e.Prompts) > 0 {
		add("prompts are for embedding models: a rerank model has none (drop prompts or the task)")
	}
}

func (e Entry) aliasProblems(add func(string, ...any)) {
	seen := make(map[string]bool, len(e.Aliases))
	for i, a := range e.Aliases {
		switch err := checkName(fmt.Sprintf("aliases[%d]", i), a); {
		case err != nil:
			add("%w", err)
		case a == e.Name:
			add("alias %q is the model's name", a)
		case seen[a]:
			add("alias %q is listed twice", a)
		}
		seen[a] = true
	}
}

// backendProblems checks that the backend-specific fields match the
// backend. An entry using one of them names its backend: "" (the gateway's
// --backend) could be either, and the mistake would only show at open time.
func (e Entry) backendProblems(add func(string, ...any)) {
	only := func(field, value, backend string) {
		if value != "" && e.Backend != backend {
			add("%s is only for backend %s (backend is %q): set backend: %s or drop %s", field, backend, e.Backend, backend, field)
		}
	}
	only("onnx_file", e.ONNXFile, "onnx")
	only("triton_model", e.TritonModel, "triton")
	only("triton_url", e.TritonURL, "triton")
	if e.ONNXFile != "" && !filepath.IsLocal(e.ONNXFile) {
		add("onnx_file %q must be a relative path inside the model directory", e.ONNXFile)
	}
}

func oneOf(add func(string, ...any), field, v string, choices []string) {
	if v != "" && !slices.Contains(choices, v) {
		add("%s %q is not one of %s", field, v, strings.Join(choices, ", "))
	}
}

// CheckName says whether name can name a model (as a name or an alias):
// names are opaque, compared exactly, but must be non-empty, valid UTF-8,
// and free of whitespace and control characters, so they survive logs,
// metric labels and URLs (/v1/models/{id}) unchanged.
func CheckName(name string) error { return checkName("model name", name) }

// checkName is CheckName with the field named as the caller's reader knows it.
func checkName(field, name string) error {
	why := ""
	switch {
	case name == "":
		return fmt.Errorf("%s is empty", field)
	case !utf8.ValidString(name):
		why = "is not valid UTF-8"
	case strings.IndexFunc(name, unicode.IsSpace) >= 0:
		why = "contains whitespace"
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		why = "contains a control character"
	default:
		return nil
	}
	return fmt.Errorf("%s %q %s", field, name, why)
}
