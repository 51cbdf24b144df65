package testmodel

import (
	"cmp"
	"fmt"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/internal/onnxproto"
)

// The default-domain opsets the BERT graph can be written at. Each op is
// written in the form its opset defines, so a graph of an older opset is
// what an older export of the same model holds: bge-small-en-v1.5's
// onnx/model.onnx is opset 11.
const (
	// DefaultOpset is optimum's default export opset, and the one the
	// pinned hashes were made at.
	DefaultOpset = 17
	// MinOpset is the oldest: onnxpool needs 11 (CumSum, float Equal).
	MinOpset = 11
)

// WithOpset writes the graph at default-domain opset n, MinOpset to
// DefaultOpset. Below 17 LayerNormalization (opset 17) is written as the
// ReduceMean, Sub, Mul, Add, Sqrt and Div nodes older exports hold; below
// 15 the sequence length is Shape then Slice (Shape's start and end
// attributes are opset 15's); below 13 Unsqueeze and ReduceSum take their
// axes as an attribute (see onnxproto.AxesInput).
func WithOpset(n int) Option { return func(c *Config) { c.Opset = n } }

func checkOpset(n int) error {
	if n != 0 && (n < MinOpset || n > DefaultOpset) {
		return fmt.Errorf("testmodel: opset %d outside %d..%d", n, MinOpset, DefaultOpset)
	}
	return nil
}

// opset is c's default-domain opset.
func (c Config) opset() int64 { return int64(cmp.Or(c.Opset, DefaultOpset)) }

// axes is the axes operand of an op: its values, and the name of the
// initializer that holds them once an op takes them as an input. Ops that
// share the operand share the initializer, made when the first one needs it.
type axes struct {
	name string
	v    []int64
	made bool
}

// axesOp adds op on x over ax: as an input where the graph's opset has it,
// as the axes attribute before.
func (b *builder) axesOp(op, x string, ax *axes, attrs ...onnxproto.Attr) string {
	if !onnxproto.AxesInput(op, b.g.opset) {
		return b.op(op, []string{x}, append(attrs, onnxproto.IntsAttr("axes", ax.v...))...)
	}
	if !ax.made {
		b.ints(ax.name, ax.v...)
		ax.made = true
	}
	return b.op(op, []string{x, ax.name}, attrs...)
}

// seqLen returns input_ids' sequence length as a tensor of shape [1].
func (b *builder) seqLen() string {
	if b.g.opset >= 15 {
		return b.op("Shape", []string{gateway.TensorInputIDs}, onnxproto.IntAttr("start", 1), onnxproto.IntAttr("end", 2))
	}
	shape := b.op("Shape", []string{gateway.TensorInputIDs})
	return b.op("Slice", []string{shape, b.ints("/seq_len_start", 1), b.ints("/seq_len_end", 2)})
}

// layerNormOps writes LayerNormalization over the last axis (epsilon
// 1e-12) into out as separate nodes, the way exports before opset 17 do:
// (x - mean) / sqrt(var + eps) * gamma + beta, the variance biased.
func (b *builder) layerNormOps(x, prefix, gamma, beta, out string) {
	last := &axes{name: prefix + ".axes", v: []int64{-1}}
	d := b.op("Sub", []string{x, b.axesOp("ReduceMean", x, last)})
	variance := b.axesOp("ReduceMean", b.op("Mul", []string{d, d}), last)
	std := b.op("Sqrt", []string{b.op("Add", []string{variance, b.scalar(prefix+".epsilon", 1e-12)})})
	b.opTo(out, "Add", []string{b.op("Mul", []string{b.op("Div", []string{d, std}), gamma}), beta})
}
