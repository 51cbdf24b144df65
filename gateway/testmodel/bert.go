package testmodel

import (
	"fmt"
	"math"
	"strconv"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/internal/onnxproto"
)

// builder accumulates the nodes and initialisers of a BERT encoder graph.
// Weights are drawn in the order the graph asks for them, and the pooled
// head draws none, so a model with and without sentence_embedding share
// every weight.
type builder struct {
	g   graph
	rng rng
	n   int // node counter, for unique names
}

// tmp returns a fresh intermediate tensor name.
func (b *builder) tmp(op string) string {
	b.n++
	return "/" + op + "_" + strconv.Itoa(b.n)
}

// op adds a node with one output and returns that output's name.
func (b *builder) op(op string, inputs []string, attrs ...onnxproto.Attr) string {
	out := b.tmp(op)
	b.opTo(out, op, inputs, attrs...)
	return out
}

func (b *builder) opTo(out, op string, inputs []string, attrs ...onnxproto.Attr) {
	b.g.nodes = append(b.g.nodes, onnxproto.Node{Op: op, Name: out + "_node", Inputs: inputs, Outputs: []string{out}, Attrs: attrs})
}

func (b *builder) init(t onnxproto.Tensor) string {
	b.g.inits = append(b.g.inits, t)
	return t.Name
}

// weight adds a seeded N(mean, 0.02) float initialiser: BERT's
// initializer_range.
func (b *builder) weight(name string, mean float64, dims ...int64) string {
	return b.weightStd(name, mean, 0.02, dims...)
}

// weightStd adds a seeded N(mean, std) float initialiser.
func (b *builder) weightStd(name string, mean, std float64, dims ...int64) string {
	n := int64(1)
	for _, d := range dims {
		n *= d
	}
	return b.init(onnxproto.FloatTensor(name, dims, b.rng.fill(int(n), mean, std)))
}

// scalar adds a float constant of shape [] named after its use.
func (b *builder) scalar(name string, v float32) string {
	return b.init(onnxproto.FloatTensor(name, nil, []float32{v}))
}

func (b *builder) ints(name string, v ...int64) string {
	return b.init(onnxproto.Int64Tensor(name, []int64{int64(len(v))}, v))
}

func (b *builder) layerNorm(x, prefix string, hidden int64, out string) string {
	gamma := b.weight(prefix+".weight", 1, hidden)
	beta := b.weight(prefix+".bias", 0, hidden)
	if out == "" {
		out = b.tmp("LayerNormalization")
	}
	if b.g.opset < 17 {
		b.layerNormOps(x, prefix, gamma, beta, out)
		return out
	}
	b.opTo(out, "LayerNormalization", []string{x, gamma, beta},
		onnxproto.IntAttr("axis", -1),
		onnxproto.FloatAttr("epsilon", 1e-12))
	return out
}

// linear is x·W + b with W stored [in, out] under HF parameter names.
func (b *builder) linear(x, prefix string, in, out int64) string {
	w := b.weight(prefix+".weight", 0, in, out)
	bias := b.weight(prefix+".bias", 0, out)
	return b.op("Add", []string{b.op("MatMul", []string{x, w}), bias})
}

// buildBERT returns the encoded ONNX BERT model for cfg. The steps run in
// the order that draws the weights and numbers the nodes, which fixes the
// bytes.
func buildBERT(cfg Config) ([]byte, error) {
	a := cfg.arch()
	if a.Hidden%a.Heads != 0 {
		return nil, fmt.Errorf("testmodel: hidden %d not divisible by %d heads", a.Hidden, a.Heads)
	}
	H := int64(a.Hidden)
	b := &builder{rng: rng{state: cfg.Seed}}
	b.g.name = "main_graph"
	b.g.opset = cfg.opset()
	b.inputs(cfg.NoTokenTypeIDs)
	x := b.embeddings(a, cfg.NoTokenTypeIDs)
	maskF, add, one := b.attentionMask()
	x = b.encoder(a, x, add, one)
	if cfg.NumLabels > 0 {
		b.classifier(x, H, int64(cfg.NumLabels))
		return encodeModel(&b.g, "embedgate-testmodel"), nil
	}
	b.g.outputs = []onnxproto.ValueInfo{{Name: gateway.TensorLastHiddenState, Elem: onnxproto.DTFloat,
		Dims: []onnxproto.Dim{{Param: "batch_size"}, {Param: "sequence_length"}, {Value: H}}}}
	if cfg.Pooled {
		b.meanPooled(x, maskF, H)
	}
	return encodeModel(&b.g, "embedgate-testmodel"), nil
}

