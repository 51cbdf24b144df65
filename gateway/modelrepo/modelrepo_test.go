package modelrepo_test

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/modelrepo"
	"github.com/embedgate/embedgate/tritonstubs"
)

// check runs modelrepo.Check with what the gateway can send and read
// (BRIEF §2, §8) for the config's task parameter: the embedding outputs,
// or logits for a reranker.
func check(cfg *tritonstubs.ModelConfig) error {
	inputs := []string{gateway.TensorInputIDs, gateway.TensorAttentionMask, gateway.TensorTokenTypeIDs, gateway.TensorPositionIDs}
	outputs := []string{gateway.TensorLastHiddenState, gateway.TensorSentenceEmbedding}
	if cfg.GetParameters()["task"].GetStringValue() == "rerank" {
		outputs = []string{gateway.TensorLogits}
	}
	return modelrepo.Check(cfg, inputs, outputs)
}

// TestShippedConfigs parses every model_repository/*/config.pbtxt and checks
// it against the gateway.
func TestShippedConfigs(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join("..", "..", "model_repository", "*", "config.pbtxt"))
	if err != nil {
		t.Fatal(err)
	}
	// What each model we ship a config for is: its hidden size (a
	// reranker's: its number of labels), the longest input the gateway
	// sends it (the model's own limit, or the cap of the config's
	// max_input_length parameter), and its inputs. A new config needs a row
	// here, which makes its author check them.
	models := map[string]struct {
		lastDim int64
		maxLen  int64
		inputs  []string
	}{
		"bge-small-en-v1.5":     {384, 512, []string{"input_ids", "attention_mask", "token_type_ids"}},
		"bge-small-en-v1.5-trt": {384, 512, []string{"input_ids", "attention_mask", "token_type_ids"}},
		"qwen3-embedding-0.6b":  {1024, 2048, []string{"input_ids", "attention_mask", gateway.TensorPositionIDs}},
		"bge-reranker-base":     {1, 512, []string{"input_ids", "attention_mask"}},
	}
	if len(paths) < len(models) {
		t.Fatalf("found %d configs (%v), want at least %d", len(paths), paths, len(models))
	}
	for _, path := range paths {
		dir := filepath.Base(filepath.Dir(path))
		t.Run(dir, func(t *testing.T) {
			cfg, err := modelrepo.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.GetName() != dir {
				t.Errorf("name = %q, want the directory name %q", cfg.GetName(), dir)
			}
			if err := check(cfg); err != nil {
				t.Errorf("Check:\n%v", err)
			}
			m, ok := models[dir]
			if !ok {
				t.Fatalf("no hidden size, max input length and inputs listed for %s in this test", dir)
			}
			for _, out := range cfg.GetOutput() {
				if d := out.GetDims(); len(d) == 0 || d[len(d)-1] != m.lastDim {
					t.Errorf("output %q dims = %v, want %d last", out.GetName(), d, m.lastDim)
				}
			}
			var inputs []string
			for _, in := range cfg.GetInput() {
				inputs = append(inputs, in.GetName())
			}
			if !slices.Equal(inputs, m.inputs) {
				t.Errorf("inputs = %v, want %v (the ONNX Runtime backend refuses a list that differs from the graph's)", inputs, m.inputs)
			}
			if v := cfg.GetParameters()["max_input_length"].GetStringValue(); v != "" && v != strconv.FormatInt(m.maxLen, 10) {
				t.Errorf("max_input_length parameter %q, want %d, the length this test checks the warmup for", v, m.maxLen)
			}
			checkWorstBatchWarmed(t, cfg, m.maxLen)
			// Triton needs a version directory; 1/ is committed with a .gitkeep.
			if fi, err := os.Stat(filepath.Join(filepath.Dir(path), "1")); err != nil || !fi.IsDir() {
				t.Errorf("version directory 1/ missing: %v", err)
			}
		})
	}
}

// checkWorstBatchWarmed: Triton's dynamic batcher merges queued requests of
// equal [B, L] up to max_batch_size rows, so gateway batches cut at the
// longest input become max_batch_size x maxLen on the GPU. A warmup sample
// of exactly that shape makes the model prove at load that it fits.
func checkWorstBatchWarmed(t *testing.T, cfg *tritonstubs.ModelConfig, maxLen int64) {
	t.Helper()
	for _, w := range cfg.GetModelWarmup() {
		if int64(w.GetBatchSize()) != int64(cfg.GetMaxBatchSize()) {
			continue
		}
		worst := true
		for _, in := range w.GetInputs() {
			worst = worst && slices.Equal(in.GetDims(), []int64{maxLen})
		}
		if worst {
			return
		}
	}
	t.Errorf("no model_warmup sample of the worst batch Triton can merge: batch_size %d (max_batch_size) with every input of dims [ %d ]",
		cfg.GetMaxBatchSize(), maxLen)
}

