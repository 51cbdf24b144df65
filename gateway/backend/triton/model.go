package triton

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/modelrepo"
	"github.com/embedgate/embedgate/tritonstubs"
)

// input is one tensor the gateway sends, in the order the model lists it.
type input struct {
	name  string
	int32 bool // INT32 on the wire (TensorRT engines), else INT64
}

// plan is what Embed needs to know about the served model, read once from
// ModelMetadata and ModelConfig.
type plan struct {
	spec   gateway.ModelSpec
	inputs []input
	output string
	wire   wireFloat // the output's datatype, decoded into FP32
}

// describe derives the plan from the model's metadata and normalized
// config. Every error says what to change in config.pbtxt or the export.
func describe(model string, meta *tritonstubs.ModelMetadataResponse, cfg *tritonstubs.ModelConfig) (plan, error) {
	p := plan{spec: gateway.ModelSpec{Name: model, MaxBatch: int(cfg.GetMaxBatchSize())}}
	if p.spec.MaxBatch < 0 {
		return p, fmt.Errorf("model %s: max_batch_size %d < 0", model, p.spec.MaxBatch)
	}
	optional := map[string]bool{}
	for _, in := range cfg.GetInput() {
		optional[in.GetName()] = in.GetOptional()
	}
	var dtype string
	for _, in := range meta.GetInputs() {
		switch in.GetName() {
		case gateway.TensorInputIDs, gateway.TensorAttentionMask, gateway.TensorTokenTypeIDs, gateway.TensorPositionIDs:
		default:
			if optional[in.GetName()] {
				continue // Triton runs without it
			}
			// No advice to mark it optional: Triton's ONNX Runtime backend
			// refuses to load a batching model with an optional input
			// (onnxruntime_backend r25.06, src/onnxruntime.cc,
			// ValidateInputs: "optional input ... is not supported for
			// models that support batching").
			return p, fmt.Errorf("model %s has input %q that the gateway cannot fill: it sends only %s, %s, %s and %s (export the model without it)",
				model, in.GetName(), gateway.TensorInputIDs, gateway.TensorAttentionMask, gateway.TensorTokenTypeIDs, gateway.TensorPositionIDs)
		}
		var i32 bool
		switch in.GetDatatype() {
		case "INT64":
		case "INT32":
			i32 = true
		default:
			return p, fmt.Errorf("model %s input %s is %s; the gateway sends INT64 or INT32 token ids (set data_type: TYPE_INT64 or TYPE_INT32 in config.pbtxt)",
				model, in.GetName(), in.GetDatatype())
		}
		if dtype != "" && dtype != in.GetDatatype() {
			return p, fmt.Errorf("model %s mixes %s and %s inputs; give all token inputs one data_type", model, dtype, in.GetDatatype())
		}
		dtype = in.GetDatatype()
		if err := checkInputShape(model, p.spec.MaxBatch, in); err != nil {
			return p, err
		}
		p.inputs = append(p.inputs, input{name: in.GetName(), int32: i32})
		p.spec.HasTokenTypeIDs = p.spec.HasTokenTypeIDs || in.GetName() == gateway.TensorTokenTypeIDs
		p.spec.HasPositionIDs = p.spec.HasPositionIDs || in.GetName() == gateway.TensorPositionIDs
	}
	names := make([]string, len(p.inputs))
	for i, in := range p.inputs {
		names[i] = in.name
	}
	if !slices.Contains(names, gateway.TensorInputIDs) || !slices.Contains(names, gateway.TensorAttentionMask) {
		return p, fmt.Errorf("model %s has inputs [%s]; the gateway needs %s and %s (and optionally %s and %s): check the input names in config.pbtxt",
			model, strings.Join(names, ", "), gateway.TensorInputIDs, gateway.TensorAttentionMask, gateway.TensorTokenTypeIDs, gateway.TensorPositionIDs)
	}
	if dtype == "INT32" {
		p.spec.InputDType = gateway.Int32
	}
	return p, describeOutput(model, meta, cfg, &p)
}