// inputs declares the token inputs, [batch_size, sequence_length] INT64.
func (b *builder) inputs(noTokenTypeIDs bool) {
	dyn := []onnxproto.Dim{{Param: "batch_size"}, {Param: "sequence_length"}}
	b.g.inputs = []onnxproto.ValueInfo{
		{Name: gateway.TensorInputIDs, Elem: onnxproto.DTInt64, Dims: dyn},
		{Name: gateway.TensorAttentionMask, Elem: onnxproto.DTInt64, Dims: dyn},
	}
	if !noTokenTypeIDs {
		b.g.inputs = append(b.g.inputs, onnxproto.ValueInfo{Name: gateway.TensorTokenTypeIDs, Elem: onnxproto.DTInt64, Dims: dyn})
	}
}

// embeddings is word + position + token type, then LayerNorm.
func (b *builder) embeddings(a Arch, noTokenTypeIDs bool) string {
	H := int64(a.Hidden)
	word := b.weight("embeddings.word_embeddings.weight", 0, int64(a.Vocab), H)
	pos := b.weight("embeddings.position_embeddings.weight", 0, int64(a.MaxPos), H)
	typ := b.weight("embeddings.token_type_embeddings.weight", 0, 2, H)
	posIDs := make([]int64, a.MaxPos)
	for i := range posIDs {
		posIDs[i] = int64(i)
	}
	posBuf := b.init(onnxproto.Int64Tensor("embeddings.position_ids", []int64{1, int64(a.MaxPos)}, posIDs))
	x := b.op("Gather", []string{word, gateway.TensorInputIDs})
	seqLen := b.seqLen()
	posSlice := b.op("Slice", []string{posBuf, b.ints("/zero_1d", 0), seqLen, b.ints("/axis_1", 1)})
	x = b.op("Add", []string{x, b.op("Gather", []string{pos, posSlice})})
	if noTokenTypeIDs {
		// Exports without the input use type 0 everywhere: one row, broadcast.
		zero := b.init(onnxproto.Int64Tensor("/type_zero", nil, []int64{0}))
		x = b.op("Add", []string{x, b.op("Gather", []string{typ, zero})})
	} else {
		x = b.op("Add", []string{x, b.op("Gather", []string{typ, gateway.TensorTokenTypeIDs})})
	}
	return b.layerNorm(x, "embeddings.LayerNorm", H, "")
}

// attentionMask returns the mask as floats [B,S], the additive mask
// [B,1,1,S] (0 where attended, float32 min where padded, as HF's eager
// attention exports it) and the constant 1 it made, which the GELUs reuse.
func (b *builder) attentionMask() (maskF, add, one string) {
	maskF = b.op("Cast", []string{gateway.TensorAttentionMask}, onnxproto.IntAttr("to", onnxproto.DTFloat))
	mask4 := b.axesOp("Unsqueeze", maskF, &axes{name: "/axes_1_2", v: []int64{1, 2}})
	one = b.scalar("/one", 1)
	add = b.op("Mul", []string{b.op("Sub", []string{one, mask4}), b.scalar("/float_min", -math.MaxFloat32)})
	return maskF, add, one
}

// heads holds the constants every layer's self-attention shares.
type heads struct {
	split, merge, scale string // reshape to heads, back, and sqrt(head dim)
	add                 string // the additive attention mask
}

// encoder runs the post-LayerNorm BERT layers on x; the last one's output
// is last_hidden_state.
func (b *builder) encoder(a Arch, x, add, one string) string {
	H, n := int64(a.Hidden), int64(a.Heads)
	d := H / n
	hs := heads{add: add}
	hs.split = b.ints("/split_heads", 0, 0, n, d)
	hs.merge = b.ints("/merge_heads", 0, 0, H)
	hs.scale = b.scalar("/sqrt_head_dim", float32(math.Sqrt(float64(d))))
	for l := 0; l < a.Layers; l++ {
		p := fmt.Sprintf("encoder.layer.%d.", l)
		attnOut := b.selfAttention(x, p, H, hs)
		x = b.layerNorm(b.op("Add", []string{attnOut, x}), p+"attention.output.LayerNorm", H, "")
		out := b.feedForward(x, p, H, int64(a.Intermediate), one)
		name := ""
		if l == a.Layers-1 {
			name = gateway.TensorLastHiddenState
		}
		x = b.layerNorm(b.op("Add", []string{out, x}), p+"output.LayerNorm", H, name)
	}
	return x
}

