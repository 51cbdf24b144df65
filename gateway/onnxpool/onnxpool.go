// Package onnxpool appends sentence-embedding pooling (CLS, mean or last
// token, honouring the attention mask) and optional L2 normalization to an
// ONNX encoder graph, so that a server running the graph (Triton) returns one
// [B, H] vector per input instead of [B, L, H] hidden states. The result is
// what the gateway's own pooling (package pooling) computes, within float32
// rounding. The appended ops take the form the graph's own default-domain
// opset defines (MinOpset to MaxOpset), so opset-11 exports pool as they
// are, without a new export.
//
// It edits the protobuf wire format directly, without generated ONNX types:
// nodes, constants and one graph output are appended to the graph, and every
// existing byte of the model is kept, so models whose weights live in an
// external-data file stay valid next to that file. It imports the standard
// library, protowire, gateway (the tensor names), gateway/pooling and
// gateway/internal/onnxproto (the encoder it shares with the test-model
// generator).
package onnxpool

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/internal/onnxproto"
	"github.com/embedgate/embedgate/gateway/pooling"
)

// The default-domain opsets Append accepts. Append writes each op in the
// form the graph's own opset defines (ReduceSum and Unsqueeze take their
// axes as an attribute before opset 13, as an input from 13: see
// onnxproto.AxesInput), so pooling a graph never changes its opset.
//
// MinOpset is 11 because CumSum first exists there and Equal first accepts
// floats there (Equal-7 takes integers only): opset-11 exports are common
// (bge-small-en-v1.5's onnx/model.onnx is one). MaxOpset is the newest
// opset ONNX Runtime 1.30 (the runtime the gateway pins) loads; the ops
// Append writes (Cast, CumSum, Equal, And, Unsqueeze, Where, ReduceSum,
// Max, Div, Mul, Sqrt) take the inputs and attributes Append gives them from
// opset 13 through it: their later versions only add element types and
// optional attributes (onnx/docs/Changelog.md). A newer opset may change a
// signature, as ReduceSum-13 did, so it is refused until checked.
const (
	MinOpset = 11
	MaxOpset = 26
)

// Options say what to append. The zero value is CLS pooling without
// normalization, reading last_hidden_state and attention_mask and writing
// sentence_embedding.
type Options struct {
	Pooling      pooling.Method // pooling.CLS, pooling.Mean or pooling.LastToken
	Normalize    bool           // L2-normalize: x / max(||x||, 1e-12)
	HiddenOutput string         // graph output [B, L, H]; "" = "last_hidden_state"
	MaskInput    string         // graph input [B, L]; "" = "attention_mask"
	Output       string         // the new output [B, H]; "" = "sentence_embedding"
}

func (o Options) withDefaults() (Options, error) {
	switch o.Pooling {
	case pooling.CLS, pooling.Mean, pooling.LastToken:
	default:
		return o, fmt.Errorf("unknown pooling %v (want cls, mean or last-token)", o.Pooling)
	}
	if o.HiddenOutput == "" {
		o.HiddenOutput = gateway.TensorLastHiddenState
	}
	if o.MaskInput == "" {
		o.MaskInput = gateway.TensorAttentionMask
	}
	if o.Output == "" {
		o.Output = gateway.TensorSentenceEmbedding
	}
	return o, nil
}

// Append returns model with opts' pooling appended as a new graph output.
// It refuses models that already have that output name, lack the hidden
// output or the mask input, or import a default opset outside MinOpset to
// MaxOpset. model is not modified.
func Append(model []byte, opts Options) ([]byte, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("onnxpool: %w", err)
	}
	m, err := parseModel(model)
	if err != nil {
		return nil, fmt.Errorf("onnxpool: read model: %w", err)
	}
	if m.opset < MinOpset || m.opset > MaxOpset {
		return nil, fmt.Errorf("onnxpool: model imports default opset %d, want %d to %d "+
			"(export again with --opset 17)", m.opset, MinOpset, MaxOpset)
	}
	g, err := parseGraph(m.graph)
	if err != nil {
		return nil, fmt.Errorf("onnxpool: read graph: %w", err)
	}
	add, err := build(g, m.opset, opts)
	if err != nil {
		return nil, fmt.Errorf("onnxpool: %w", err)
	}
	// Splice: the bytes before the graph field, the graph field re-tagged
	// with its new length (old content + appended fields), the bytes after.
	n := len(m.graph) + len(add)
	out := make([]byte, 0, len(model)+len(add)+protowire.SizeVarint(uint64(n)))
	out = append(out, model[:m.graphStart]...)
	out = protowire.AppendTag(out, modelGraph, protowire.BytesType)
	out = protowire.AppendVarint(out, uint64(n))
	out = append(out, m.graph...)
	out = append(out, add...)
	return append(out, model[m.graphEnd:]...), nil
}

