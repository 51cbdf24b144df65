// Package modelrepo reads Triton model configurations (config.pbtxt, text
// format) into tritonstubs.ModelConfig and checks one against what the
// gateway sends and reads: token inputs of [B, L] INT64/INT32, one FP32
// (or FP16, BF16) output (embeddings, or a cross-encoder's logits),
// batching, a bounded queue, warmup, and TensorRT profiles and engine
// cache.
// Tests run it over model_repository/; the Triton backend runs it at Open
// on the config Triton reports and logs each problem. It imports gateway
// (the tensor names), tritonstubs and the protobuf module.
package modelrepo

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/prototext"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/tritonstubs"
)

// Load parses the config.pbtxt at path. Fields our ModelConfig subset does
// not declare are skipped (DiscardUnknown), so Triton options we do not read
// never break loading; enum values are written by name, so our enums are
// complete. Like Triton, it refuses a set name that differs from the model's
// directory name.
func Load(path string) (*tritonstubs.ModelConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	cfg := &tritonstubs.ModelConfig{}
	if err := (prototext.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	dir := filepath.Base(filepath.Dir(path))
	if cfg.GetName() != "" && cfg.GetName() != dir {
		return nil, fmt.Errorf("%s: name %q differs from its directory %q (Triton refuses to load it)", path, cfg.GetName(), dir)
	}
	return cfg, nil
}

// Check returns every way cfg does not fit the gateway, joined: the
// Problems, as one error.
func Check(cfg *tritonstubs.ModelConfig, inputs, outputs []string) error {
	return errors.Join(Problems(cfg, inputs, outputs)...)
}

// Problems returns every way cfg does not fit the gateway, one error each,
// so that a caller can report them one by one. inputs are the tensors the
// gateway can fill; the config's inputs must be a subset, and must include
// input_ids and attention_mask (without the mask, padding would change the
// embeddings of every batched row). outputs are the outputs the gateway
// can read for the model's task (the embedding outputs it pools, or a
// reranker's logits); every declared output must be one.
func Problems(cfg *tritonstubs.ModelConfig, inputs, outputs []string) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	// The gateway sends [B, L] batches, so Triton must batch on dim 0.
	if cfg.GetMaxBatchSize() <= 0 {
		bad("max_batch_size is %d: the gateway sends [B, L] batches and needs it > 0", cfg.GetMaxBatchSize())
	}

	declared := map[string]*tritonstubs.ModelInput{}
	for _, in := range cfg.GetInput() {
		declared[in.GetName()] = in
		if !slices.Contains(inputs, in.GetName()) {
			bad("input %q is not one the gateway sends (%s)", in.GetName(), strings.Join(inputs, ", "))
		}
		if dt := in.GetDataType(); dt != tritonstubs.DataType_TYPE_INT64 && dt != tritonstubs.DataType_TYPE_INT32 {
			bad("input %q is %s, want TYPE_INT64 or TYPE_INT32", in.GetName(), dt)
		}
		if d := in.GetDims(); len(d) != 1 || d[0] == 0 || d[0] < -1 {
			bad("input %q dims %v, want [ -1 ] (or a fixed length): the batch dim is implied", in.GetName(), d)
		}
	}
	for _, name := range []string{gateway.TensorInputIDs, gateway.TensorAttentionMask} {
		if declared[name] == nil {
			bad("input %q is missing: the gateway always sends it", name)
		}
	}

	if len(cfg.GetOutput()) == 0 {
		bad("no output: want one of %s", strings.Join(outputs, ", "))
	}
	for _, out := range cfg.GetOutput() {
		checkOutput(out, outputs, bad)
	}

	checkQueue(cfg.GetDynamicBatching(), bad)
	checkWarmup(cfg, declared, bad)
	checkTensorRT(cfg, bad)
	return errs
}

