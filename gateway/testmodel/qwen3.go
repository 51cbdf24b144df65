package testmodel

import (
	"errors"
	"fmt"
	"math"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/internal/onnxproto"
)

// positionIDs is the decoder's third input, INT64 [B, L], as optimum's
// feature-extraction export of Qwen3 names it.
const positionIDs = gateway.TensorPositionIDs

// qwen3Dims holds a Qwen3Config's dimensions: Arch's (Heads counts query
// heads), the key/value heads of grouped-query attention, the head width
// (in Qwen3 not hidden/heads), RoPE's base and RMSNorm's epsilon.
type qwen3Dims struct {
	Arch
	KVHeads, HeadDim      int
	RopeTheta, RMSNormEps float64
}

// tinyQwen3 is the decoder's only size. As in Qwen3-0.6B, heads x head_dim
// (64) differs from hidden (32), so q_proj and o_proj are not square and a
// computation that confuses the two cannot line up. Two query heads share
// each key/value head. Vocab comes from the tokenizer; MaxPos is
// Qwen3-Embedding's (RoPE has no table, so it costs nothing).
var tinyQwen3 = qwen3Dims{
	Arch:    Arch{Hidden: 32, Layers: 2, Heads: 4, Intermediate: 64, MaxPos: 32768},
	KVHeads: 2, HeadDim: 16, RopeTheta: 1e6, RMSNormEps: 1e-6,
}

// The decoder's weight scales. Not Qwen3's initializer_range (0.02): with
// it the random model's attention would be almost uniform and RoPE, the
// causal mask and the padding would move the outputs by less than the
// tests' tolerance. Embeddings ~N(0, 1) make the residual stream O(1),
// projections ~N(0, 1/in) keep it there, and norm weights ~N(1, 0.1).
const (
	qwen3EmbedStd = 1.0
	qwen3NormStd  = 0.1
)

// qwen3 is the decoder cfg builds.
func (c Config) qwen3() qwen3Dims {
	d := tinyQwen3
	d.Arch = c.arch()
	return d
}

// checkQwen3 refuses the options a Qwen3 model does not have.
func (c Config) checkQwen3() error {
	switch {
	case c.Size != Tiny:
		return fmt.Errorf("testmodel: qwen3 comes in the tiny size only, not %s", c.Size)
	case c.Tokenizer == nil:
		return errors.New("testmodel: qwen3 needs its tokenizer.json (WithTokenizer): testenv.TinyQwen3 and cmd/testmodel read the repository's copy")
	case c.Hidden < 0:
		return fmt.Errorf("testmodel: hidden %d is not positive", c.Hidden)
	case c.Pooled:
		return errors.New("testmodel: qwen3 has no sentence_embedding output")
	case c.NumLabels != 0:
		return errors.New("testmodel: qwen3 has no cross-encoder head (num_labels)")
	}
	return nil
}

// qwen3Graph holds the tensors every decoder layer shares.
type qwen3Graph struct {
	d        qwen3Dims
	eps      string // RMSNorm's epsilon
	mask     string // additive causal + padding mask [B, 1, L, L]
	cos, sin string // RoPE tables [B, 1, L, head_dim]
	scaling  string // 1/sqrt(head_dim)
	splitQ   string // [B, L, heads x head_dim] -> [B, L, heads, head_dim]
	splitKV  string // the same for the key/value heads
	repeatKV string // Expand's shape: each key/value head once per query head of its group
	groupKV  string // [B, kv heads, groups, L, D] -> [B, heads, L, D]
	merge    string // [B, L, heads, head_dim] -> [B, L, heads x head_dim]
	// Slice bounds of rotate_half's halves, on the last axis.
	lo, mid, hi, lastAxis string
	axes2                 string // Unsqueeze's [2]
}

// buildQwen3 returns the encoded ONNX Qwen3Model for cfg: what optimum's
// feature-extraction export computes, with HF's parameter names (weights
// stored [in, out]). The steps run in the order that draws the weights and
// numbers the nodes, which fixes the bytes.
func buildQwen3(cfg Config) ([]byte, error) {
	d := cfg.qwen3()
	H := int64(d.Hidden)
	b := &builder{rng: rng{state: cfg.Seed}}
	b.g.name = "main_graph"
	dyn := []onnxproto.Dim{{Param: "batch_size"}, {Param: "sequence_length"}}
	b.g.inputs = []onnxproto.ValueInfo{
		{Name: gateway.TensorInputIDs, Elem: onnxproto.DTInt64, Dims: dyn},
		{Name: gateway.TensorAttentionMask, Elem: onnxproto.DTInt64, Dims: dyn},
		{Name: positionIDs, Elem: onnxproto.DTInt64, Dims: dyn},
	}
	embed := b.weightStd("embed_tokens.weight", 0, qwen3EmbedStd, int64(d.Vocab), H)
	x := b.op("Gather", []string{embed, gateway.TensorInputIDs})

	q := b.qwen3Shared(d)
	for l := range d.Layers {
		x = b.decoderLayer(q, x, fmt.Sprintf("layers.%d.", l))
	}
	b.rmsNorm(q, x, "norm", H, gateway.TensorLastHiddenState)
	b.g.outputs = []onnxproto.ValueInfo{{Name: gateway.TensorLastHiddenState, Elem: onnxproto.DTFloat,
		Dims: []onnxproto.Dim{{Param: "batch_size"}, {Param: "sequence_length"}, {Value: H}}}}
	return encodeModel(&b.g, "embedgate-testmodel"), nil
}

