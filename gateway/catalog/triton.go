package catalog

import (
	"fmt"
	"strconv"
	"strings"
)

// The string parameters of a Triton model's config.pbtxt that describe it
// to the gateway:
//
//	parameters { key: "hf_model_id" value: { string_value: "BAAI/bge-small-en-v1.5" } }
//	parameters { key: "aliases" value: { string_value: "bge-small, text-embedding-3-small" } }
const (
	ParamModelID  = "hf_model_id" // required: the tokenizer and config source (hub repo or local directory)
	ParamRevision = "hf_revision"
	ParamPooling  = "pooling"
	ParamAliases  = "aliases" // comma separated
	ParamTask     = "task"
	// ParamMaxInputLength lowers the model's own max input length (tokens),
	// as a models-file entry's max_input_length does: the config that
	// sizes Triton's batches for a length says it.
	ParamMaxInputLength = "max_input_length"
)

// FromTriton is the entry of a model found in the repository of the Triton
// server at addr: named as Triton names it, served by it, described by its
// config parameters (see ParamModelID). Other parameters are Triton's or
// its backends' and are ignored. The error says why the model cannot be
// served (no hf_model_id, or a value Entry.Check refuses), for the caller
// to log when it skips the model; the entry is then zero.
func FromTriton(addr, model string, params map[string]string) (Entry, error) {
	param := func(k string) string { return strings.TrimSpace(params[k]) }
	fail := func(err error) (Entry, error) {
		return Entry{}, fmt.Errorf("triton model %q at %s: %w", model, addr, err)
	}
	if param(ParamModelID) == "" {
		return fail(fmt.Errorf("no %s parameter in its config.pbtxt (the tokenizer's hub repo or directory)", ParamModelID))
	}
	var maxLen int
	if v := param(ParamMaxInputLength); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fail(fmt.Errorf("%s %q is not a whole number of tokens", ParamMaxInputLength, v))
		}
		maxLen = n // Entry.problems refuses a negative one
	}
	var aliases []string
	for a := range strings.SplitSeq(params[ParamAliases], ",") {
		if a = strings.TrimSpace(a); a != "" {
			aliases = append(aliases, a)
		}
	}
	e := Entry{
		Name:           model,
		Aliases:        aliases,
		ModelID:        param(ParamModelID),
		Revision:       param(ParamRevision),
		Backend:        "triton",
		TritonModel:    model,
		TritonURL:      addr,
		Pooling:        param(ParamPooling),
		Task:           param(ParamTask),
		MaxInputLength: maxLen,
		Source:         "triton " + addr,
	}
	if problems := e.problems(); len(problems) > 0 {
		return fail(joinedLine(problems)) // one log line per skipped model
	}
	return e, nil
}