// model is what Append needs of a ModelProto.
type model struct {
	graph                []byte // the GraphProto's bytes
	graphStart, graphEnd int    // the whole graph field (tag to end) in the model
	opset                int64  // the default domain's version; 0 = not imported
}

func parseModel(b []byte) (model, error) {
	var m model
	graphs := 0
	for off := 0; off < len(b); {
		num, typ, n := protowire.ConsumeTag(b[off:])
		if n < 0 {
			return m, fmt.Errorf("at byte %d: %w", off, protowire.ParseError(n))
		}
		start := off
		off += n
		switch {
		case num == modelGraph && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b[off:])
			if n < 0 {
				return m, fmt.Errorf("graph at byte %d: %w", start, protowire.ParseError(n))
			}
			off += n
			m.graph, m.graphStart, m.graphEnd = v, start, off
			graphs++
		case num == modelOpset && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b[off:])
			if n < 0 {
				return m, fmt.Errorf("opset_import at byte %d: %w", start, protowire.ParseError(n))
			}
			off += n
			if err := parseOpset(v, &m); err != nil {
				return m, fmt.Errorf("opset_import at byte %d: %w", start, err)
			}
		case num == modelGraph || num == modelOpset:
			return m, fmt.Errorf("field %d at byte %d has wire type %d, want bytes: not an ONNX model", num, start, typ)
		default:
			n := protowire.ConsumeFieldValue(num, typ, b[off:])
			if n < 0 {
				return m, fmt.Errorf("field %d at byte %d: %w", num, start, protowire.ParseError(n))
			}
			off += n
		}
	}
	switch {
	case graphs == 0:
		return m, fmt.Errorf("no graph: not an ONNX model")
	case graphs > 1:
		// Decoders merge repeated message fields; splicing one would be wrong.
		return m, fmt.Errorf("%d graph fields, want 1", graphs)
	case m.opset == 0:
		return m, fmt.Errorf("no default-domain opset_import")
	}
	return m, nil
}