// base is a minimal config that passes Check; cases below break one thing.
const base = `
name: "m"
backend: "onnxruntime"
max_batch_size: 32
input [
  { name: "input_ids" data_type: TYPE_INT64 dims: [ -1 ] },
  { name: "attention_mask" data_type: TYPE_INT64 dims: -1 }
]
output [ { name: "last_hidden_state" data_type: TYPE_FP32 dims: [ -1, 8 ] } ]
dynamic_batching { default_queue_policy { max_queue_size: 4 } }
model_warmup [ {
  name: "w" batch_size: 2
  inputs { key: "input_ids" value: { data_type: TYPE_INT64 dims: [ 16 ] zero_data: true } }
  inputs { key: "attention_mask" value: { data_type: TYPE_INT64 dims: [ 16 ] zero_data: true } }
} ]
`

// reranker is base as a cross-encoder: task rerank, one logit per row.
var reranker = strings.Replace(base, `output [ { name: "last_hidden_state" data_type: TYPE_FP32 dims: [ -1, 8 ] } ]`,
	`output [ { name: "logits" data_type: TYPE_FP32 dims: [ 1 ] } ]
parameters { key: "task" value: { string_value: "rerank" } }`, 1)

const trt = `
optimization { execution_accelerators { gpu_execution_accelerator [ {
  name: "tensorrt"
  parameters { key: "trt_profile_min_shapes" value: "input_ids:1x1,attention_mask:1x1" }
  parameters { key: "trt_profile_opt_shapes" value: "input_ids:8x64,attention_mask:8x64" }
  parameters { key: "trt_profile_max_shapes" value: "input_ids:32x512,attention_mask:32x512" }
} ] } }
`