// checkOutput: FP32, and the shape its name promises: [L, H] token states,
// a pooled [H] or [num_labels] logits, with H or num_labels known.
func checkOutput(out *tritonstubs.ModelOutput, outputs []string, bad func(string, ...any)) {
	name, dims := out.GetName(), out.GetDims()
	if !slices.Contains(outputs, name) {
		bad("output %q is not one the gateway reads (%s)", name, strings.Join(outputs, ", "))
	}
	switch out.GetDataType() {
	case tritonstubs.DataType_TYPE_FP32, tritonstubs.DataType_TYPE_FP16, tritonstubs.DataType_TYPE_BF16:
		// The Triton backend widens FP16 and BF16 into FP32 exactly.
	default:
		bad("output %q is %s, want TYPE_FP32, TYPE_FP16 or TYPE_BF16", name, out.GetDataType())
	}
	want := map[string]int{gateway.TensorLastHiddenState: 2, gateway.TensorSentenceEmbedding: 1, gateway.TensorLogits: 1}[name]
	if want != 0 && len(dims) != want {
		bad("output %q dims %v: want %d dims after the batch dim", name, dims, want)
		return
	}
	if len(dims) == 0 || dims[len(dims)-1] <= 0 {
		last := "the hidden size"
		if name == gateway.TensorLogits {
			last = "the number of labels"
		}
		bad("output %q dims %v: the last dim must be %s", name, dims, last)
	}
}

// checkQueue: the dynamic batcher's queue must be bounded, or overload
// queues up until requests time out instead of failing fast (429).
func checkQueue(db *tritonstubs.ModelDynamicBatching, bad func(string, ...any)) {
	if db == nil {
		bad("no dynamic_batching: without it there is no queue policy, so no bounded queue")
		return
	}
	if db.GetDefaultQueuePolicy().GetMaxQueueSize() == 0 {
		bad("dynamic_batching.default_queue_policy.max_queue_size is unset: the queue is unbounded")
	}
	for _, level := range slices.Sorted(maps.Keys(db.GetPriorityQueuePolicy())) {
		if db.GetPriorityQueuePolicy()[level].GetMaxQueueSize() == 0 {
			bad("dynamic_batching.priority_queue_policy[%d].max_queue_size is unset: the queue is unbounded", level)
		}
	}
}

// checkWarmup: every warmup sample must feed every input with its dtype and
// concrete dims, in a batch Triton accepts; Triton fails the load otherwise.
func checkWarmup(cfg *tritonstubs.ModelConfig, declared map[string]*tritonstubs.ModelInput, bad func(string, ...any)) {
	if len(cfg.GetModelWarmup()) == 0 {
		bad("no model_warmup: the first requests would pay for GPU setup")
	}
	for i, w := range cfg.GetModelWarmup() {
		label := fmt.Sprintf("model_warmup[%d] %q", i, w.GetName())
		if b := int64(w.GetBatchSize()); b < 1 || b > int64(cfg.GetMaxBatchSize()) {
			bad("%s: batch_size %d is outside 1..max_batch_size (%d)", label, b, cfg.GetMaxBatchSize())
		}
		for _, in := range cfg.GetInput() {
			name := in.GetName()
			wi := w.GetInputs()[name]
			if wi == nil {
				bad("%s: input %q has no data", label, name)
				continue
			}
			if wi.GetDataType() != in.GetDataType() {
				bad("%s: input %q is %s, the model's is %s", label, name, wi.GetDataType(), in.GetDataType())
			}
			if wi.GetInputDataType() == nil {
				bad("%s: input %q sets none of zero_data, random_data, input_data_file", label, name)
			}
			if !concrete(wi.GetDims(), in.GetDims()) {
				bad("%s: input %q dims %v do not fit the model's %v (concrete, no batch dim)", label, name, wi.GetDims(), in.GetDims())
			}
		}
		for _, name := range slices.Sorted(maps.Keys(w.GetInputs())) {
			if declared[name] == nil {
				bad("%s: input %q is not a model input", label, name)
			}
		}
	}
}

// concrete reports whether dims is a real shape matching the model's dims,
// where the model's -1 matches any positive size.
func concrete(dims, model []int64) bool {
	if len(dims) != len(model) {
		return false
	}
	for i, d := range dims {
		if d <= 0 || (model[i] != -1 && model[i] != d) {
			return false
		}
	}
	return true
}