// parseOpset reads one OperatorSetIdProto (domain 1, version 2) and keeps
// the version of the default domain ("" or "ai.onnx").
func parseOpset(b []byte, m *model) error {
	domain, version := "", int64(0)
	err := walk(b, func(num protowire.Number, typ protowire.Type, val []byte, v uint64) error {
		switch num {
		case 1:
			if err := wantType("domain", typ, protowire.BytesType); err != nil {
				return err
			}
			domain = string(val)
		case 2:
			if err := wantType("version", typ, protowire.VarintType); err != nil {
				return err
			}
			version = int64(v)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if domain == "" || domain == "ai.onnx" {
		m.opset = version
	}
	return nil
}

// graph is what Append needs of a GraphProto.
type graph struct {
	used    map[string]bool // every tensor and node name at the top level
	inputs  []valueInfo
	outputs []valueInfo
}

func parseGraph(b []byte) (*graph, error) {
	g := &graph{used: map[string]bool{}}
	use := func(names []string, err error) error {
		for _, s := range names {
			g.used[s] = true
		}
		return err
	}
	err := walk(b, func(num protowire.Number, typ protowire.Type, val []byte, _ uint64) error {
		switch num {
		case graphNode, graphInitializer, graphInput, graphOutput, graphValueInfo, graphSparseInit:
			if err := wantType(fmt.Sprintf("graph field %d", num), typ, protowire.BytesType); err != nil {
				return err
			}
		default:
			return nil
		}
		switch num {
		case graphNode: // inputs 1, outputs 2, name 3
			for _, f := range []protowire.Number{1, 2, 3} {
				if err := use(stringsOf(val, f)); err != nil {
					return fmt.Errorf("node: %w", err)
				}
			}
		case graphInitializer: // TensorProto.name 8
			if err := use(stringsOf(val, 8)); err != nil {
				return fmt.Errorf("initializer: %w", err)
			}
		case graphSparseInit: // SparseTensorProto.values 1 → TensorProto.name 8
			err := walk(val, func(num protowire.Number, typ protowire.Type, val []byte, _ uint64) error {
				if num != 1 || typ != protowire.BytesType {
					return nil
				}
				return use(stringsOf(val, 8))
			})
			if err != nil {
				return fmt.Errorf("sparse initializer: %w", err)
			}
		case graphInput, graphOutput, graphValueInfo:
			vi, err := parseValueInfo(val)
			if err != nil {
				return fmt.Errorf("value info %q: %w", vi.name, err)
			}
			g.used[vi.name] = true
			if num == graphInput {
				g.inputs = append(g.inputs, vi)
			} else if num == graphOutput {
				g.outputs = append(g.outputs, vi)
			}
		}
		return nil
	})
	return g, err
}

func find(vs []valueInfo, name string) (valueInfo, bool) {
	i := slices.IndexFunc(vs, func(v valueInfo) bool { return v.name == name })
	if i < 0 {
		return valueInfo{}, false
	}
	return vs[i], true
}

// names lists vs for an error message; old exports list every weight as a
// graph input, so long lists are cut.
func names(vs []valueInfo) string {
	const most = 10
	var s []string
	for _, v := range vs[:min(len(vs), most)] {
		s = append(s, v.name)
	}
	if len(vs) > most {
		s = append(s, fmt.Sprintf("and %d more", len(vs)-most))
	}
	return strings.Join(s, ", ")
}

// builder collects the appended nodes and constants under names no existing
// tensor uses.
type builder struct {
	prefix string
	opset  int64 // the graph's default-domain opset: the form of each op
	used   map[string]bool
	nodes  []onnxproto.Node
	inits  []onnxproto.Tensor
	err    error // the first name collision
}

func (b *builder) fresh(base string) string {
	name := b.prefix + base + "_" + strconv.Itoa(len(b.nodes)+len(b.inits))
	if b.used[name] && b.err == nil {
		b.err = fmt.Errorf("the graph already has a tensor named %q", name)
	}
	b.used[name] = true
	return name
}

// op adds a node and returns the fresh name of its output.
func (b *builder) op(op string, inputs []string, attrs ...onnxproto.Attr) string {
	out := b.fresh(op)
	b.nodes = append(b.nodes, onnxproto.Node{Op: op, Name: b.fresh(op + "_node"), Inputs: inputs, Outputs: []string{out}, Attrs: attrs})
	return out
}

func (b *builder) init(t onnxproto.Tensor) string {
	t.Name = b.fresh(t.Name)
	b.inits = append(b.inits, t)
	return t.Name
}

// axesOp adds op over axes: an input from the opset where op takes one, the
// axes attribute before it.
func (b *builder) axesOp(op, x string, axes []int64, attrs ...onnxproto.Attr) string {
	if onnxproto.AxesInput(op, b.opset) {
		name := "axes"
		for _, a := range axes {
			name += "_" + strconv.FormatInt(a, 10)
		}
		return b.op(op, []string{x, b.init(onnxproto.Int64Tensor(name, []int64{int64(len(axes))}, axes))}, attrs...)
	}
	return b.op(op, []string{x}, append(attrs, onnxproto.IntsAttr("axes", axes...))...)
}

// build checks the graph against opts and returns the encoded graph fields
// to append: nodes, initializers and the new output.
//
// Every pooling is a masked sum over the sequence axis: sel[b,l] marks the
// positions to keep, Where zeroes the others (a select, not a product, so a
// NaN or Inf in a padded position cannot leak in), and ReduceSum adds them.
// Mean keeps the unmasked positions and divides by their count (clamped at
// 1e-9 like sentence-transformers); CLS keeps the first unmasked position
// (a running count equal to 1 on an unmasked position) and last-token the
// last one (the same count, summed from the end). All three are exact for
// left and right padding (and masks with holes), and a fully masked row
// pools to zeros, as in package pooling.
func build(g *graph, opset int64, opts Options) ([]byte, error) {
	if _, ok := find(g.outputs, opts.Output); ok {
		return nil, fmt.Errorf("the model already has output %q (already pooled?)", opts.Output)
	}
	if g.used[opts.Output] {
		return nil, fmt.Errorf("the graph already has a tensor named %q: choose another output name", opts.Output)
	}
	hidden, ok := find(g.outputs, opts.HiddenOutput)
	if !ok {
		return nil, fmt.Errorf("the model has no output %q (outputs: %s)", opts.HiddenOutput, names(g.outputs))
	}
	mask, ok := find(g.inputs, opts.MaskInput)
	if !ok {
		return nil, fmt.Errorf("the model has no input %q (inputs: %s)", opts.MaskInput, names(g.inputs))
	}
	outDims, err := checkHidden(hidden)
	if err != nil {
		return nil, err
	}
	if err := checkMask(mask); err != nil {
		return nil, err
	}

	b := &builder{prefix: "/onnxpool/" + opts.Output + "/", opset: opset, used: g.used}
	x := hidden.name
	if hidden.elem != onnxproto.DTFloat && hidden.elem != onnxproto.DTUndefined {
		x = b.op("Cast", []string{x}, onnxproto.IntAttr("to", onnxproto.DTFloat))
	}
	maskB := b.op("Cast", []string{mask.name}, onnxproto.IntAttr("to", onnxproto.DTBool)) // any non-zero attends
	maskF := b.op("Cast", []string{maskB}, onnxproto.IntAttr("to", onnxproto.DTFloat))
	sel := maskB
	if opts.Pooling != pooling.Mean {
		var reverse []onnxproto.Attr
		if opts.Pooling == pooling.LastToken {
			reverse = []onnxproto.Attr{onnxproto.IntAttr("reverse", 1)}
		}
		count := b.op("CumSum", []string{maskF, b.init(onnxproto.Int64Tensor("axis_1", nil, []int64{1}))}, reverse...)
		first := b.op("Equal", []string{count, b.init(onnxproto.FloatTensor("one", nil, []float32{1}))})
		sel = b.op("And", []string{maskB, first})
	}
	axis1 := []int64{1}
	sel3 := b.axesOp("Unsqueeze", sel, []int64{2})
	kept := b.op("Where", []string{sel3, x, b.init(onnxproto.FloatTensor("zero", nil, []float32{0}))})
	pooled := b.axesOp("ReduceSum", kept, axis1, onnxproto.IntAttr("keepdims", 0))
	if opts.Pooling == pooling.Mean {
		count := b.axesOp("ReduceSum", maskF, axis1, onnxproto.IntAttr("keepdims", 1))
		count = b.op("Max", []string{count, b.init(onnxproto.FloatTensor("count_min", nil, []float32{1e-9}))})
		pooled = b.op("Div", []string{pooled, count})
	}
	if opts.Normalize {
		sq := b.axesOp("ReduceSum", b.op("Mul", []string{pooled, pooled}), axis1, onnxproto.IntAttr("keepdims", 1))
		norm := b.op("Max", []string{b.op("Sqrt", []string{sq}), b.init(onnxproto.FloatTensor("norm_min", nil, []float32{1e-12}))})
		b.op("Div", []string{pooled, norm})
	}
	// The last node computes the result: it writes the output directly
	// (nothing reads its fresh name).
	b.nodes[len(b.nodes)-1].Outputs = []string{opts.Output}
	if b.err != nil {
		return nil, b.err
	}

	var add []byte
	for _, n := range b.nodes {
		add = onnxproto.AppendMessage(add, graphNode, n.Encode())
	}
	for _, t := range b.inits {
		add = onnxproto.AppendMessage(add, graphInitializer, t.Encode())
	}
	out := onnxproto.ValueInfo{Name: opts.Output, Elem: onnxproto.DTFloat, Dims: outDims}
	return onnxproto.AppendMessage(add, graphOutput, out.Encode()), nil
}

// checkHidden accepts a float tensor output of rank 3 (or of unknown type
// or shape) and returns the new output's dims: the hidden output's batch
// dim and hidden size where known, else the symbols batch_size and
// hidden_size.
func checkHidden(v valueInfo) ([]onnxproto.Dim, error) {
	out := []onnxproto.Dim{{Param: "batch_size"}, {Param: "hidden_size"}}
	if !v.typed {
		return out, nil // no type stated: the runtime infers it
	}
	if !v.tensor {
		return nil, fmt.Errorf("output %q is not a tensor", v.name)
	}
	switch v.elem {
	case onnxproto.DTUndefined, onnxproto.DTFloat, onnxproto.DTFloat16, onnxproto.DTDouble, onnxproto.DTBFloat16:
	default:
		return nil, fmt.Errorf("output %q has element type %d, want a float type", v.name, v.elem)
	}
	if !v.hasShape {
		return out, nil
	}
	if len(v.dims) != 3 {
		return nil, fmt.Errorf("output %q has rank %d, want 3 ([batch, sequence, hidden])", v.name, len(v.dims))
	}
	if d := v.dims[0]; d.Value > 0 || d.Param != "" {
		out[0] = d
	}
	if d := v.dims[2]; d.Value > 0 || d.Param != "" {
		out[1] = d
	}
	return out, nil
}

// checkMask accepts a numeric or bool tensor input of rank 2 (or of unknown
// shape).
func checkMask(v valueInfo) error {
	if !v.typed {
		return nil
	}
	if !v.tensor {
		return fmt.Errorf("input %q is not a tensor", v.name)
	}
	switch v.elem {
	case onnxproto.DTString, onnxproto.DTComplex64, onnxproto.DTComplex128:
		return fmt.Errorf("input %q has element type %d, want an integer type", v.name, v.elem)
	}
	if v.hasShape && len(v.dims) != 2 {
		return fmt.Errorf("input %q has rank %d, want 2 ([batch, sequence])", v.name, len(v.dims))
	}
	return nil
}