func parse(t *testing.T, text string) *tritonstubs.ModelConfig {
	t.Helper()
	cfg := &tritonstubs.ModelConfig{}
	if err := (prototext.UnmarshalOptions{DiscardUnknown: true}).Unmarshal([]byte(text), cfg); err != nil {
		t.Fatalf("parse: %v\n%s", err, text)
	}
	return cfg
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		edit    func(*tritonstubs.ModelConfig)
		wantErr string // "" = valid
	}{
		{name: "base is valid", text: base},
		{name: "tensorrt profile is valid", text: base + trt},
		{name: "sentence_embedding output", text: base, edit: func(c *tritonstubs.ModelConfig) {
			c.Output = []*tritonstubs.ModelOutput{{Name: "sentence_embedding", DataType: tritonstubs.DataType_TYPE_FP32, Dims: []int64{8}}}
		}},
		{name: "int32 inputs", text: strings.ReplaceAll(base, "TYPE_INT64", "TYPE_INT32")},
		{name: "no batching", text: base, edit: func(c *tritonstubs.ModelConfig) { c.MaxBatchSize = 0 },
			wantErr: "max_batch_size is 0"},
		{name: "unknown input", text: base, edit: func(c *tritonstubs.ModelConfig) { c.Input[1].Name = "pixel_values" },
			wantErr: `input "pixel_values" is not one the gateway sends`},
		{name: "missing mask", text: base, edit: func(c *tritonstubs.ModelConfig) { c.Input = c.Input[:1] },
			wantErr: `input "attention_mask" is missing`},
		{name: "float input", text: base, edit: func(c *tritonstubs.ModelConfig) { c.Input[0].DataType = tritonstubs.DataType_TYPE_FP32 },
			wantErr: `input "input_ids" is TYPE_FP32`},
		{name: "batch in dims", text: base, edit: func(c *tritonstubs.ModelConfig) { c.Input[0].Dims = []int64{-1, -1} },
			wantErr: `input "input_ids" dims [-1 -1]`},
		{name: "fp16 output", text: base, edit: func(c *tritonstubs.ModelConfig) { c.Output[0].DataType = tritonstubs.DataType_TYPE_FP16 }},
		{name: "bf16 output", text: base, edit: func(c *tritonstubs.ModelConfig) { c.Output[0].DataType = tritonstubs.DataType_TYPE_BF16 }},
		{name: "fp64 output", text: base, edit: func(c *tritonstubs.ModelConfig) { c.Output[0].DataType = tritonstubs.DataType_TYPE_FP64 },
			wantErr: "is TYPE_FP64, want TYPE_FP32, TYPE_FP16 or TYPE_BF16"},
		{name: "unknown output", text: base, edit: func(c *tritonstubs.ModelConfig) { c.Output[0].Name = "pooler_output" },
			wantErr: `output "pooler_output" is not one the gateway reads`},
		{name: "logits of an embedding model", text: base, edit: func(c *tritonstubs.ModelConfig) {
			c.Output = []*tritonstubs.ModelOutput{{Name: "logits", DataType: tritonstubs.DataType_TYPE_FP32, Dims: []int64{1}}}
		}, wantErr: `output "logits" is not one the gateway reads (last_hidden_state, sentence_embedding)`},
		{name: "reranker", text: reranker},
		{name: "reranker with token states", text: reranker, edit: func(c *tritonstubs.ModelConfig) {
			c.Output[0].Name = "last_hidden_state"
		}, wantErr: `output "last_hidden_state" is not one the gateway reads (logits)`},
		{name: "reranker logits of wrong rank", text: reranker, edit: func(c *tritonstubs.ModelConfig) { c.Output[0].Dims = []int64{-1, 1} },
			wantErr: `output "logits" dims [-1 1]: want 1 dims after the batch dim`},
		{name: "reranker logits without labels", text: reranker, edit: func(c *tritonstubs.ModelConfig) { c.Output[0].Dims = []int64{-1} },
			wantErr: "the last dim must be the number of labels"},
		{name: "token states of wrong rank", text: base, edit: func(c *tritonstubs.ModelConfig) { c.Output[0].Dims = []int64{8} },
			wantErr: "want 2 dims"},
		{name: "no dynamic batching", text: base, edit: func(c *tritonstubs.ModelConfig) { c.SchedulingChoice = nil },
			wantErr: "no dynamic_batching"},
		{name: "unbounded queue", text: base, edit: func(c *tritonstubs.ModelConfig) {
			c.GetDynamicBatching().DefaultQueuePolicy.MaxQueueSize = 0
		}, wantErr: "the queue is unbounded"},
		{name: "unbounded priority queue", text: base, edit: func(c *tritonstubs.ModelConfig) {
			c.GetDynamicBatching().PriorityQueuePolicy = map[uint64]*tritonstubs.ModelQueuePolicy{1: {}}
		}, wantErr: "priority_queue_policy[1]"},
		{name: "no warmup", text: base, edit: func(c *tritonstubs.ModelConfig) { c.ModelWarmup = nil },
			wantErr: "no model_warmup"},
		{name: "warmup misses an input", text: base, edit: func(c *tritonstubs.ModelConfig) {
			delete(c.ModelWarmup[0].Inputs, "attention_mask")
		}, wantErr: `input "attention_mask" has no data`},
		{name: "warmup batch too big", text: base, edit: func(c *tritonstubs.ModelConfig) { c.ModelWarmup[0].BatchSize = 33 },
			wantErr: "batch_size 33 is outside"},
		{name: "warmup with -1", text: base, edit: func(c *tritonstubs.ModelConfig) { c.ModelWarmup[0].Inputs["input_ids"].Dims = []int64{-1} },
			wantErr: "do not fit the model's"},
		{name: "warmup wrong dtype", text: base, edit: func(c *tritonstubs.ModelConfig) {
			c.ModelWarmup[0].Inputs["input_ids"].DataType = tritonstubs.DataType_TYPE_INT32
		}, wantErr: "the model's is TYPE_INT64"},
		{name: "warmup without data", text: base, edit: func(c *tritonstubs.ModelConfig) {
			c.ModelWarmup[0].Inputs["input_ids"].InputDataType = nil
		}, wantErr: "sets none of"},
		{name: "warmup extra input", text: base, edit: func(c *tritonstubs.ModelConfig) {
			c.ModelWarmup[0].Inputs["token_type_ids"] = proto.Clone(c.ModelWarmup[0].Inputs["input_ids"]).(*tritonstubs.ModelWarmup_Input)
		}, wantErr: `input "token_type_ids" is not a model input`},
		{name: "tensorrt without profiles", text: base + `optimization { execution_accelerators { gpu_execution_accelerator [ { name: "tensorrt" } ] } }`,
			wantErr: "trt_profile_min_shapes is unset"},
		{name: "tensorrt profile below max_batch_size", text: strings.ReplaceAll(base+trt, "32x512", "16x512"),
			wantErr: "max batch 16 < max_batch_size 32"},
		{name: "tensorrt profile misses an input", text: strings.ReplaceAll(base+trt, ",attention_mask:8x64", ""),
			wantErr: `tensorrt profile for "attention_mask"`},
		{name: "tensorrt profile min above opt", text: strings.ReplaceAll(base+trt, "input_ids:1x1", "input_ids:1x100"),
			wantErr: "min 100 <= opt 64"},
		{name: "tensorrt bad syntax", text: strings.ReplaceAll(base+trt, "input_ids:1x1", "input_ids=1x1"),
			wantErr: "is not name:AxB"},
		{name: "tensorrt engine cache with a prefix", text: strings.Replace(base+trt, `name: "tensorrt"`,
			`name: "tensorrt" parameters { key: "trt_engine_cache_enable" value: "true" } parameters { key: "trt_engine_cache_prefix" value: "m" }`, 1)},
		{name: "tensorrt engine cache without a prefix", text: strings.Replace(base+trt, `name: "tensorrt"`,
			`name: "tensorrt" parameters { key: "trt_engine_cache_enable" value: "On" }`, 1),
			wantErr: "trt_engine_cache_enable without trt_engine_cache_prefix"},
		{name: "tensorrt engine cache off needs no prefix", text: strings.Replace(base+trt, `name: "tensorrt"`,
			`name: "tensorrt" parameters { key: "trt_engine_cache_enable" value: "false" }`, 1)},
		{name: "warmup outside tensorrt profile", text: strings.ReplaceAll(base+trt, "dims: [ 16 ]", "dims: [ 1024 ]"),
			wantErr: "outside the tensorrt profile"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := parse(t, tt.text)
			if tt.edit != nil {
				tt.edit(cfg)
			}
			err := check(cfg)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Check = %v, want nil", err)
			case tt.wantErr != "" && err == nil:
				t.Errorf("Check = nil, want an error containing %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Errorf("Check = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name, dir, text string
		wantErr         string
	}{
		// Triton options outside our subset (sequence_batching, model_metrics,
		// rate_limiter, ...) are skipped, not errors.
		{name: "unknown fields are discarded", dir: "m", text: base +
			`instance_group [ { kind: KIND_GPU count: 1 rate_limiter { resources [ { name: "r" count: 1 } ] } } ]
			 model_metrics { metric_control [ { metric_identifier { family: "f" } } ] }
			 parameters { key: "intra_op_thread_count" value: { string_value: "2" } }`},
		{name: "name differs from directory", dir: "other", text: base, wantErr: `name "m" differs from its directory "other"`},
		{name: "unknown enum value", dir: "m", text: strings.Replace(base, "TYPE_INT64", "TYPE_INT65", 1), wantErr: "TYPE_INT65"},
		{name: "no name is fine", dir: "m", text: strings.Replace(base, `name: "m"`, "", 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), tt.dir, "config.pbtxt")
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(tt.text), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, err := modelrepo.Load(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Load = %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load = %v", err)
			}
			if len(cfg.GetInput()) != 2 || cfg.GetInput()[1].GetDims()[0] != -1 {
				t.Errorf("inputs = %v, want 2 with dims [-1] (both text forms of dims)", cfg.GetInput())
			}
		})
	}
}