// checkTensorRT checks an ORT TensorRT accelerator's explicit profile: it
// must cover every input, hold min <= opt <= max, admit max_batch_size rows,
// and contain every warmup shape. Outside its profile an engine cannot run
// a shape, and ORT-TRT without explicit profiles rebuilds engines (minutes)
// whenever a larger shape arrives.
func checkTensorRT(cfg *tritonstubs.ModelConfig, bad func(string, ...any)) {
	for _, acc := range cfg.GetOptimization().GetExecutionAccelerators().GetGpuExecutionAccelerator() {
		if acc.GetName() != "tensorrt" {
			continue
		}
		params := acc.GetParameters()
		checkEngineCache(params, bad)
		var prof [3]map[string][]int64 // min, opt, max
		for i, key := range []string{"trt_profile_min_shapes", "trt_profile_opt_shapes", "trt_profile_max_shapes"} {
			v, ok := params[key]
			if !ok {
				bad("tensorrt accelerator: %s is unset: set explicit profiles so engines are not rebuilt per new shape", key)
				return
			}
			p, err := parseShapes(v)
			if err != nil {
				bad("tensorrt accelerator: %s: %v", key, err)
				return
			}
			prof[i] = p
		}
		for _, in := range cfg.GetInput() {
			name, rank := in.GetName(), len(in.GetDims())+1
			lo, opt, hi := prof[0][name], prof[1][name], prof[2][name]
			if len(lo) != rank || len(opt) != rank || len(hi) != rank {
				bad("tensorrt profile for %q: min %v opt %v max %v, want %d dims each", name, lo, opt, hi, rank)
				continue
			}
			for d := range rank {
				if lo[d] < 1 || lo[d] > opt[d] || opt[d] > hi[d] {
					bad("tensorrt profile for %q dim %d: want 1 <= min %d <= opt %d <= max %d", name, d, lo[d], opt[d], hi[d])
				}
			}
			if hi[0] < int64(cfg.GetMaxBatchSize()) {
				bad("tensorrt profile for %q: max batch %d < max_batch_size %d", name, hi[0], cfg.GetMaxBatchSize())
			}
			for _, w := range cfg.GetModelWarmup() {
				wi := w.GetInputs()[name]
				if wi == nil || len(wi.GetDims()) != rank-1 {
					continue // reported by checkWarmup
				}
				shape := append([]int64{int64(w.GetBatchSize())}, wi.GetDims()...)
				for d, s := range shape {
					if s < lo[d] || s > hi[d] {
						bad("model_warmup %q: %q shape %v is outside the tensorrt profile %v..%v", w.GetName(), name, shape, lo, hi)
						break
					}
				}
			}
		}
	}
}

// checkEngineCache: a TensorRT engine cache needs a prefix of the model's
// own. ONNX Runtime names a cached engine by a hash of the model's file
// name (not its directory), its input and node names and the ORT, CUDA and
// TensorRT versions (TRTGenerateId), never its weights; Triton loads every
// model from its own <version>/model.onnx (onnxruntime_backend r25.06,
// src/onnxruntime.cc), so another model of the same architecture would
// load this one's engine and return wrong vectors without an error.
func checkEngineCache(params map[string]string, bad func(string, ...any)) {
	// The spellings Triton's ParseBoolValue takes as true.
	on := slices.Contains([]string{"true", "on", "1"}, strings.ToLower(params["trt_engine_cache_enable"]))
	if on && strings.TrimSpace(params["trt_engine_cache_prefix"]) == "" {
		bad("tensorrt accelerator: trt_engine_cache_enable without trt_engine_cache_prefix: engines are cached by file and node names, not weights, so another model.onnx of the same architecture would load this model's engine; set the prefix to the model's name")
	}
}

// parseShapes reads ORT's profile syntax: "name:1x128,other:1x128".
func parseShapes(s string) (map[string][]int64, error) {
	out := map[string][]int64{}
	for _, item := range strings.Split(s, ",") {
		name, dims, ok := strings.Cut(strings.TrimSpace(item), ":")
		if !ok || name == "" || dims == "" {
			return nil, fmt.Errorf("%q is not name:AxB", item)
		}
		var shape []int64
		for _, d := range strings.Split(dims, "x") {
			n, err := strconv.ParseInt(d, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%q: %w", item, err)
			}
			shape = append(shape, n)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("%q is given twice", name)
		}
		out[name] = shape
	}
	return out, nil
}