// qwen3Shared adds the constants, the mask and the RoPE tables.
func (b *builder) qwen3Shared(d qwen3Dims) qwen3Graph {
	D, nq, nkv := int64(d.HeadDim), int64(d.Heads), int64(d.KVHeads)
	q := qwen3Graph{d: d}
	axes0, axes1 := b.ints("/axes_0", 0), b.ints("/axes_1", 1)
	q.axes2 = b.ints("/axes_2", 2)
	q.eps = b.scalar("/rms_norm_eps", float32(d.RMSNormEps))
	q.mask = b.causalMask(axes0, axes1)
	q.cos, q.sin = b.rotary(d, axes1, q.axes2)
	q.lo, q.mid, q.hi = b.ints("/rope_lo", 0), b.ints("/rope_mid", D/2), b.ints("/rope_hi", D)
	q.lastAxis = b.ints("/axis_last", -1)
	q.scaling = b.scalar("/scaling", float32(1/math.Sqrt(float64(D))))
	q.splitQ = b.ints("/split_q_heads", 0, 0, nq, D)
	q.splitKV = b.ints("/split_kv_heads", 0, 0, nkv, D)
	q.repeatKV = b.ints("/repeat_kv", 1, 1, nq/nkv, 1, 1)
	q.groupKV = b.ints("/group_kv_heads", 0, nq, -1, D)
	q.merge = b.ints("/merge_heads", 0, 0, nq*D)
	return q
}

// causalMask is HF's 4D mask as an additive one: position j is seen from
// position i when j <= i (by index in the row, not by position_ids) and
// attention_mask[j] is 1: 0 there, float32 min elsewhere. With right
// padding every row attends to at least its first token, so no softmax
// row is all masked.
func (b *builder) causalMask(axes0, axes1 string) string {
	scalar := func(name string, v int64) string { return b.init(onnxproto.Int64Tensor(name, nil, []int64{v})) }
	seqLen := b.op("Shape", []string{gateway.TensorInputIDs}, onnxproto.IntAttr("start", 1), onnxproto.IntAttr("end", 2))
	n := b.op("Squeeze", []string{seqLen, axes0})
	idx := b.op("Range", []string{scalar("/zero", 0), n, scalar("/one_int", 1)})
	rows := b.op("Unsqueeze", []string{idx, axes1})     // i, [L, 1]
	cols := b.op("Unsqueeze", []string{idx, axes0})     // j, [1, L]
	causal := b.op("LessOrEqual", []string{cols, rows}) // [L, L]
	pad := b.op("Unsqueeze", []string{gateway.TensorAttentionMask, b.ints("/axes_1_2", 1, 2)})
	pad = b.op("Cast", []string{pad}, onnxproto.IntAttr("to", onnxproto.DTBool)) // [B, 1, 1, L]
	allowed := b.op("And", []string{causal, pad})                                // [B, 1, L, L]
	return b.op("Where", []string{allowed, b.scalar("/zero_f", 0), b.scalar("/float_min", -math.MaxFloat32)})
}

// rotary returns RoPE's cos and sin [B, 1, L, head_dim] at position_ids:
// angle = position x inv_freq[k], inv_freq[k] = theta^(-2k/head_dim), the
// half-width table repeated twice (HF's layout, which rotateHalf pairs).
func (b *builder) rotary(d qwen3Dims, axes1, axes2 string) (cos, sin string) {
	half := d.HeadDim / 2
	inv := make([]float32, half)
	for k := range inv {
		inv[k] = float32(1 / math.Pow(d.RopeTheta, float64(2*k)/float64(d.HeadDim)))
	}
	invFreq := b.init(onnxproto.FloatTensor("rotary_emb.inv_freq", []int64{int64(half)}, inv))
	pos := b.op("Cast", []string{positionIDs}, onnxproto.IntAttr("to", onnxproto.DTFloat))
	pos = b.op("Unsqueeze", []string{pos, axes2}) // [B, L, 1]
	freqs := b.op("Mul", []string{pos, invFreq})  // [B, L, half]
	emb := b.op("Concat", []string{freqs, freqs}, onnxproto.IntAttr("axis", -1))
	emb = b.op("Unsqueeze", []string{emb, axes1})
	return b.op("Cos", []string{emb}), b.op("Sin", []string{emb})
}