// TestAcceleratorParameters checks the two "parameters" shapes of
// config.pbtxt land where they belong.
func TestAcceleratorParameters(t *testing.T) {
	cfg, err := modelrepo.Load(filepath.Join("..", "..", "model_repository", "bge-small-en-v1.5-trt", "config.pbtxt"))
	if err != nil {
		t.Fatal(err)
	}
	accs := cfg.GetOptimization().GetExecutionAccelerators().GetGpuExecutionAccelerator()
	if len(accs) != 1 || accs[0].GetName() != "tensorrt" {
		t.Fatalf("gpu accelerators = %v, want one tensorrt", accs)
	}
	p := accs[0].GetParameters()
	// The cache prefix is the model's own name: engines of two models never
	// share a file name.
	for key, want := range map[string]string{"precision_mode": "FP16", "trt_engine_cache_enable": "true",
		"trt_engine_cache_prefix": "bge-small-en-v1.5-trt"} {
		if p[key] != want {
			t.Errorf("tensorrt parameters[%q] = %q, want %q", key, p[key], want)
		}
	}
	top := parse(t, `parameters { key: "k" value: { string_value: "v" } }`)
	if got := top.GetParameters()["k"].GetStringValue(); got != "v" {
		t.Errorf("parameters[k].string_value = %q, want v", got)
	}
}