// warnConfig logs, one warning each, the ways the model's config as Triton
// reports it (normalized, Triton's defaults filled in) does not fit the
// gateway, by the checks the shipped config.pbtxt files pass. They do not
// fail Open: what the gateway cannot run at all, describe refuses; the rest
// it runs with, at a cost under load or at startup (an unbounded queue, no
// warmup, no Triton batching, an input it never sends).
func warnConfig(logger *slog.Logger, model string, cfg *tritonstubs.ModelConfig) {
	inputs := []string{gateway.TensorInputIDs, gateway.TensorAttentionMask, gateway.TensorTokenTypeIDs, gateway.TensorPositionIDs}
	outputs := []string{gateway.TensorLastHiddenState, gateway.TensorSentenceEmbedding}
	if hasOutput(cfg, gateway.TensorLogits) {
		outputs = []string{gateway.TensorLogits} // a cross-encoder: nothing else to read
	}
	for _, err := range modelrepo.Problems(cfg, inputs, outputs) {
		logger.Warn("triton model config does not fit the gateway", "model", model, "problem", err.Error())
	}
}

// hasOutput reports whether cfg declares an output called name.
func hasOutput(cfg *tritonstubs.ModelConfig, name string) bool {
	return slices.ContainsFunc(cfg.GetOutput(), func(o *tritonstubs.ModelOutput) bool { return o.GetName() == name })
}

// checkInputShape accepts [B, L] with L variable: the batcher sends batches
// of any length, and B is -1 (Triton batching) or the gateway's own.
func checkInputShape(model string, maxBatch int, in *tritonstubs.ModelMetadataResponse_TensorMetadata) error {
	shape := in.GetShape()
	if len(shape) != 2 {
		return fmt.Errorf("model %s input %s has shape %v; the gateway sends [batch, length] (dims: [ -1 ] with max_batch_size > 0)", model, in.GetName(), shape)
	}
	if shape[0] != -1 {
		if maxBatch == 0 {
			return fmt.Errorf("model %s input %s has a fixed batch dim %d with max_batch_size 0; set max_batch_size > 0 with dims [ -1 ], or dims [ -1, -1 ]", model, in.GetName(), shape[0])
		}
		return fmt.Errorf("model %s input %s has shape %v; want a variable batch dim", model, in.GetName(), shape)
	}
	if shape[1] != -1 {
		return fmt.Errorf("model %s input %s has a fixed length %d; the gateway sends length-sorted batches of any length: set its dims to [ -1 ]", model, in.GetName(), shape[1])
	}
	return nil
}

// describeOutput picks the output as the onnx backend does: the model's
// own pooling (sentence_embedding), else token states, else a
// cross-encoder's logits; it reads the hidden size (num_labels for logits)
// from the output's last dim.
func describeOutput(model string, meta *tritonstubs.ModelMetadataResponse, cfg *tritonstubs.ModelConfig, p *plan) error {
	var names []string
	for _, o := range meta.GetOutputs() {
		names = append(names, o.GetName())
	}
	i, kind := gateway.PickOutput(names)
	if i < 0 {
		return fmt.Errorf("model %s has outputs [%s]; the gateway reads %s [batch, hidden], %s [batch, length, hidden] or a cross-encoder's %s [batch, num_labels]: rename the output in the export and config.pbtxt",
			model, strings.Join(names, ", "), gateway.TensorSentenceEmbedding, gateway.TensorLastHiddenState, gateway.TensorLogits)
	}
	out := meta.GetOutputs()[i]
	p.spec.Output = kind
	p.output = out.GetName()
	wire, err := parseWireFloat(out.GetDatatype())
	if err != nil {
		return fmt.Errorf("model %s output %s is %s; the gateway reads FP32, FP16 or BF16 (cast the output in the export, data_type: TYPE_FP32)", model, out.GetName(), out.GetDatatype())
	}
	p.wire = wire
	rank := 3
	if p.spec.Output != gateway.Hidden {
		rank = 2 // [batch, hidden] or [batch, num_labels]
	}
	shape := out.GetShape()
	if len(shape) != rank {
		return fmt.Errorf("model %s output %s has shape %v, want rank %d including the batch dim", model, out.GetName(), shape, rank)
	}
	hidden := shape[rank-1]
	if hidden <= 0 {
		// Metadata can leave it symbolic; the config may still declare it.
		for _, o := range cfg.GetOutput() {
			if d := o.GetDims(); o.GetName() == out.GetName() && len(d) > 0 {
				hidden = d[len(d)-1]
			}
		}
	}
	if hidden <= 0 {
		return fmt.Errorf("model %s output %s has shape %v: hidden size unknown; declare the last dim in config.pbtxt (e.g. dims: [ -1, 384 ])", model, out.GetName(), shape)
	}
	p.spec.Hidden = int(hidden)
	return nil
}