// selfAttention is layer p's multi-head attention on x, through its output
// projection.
func (b *builder) selfAttention(x, p string, H int64, hs heads) string {
	perm := func(p ...int64) onnxproto.Attr { return onnxproto.IntsAttr("perm", p...) }
	split := func(name string, pm onnxproto.Attr) string {
		return b.op("Transpose", []string{b.op("Reshape", []string{b.linear(x, p+"attention.self."+name, H, H), hs.split})}, pm)
	}
	q := split("query", perm(0, 2, 1, 3))
	k := split("key", perm(0, 2, 3, 1))
	v := split("value", perm(0, 2, 1, 3))
	s := b.op("Div", []string{b.op("MatMul", []string{q, k}), hs.scale})
	probs := b.op("Softmax", []string{b.op("Add", []string{s, hs.add})}, onnxproto.IntAttr("axis", -1))
	ctx := b.op("Transpose", []string{b.op("MatMul", []string{probs, v})}, perm(0, 2, 1, 3))
	ctx = b.op("Reshape", []string{ctx, hs.merge})
	return b.linear(ctx, p+"attention.output.dense", H, H)
}

// feedForward is layer p's FFN with exact (erf) GELU:
// h * 0.5 * (1 + erf(h / sqrt 2)).
func (b *builder) feedForward(x, p string, H, inter int64, one string) string {
	h := b.linear(x, p+"intermediate.dense", H, inter)
	e := b.op("Erf", []string{b.op("Div", []string{h, b.scalar(p+"gelu.sqrt2", math.Sqrt2)})})
	g := b.op("Mul", []string{b.op("Mul", []string{h, b.op("Add", []string{e, one})}), b.scalar(p+"gelu.half", 0.5)})
	return b.linear(g, p+"output.dense", inter, H)
}

// meanPooled adds sentence_embedding as sentence-transformers Pooling(mean)
// + Normalize compute it: mask-weighted mean (count clamped to 1e-9), then
// x / max(||x||, 1e-12).
func (b *builder) meanPooled(x, maskF string, H int64) {
	m3 := b.axesOp("Unsqueeze", maskF, &axes{name: "/axes_2", v: []int64{2}})
	axis1 := &axes{name: "/reduce_axis_1", v: []int64{1}}
	keep0 := onnxproto.IntAttr("keepdims", 0)
	sum := b.axesOp("ReduceSum", b.op("Mul", []string{x, m3}), axis1, keep0)
	cnt := b.op("Max", []string{b.axesOp("ReduceSum", m3, axis1, keep0), b.scalar("/count_min", 1e-9)})
	mean := b.op("Div", []string{sum, cnt})
	sq := b.axesOp("ReduceSum", b.op("Mul", []string{mean, mean}), axis1, onnxproto.IntAttr("keepdims", 1))
	norm := b.op("Max", []string{b.op("Sqrt", []string{sq}), b.scalar("/norm_min", 1e-12)})
	b.opTo(gateway.TensorSentenceEmbedding, "Div", []string{mean, norm})
	b.g.outputs = append(b.g.outputs, onnxproto.ValueInfo{Name: gateway.TensorSentenceEmbedding, Elem: onnxproto.DTFloat,
		Dims: []onnxproto.Dim{{Param: "batch_size"}, {Value: H}}})
}

// Standard deviations of the classification head's weights. Wider than
// BERT's 0.02, so that the pooler's tanh works outside its linear range and
// logits are a few units, as a trained reranker's are. The random encoder's
// [CLS] state varies little from one input to the next, so the logits of
// different pairs differ by about 1e-3 to 1e-2: far above float32 rounding,
// which is what tests that compare or sort scores need.
const (
	poolerStd     = 0.2
	classifierStd = 1.0
)

// classifier adds BertForSequenceClassification's head on the encoder's
// output x: the pooler (dense + tanh on the [CLS] row), then the classifier
// dense to labels, the graph's one output, logits [B, labels]. Dropout is
// the identity at inference, so it has no node. Its weights are drawn after
// the encoder's, so a cross-encoder shares every encoder weight with the
// embedding model of its seed.
func (b *builder) classifier(x string, H, labels int64) {
	cls := b.op("Gather", []string{x, b.init(onnxproto.Int64Tensor("/cls_index", nil, []int64{0}))}, onnxproto.IntAttr("axis", 1))
	pw := b.weightStd("pooler.dense.weight", 0, poolerStd, H, H)
	pb := b.weightStd("pooler.dense.bias", 0, poolerStd, H)
	pooled := b.op("Tanh", []string{b.op("Add", []string{b.op("MatMul", []string{cls, pw}), pb})})
	w := b.weightStd("classifier.weight", 0, classifierStd, H, labels)
	bias := b.weightStd("classifier.bias", 0, classifierStd, labels)
	b.opTo(gateway.TensorLogits, "Add", []string{b.op("MatMul", []string{pooled, w}), bias})
	b.g.outputs = []onnxproto.ValueInfo{{Name: gateway.TensorLogits, Elem: onnxproto.DTFloat,
		Dims: []onnxproto.Dim{{Param: "batch_size"}, {Value: labels}}}}
}