// applyRotary is HF's apply_rotary_pos_emb on x [B, heads, L, D]:
// x*cos + rotate_half(x)*sin, rotate_half(x) = concat(-x[D/2:], x[:D/2]).
func (b *builder) applyRotary(q qwen3Graph, x string) string {
	x1 := b.op("Slice", []string{x, q.lo, q.mid, q.lastAxis})
	x2 := b.op("Slice", []string{x, q.mid, q.hi, q.lastAxis})
	rot := b.op("Concat", []string{b.op("Neg", []string{x2}), x1}, onnxproto.IntAttr("axis", -1))
	return b.op("Add", []string{b.op("Mul", []string{x, q.cos}), b.op("Mul", []string{rot, q.sin})})
}

// rmsNorm is Qwen3RMSNorm over the last axis (width dim), with weight
// ~N(1, 0.1): w * x / sqrt(mean(x^2) + eps). out names the result, or ""
// for a fresh name.
func (b *builder) rmsNorm(q qwen3Graph, x, prefix string, dim int64, out string) string {
	w := b.weightStd(prefix+".weight", 1, qwen3NormStd, dim)
	ms := b.op("ReduceMean", []string{b.op("Mul", []string{x, x})},
		onnxproto.IntsAttr("axes", -1), onnxproto.IntAttr("keepdims", 1))
	inv := b.op("Reciprocal", []string{b.op("Sqrt", []string{b.op("Add", []string{ms, q.eps})})})
	if out == "" {
		out = b.tmp("Mul")
	}
	b.opTo(out, "Mul", []string{w, b.op("Mul", []string{x, inv})})
	return out
}

// proj is x·W with W [in, out] ~N(0, 1/in); Qwen3 has no biases.
func (b *builder) proj(x, name string, in, out int64) string {
	w := b.weightStd(name+".weight", 0, 1/math.Sqrt(float64(in)), in, out)
	return b.op("MatMul", []string{x, w})
}

// decoderLayer is Qwen3DecoderLayer p on x: pre-norm attention and MLP,
// each added to the residual stream.
func (b *builder) decoderLayer(q qwen3Graph, x, p string) string {
	H := int64(q.d.Hidden)
	h := b.rmsNorm(q, x, p+"input_layernorm", H, "")
	x = b.op("Add", []string{x, b.selfAttentionGQA(q, h, p+"self_attn.")})
	h = b.rmsNorm(q, x, p+"post_attention_layernorm", H, "")
	return b.op("Add", []string{x, b.swiGLU(h, p+"mlp.", H, int64(q.d.Intermediate))})
}

// selfAttentionGQA is Qwen3Attention p on h: q/k/v projections, per-head
// RMSNorm of q and k, RoPE, each key/value head repeated for its group of
// query heads (HF's repeat_kv), masked softmax, o_proj.
func (b *builder) selfAttentionGQA(q qwen3Graph, h, p string) string {
	H, D := int64(q.d.Hidden), int64(q.d.HeadDim)
	nq, nkv := int64(q.d.Heads), int64(q.d.KVHeads)
	perm := func(p ...int64) onnxproto.Attr { return onnxproto.IntsAttr("perm", p...) }
	heads := func(name string, n int64, split string, norm bool) string {
		x := b.op("Reshape", []string{b.proj(h, p+name+"_proj", H, n*D), split})
		if norm {
			x = b.rmsNorm(q, x, p+name+"_norm", D, "")
		}
		return b.op("Transpose", []string{x}, perm(0, 2, 1, 3)) // [B, n, L, D]
	}
	repeat := func(x string) string {
		x = b.op("Unsqueeze", []string{x, q.axes2})
		return b.op("Reshape", []string{b.op("Expand", []string{x, q.repeatKV}), q.groupKV})
	}
	qs := b.applyRotary(q, heads("q", nq, q.splitQ, true))
	ks := repeat(b.applyRotary(q, heads("k", nkv, q.splitKV, true)))
	vs := repeat(heads("v", nkv, q.splitKV, false))
	s := b.op("Mul", []string{b.op("MatMul", []string{qs, b.op("Transpose", []string{ks}, perm(0, 1, 3, 2))}), q.scaling})
	probs := b.op("Softmax", []string{b.op("Add", []string{s, q.mask})}, onnxproto.IntAttr("axis", -1))
	ctx := b.op("Transpose", []string{b.op("MatMul", []string{probs, vs})}, perm(0, 2, 1, 3))
	return b.proj(b.op("Reshape", []string{ctx, q.merge}), p+"o_proj", nq*D, H)
}

// swiGLU is Qwen3MLP p on h: down(silu(gate(h)) * up(h)), silu(z) =
// z * sigmoid(z).
func (b *builder) swiGLU(h, p string, H, inter int64) string {
	gate := b.proj(h, p+"gate_proj", H, inter)
	up := b.proj(h, p+"up_proj", H, inter)
	act := b.op("Mul", []string{gate, b.op("Sigmoid", []string{gate})})
	return b.proj(b.op("Mul", []string{act, up}), p+"down_proj", inter, H)
}
