//go:build cgo

package testmodel_test

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/internal/testenv"
)

// qwen3Tolerance: float32 ONNX Runtime against float64 by hand, on hidden
// states of order 1 after two layers.
const qwen3Tolerance = 1e-4

// qwen3MinEffect is how much a wrong variant of the computation must move
// the outputs for the comparison to mean anything: a hundred times the
// tolerance.
const qwen3MinEffect = 100 * qwen3Tolerance

// qwen3Conf is what the hand computation reads from config.json.
type qwen3Conf struct {
	Hidden     int     `json:"hidden_size"`
	Inter      int     `json:"intermediate_size"`
	Layers     int     `json:"num_hidden_layers"`
	Heads      int     `json:"num_attention_heads"`
	KVHeads    int     `json:"num_key_value_heads"`
	HeadDim    int     `json:"head_dim"`
	RopeTheta  float64 `json:"rope_theta"`
	RMSNormEps float64 `json:"rms_norm_eps"`
}

// qwen3Batch is one right-padded [rows, l] batch of the three inputs.
type qwen3Batch struct {
	rows, l        int
	ids, mask, pos []int64
}

// batchOf pads rows of ids right to the longest with pad, positions
// 0..l-1 on every row, as the gateway sends them.
func batchOf(pad int64, rows ...[]int64) qwen3Batch {
	b := qwen3Batch{rows: len(rows)}
	for _, r := range rows {
		b.l = max(b.l, len(r))
	}
	for _, r := range rows {
		for j := range b.l {
			id, m := pad, int64(0)
			if j < len(r) {
				id, m = r[j], 1
			}
			b.ids, b.mask, b.pos = append(b.ids, id), append(b.mask, m), append(b.pos, int64(j))
		}
	}
	return b
}

// qwen3Run runs the decoder at path on b with ONNX Runtime and returns
// last_hidden_state, checking its shape.
func qwen3Run(t *testing.T, path string, b qwen3Batch, hidden int) []float32 {
	t.Helper()
	names := []string{gateway.TensorInputIDs, gateway.TensorAttentionMask, gateway.TensorPositionIDs}
	outs, shapes := runOutputs(t, path, names, [][]int64{b.ids, b.mask, b.pos}, b.rows, b.l, []string{gateway.TensorLastHiddenState})
	if want := []int64{int64(b.rows), int64(b.l), int64(hidden)}; !slices.Equal(shapes[0], want) {
		t.Fatalf("last_hidden_state shape %v, want %v", shapes[0], want)
	}
	return outs[0]
}

// variant is a wrong turn the hand computation can take on purpose: each
// must move the outputs far from ONNX Runtime's, or matching them would
// not show that the graph gets that part right.
type variant struct {
	kvInterleaved bool // query head h uses key/value head h % kv heads, not h / group
	noCausal      bool // attend to later tokens too
	ropePairs     bool // rotate pairs (2k, 2k+1) (GPT-J) instead of halves (HF's rotate_half)
	noQKNorm      bool // skip Qwen3's per-head q/k RMSNorm
	noPadMask     bool // attend to pads too (which only pads can, being last)
}

// qwen3Hand is Qwen3Model's forward pass in float64 on one batch, from the
// config and the weights the model file holds (W stored [in, out]).
type qwen3Hand struct {
	c qwen3Conf
	w map[string][]float32
	v variant
}

func (m qwen3Hand) weight(t *testing.T, name string, n int) []float32 {
	t.Helper()
	w, ok := m.w[name]
	if !ok || len(w) != n {
		t.Fatalf("weight %s has %d values, want %d", name, len(w), n)
	}
	return w
}

// matVec is x·W for W [len(x), out].
func matVec(x []float64, w []float32, out int) []float64 {
	y := make([]float64, out)
	for i, xi := range x {
		for j := range out {
			y[j] += xi * float64(w[i*out+j])
		}
	}
	return y
}

func rmsNorm(x []float64, w []float32, eps float64) []float64 {
	s := 0.0
	for _, v := range x {
		s += v * v
	}
	r := 1 / math.Sqrt(s/float64(len(x))+eps)
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = float64(w[i]) * v * r
	}
	return y
}

// rope rotates one head's vector x at position pos.
func (m qwen3Hand) rope(x []float64, pos int64) []float64 {
	D, half := len(x), len(x)/2
	y := make([]float64, D)
	for k := range half {
		ang := float64(pos) * math.Pow(m.c.RopeTheta, -float64(2*k)/float64(D))
		c, s := math.Cos(ang), math.Sin(ang)
		a, b := k, k+half
		if m.v.ropePairs {
			a, b = 2*k, 2*k+1
		}
		y[a] = x[a]*c - x[b]*s
		y[b] = x[b]*c + x[a]*s
	}
	return y
}

// forward returns last_hidden_state [rows, l, hidden] of b.
func (m qwen3Hand) forward(t *testing.T, b qwen3Batch) []float64 {
	t.Helper()
	c := m.c
	H := c.Hidden
	emb := m.weight(t, "embed_tokens.weight", len(m.w["embed_tokens.weight"]))
	out := make([]float64, 0, b.rows*b.l*H)
	for r := range b.rows {
		x := make([][]float64, b.l)
		for i := range b.l {
			id := int(b.ids[r*b.l+i])
			if (id+1)*H > len(emb) {
				t.Fatalf("token id %d outside the embedding table", id)
			}
			x[i] = make([]float64, H)
			for j := range H {
				x[i][j] = float64(emb[id*H+j])
			}
		}
		for layer := range c.Layers {
			m.layer(t, x, b.mask[r*b.l:(r+1)*b.l], b.pos[r*b.l:(r+1)*b.l], fmt.Sprintf("layers.%d.", layer))
		}
		for i := range b.l {
			out = append(out, rmsNorm(x[i], m.weight(t, "norm.weight", H), c.RMSNormEps)...)
		}
	}
	return out
}

// layer runs decoder layer p on one row's states x in place.
func (m qwen3Hand) layer(t *testing.T, x [][]float64, mask, pos []int64, p string) {
	t.Helper()
	c := m.c
	H, D, nq, nkv := c.Hidden, c.HeadDim, c.Heads, c.KVHeads
	L := len(x)
	w := func(name string, n int) []float32 { return m.weight(t, p+name, n) }
	// heads projects h to n heads of D, normed (q, k) and rotated.
	heads := func(h []float64, name string, n int, norm, rotate bool, i int) [][]float64 {
		flat := matVec(h, w("self_attn."+name+"_proj.weight", H*n*D), n*D)
		out := make([][]float64, n)
		for k := range n {
			v := flat[k*D : (k+1)*D]
			if norm && !m.v.noQKNorm {
				v = rmsNorm(v, w("self_attn."+name+"_norm.weight", D), c.RMSNormEps)
			}
			if rotate {
				v = m.rope(v, pos[i])
			}
			out[k] = v
		}
		return out
	}
	q, k, v := make([][][]float64, L), make([][][]float64, L), make([][][]float64, L)
	for i := range L {
		h := rmsNorm(x[i], w("input_layernorm.weight", H), c.RMSNormEps)
		q[i], k[i], v[i] = heads(h, "q", nq, true, true, i), heads(h, "k", nkv, true, true, i), heads(h, "v", nkv, false, false, i)
	}
	for i := range L {
		ctx := make([]float64, nq*D)
		for hq := range nq {
			kv := hq / (nq / nkv)
			if m.v.kvInterleaved {
				kv = hq % nkv
			}
			var seen []int
			for j := range L {
				if (mask[j] == 1 || m.v.noPadMask) && (j <= i || m.v.noCausal) {
					seen = append(seen, j)
				}
			}
			s := make([]float64, len(seen))
			top := math.Inf(-1)
			for n, j := range seen {
				for d := range D {
					s[n] += q[i][hq][d] * k[j][kv][d]
				}
				s[n] /= math.Sqrt(float64(D))
				top = max(top, s[n])
			}
			sum := 0.0
			for n := range s {
				s[n] = math.Exp(s[n] - top)
				sum += s[n]
			}
			for n, j := range seen {
				for d := range D {
					ctx[hq*D+d] += s[n] / sum * v[j][kv][d]
				}
			}
		}
		attn := matVec(ctx, w("self_attn.o_proj.weight", nq*D*H), H)
		for j := range H {
			x[i][j] += attn[j]
		}
		h := rmsNorm(x[i], w("post_attention_layernorm.weight", H), c.RMSNormEps)
		gate := matVec(h, w("mlp.gate_proj.weight", H*c.Inter), c.Inter)
		up := matVec(h, w("mlp.up_proj.weight", H*c.Inter), c.Inter)
		for j := range gate {
			gate[j] = gate[j] / (1 + math.Exp(-gate[j])) * up[j]
		}
		down := matVec(gate, w("mlp.down_proj.weight", c.Inter*H), H)
		for j := range H {
			x[i][j] += down[j]
		}
	}
}

// maxDiff is the largest |a[i] - b[i]| over the positions keep selects
// (nil: all), given as flat indexes of [rows, l] with hidden values each.
func maxDiff[A, B float32 | float64](a []A, b []B, hidden int, keep func(pos int) bool) float64 {
	worst := 0.0
	for i := range a {
		if keep != nil && !keep(i/hidden) {
			continue
		}
		d := math.Abs(float64(a[i]) - float64(b[i]))
		if math.IsNaN(d) {
			return math.Inf(1)
		}
		worst = max(worst, d)
	}
	return worst
}

// qwen3Setup starts ONNX Runtime and returns the tiny decoder's path and
// its hand computation.
func qwen3Setup(t *testing.T) (string, qwen3Hand) {
	t.Helper()
	ort.SetSharedLibraryPath(testenv.ORTLib(t))
	if err := ort.InitializeEnvironment(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ort.DestroyEnvironment() })
	dir := testenv.TinyQwen3(t)
	model, err := os.ReadFile(filepath.Join(dir, "onnx", "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	conf, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	m := qwen3Hand{w: floatInits(t, model)}
	if err := json.Unmarshal(conf, &m.c); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "onnx", "model.onnx"), m
}

// qwen3Rows are two inputs of the real tokenizer's ids, the second shorter
// (so right-padded) and ending in the top added token, so the embedding
// table must reach the end of the id space.
var qwen3Rows = [][]int64{
	{9707, 11, 1879, 0, 151643, 220, 151643},
	{40, 1075, 151668, 151643},
}

// TestQwen3HandComputation runs the decoder on ONNX Runtime and checks
// every position of a right-padded batch, pads included, against Qwen3's
// forward pass computed by hand in float64 from config.json and the
// weights in the file. Each wrong variant of the hand computation (the
// other key/value head grouping, no causal mask, GPT-J's RoPE pairs, no
// q/k norm, pads attended) must miss by far, so the match shows the graph
// gets each right.
func TestQwen3HandComputation(t *testing.T) {
	path, m := qwen3Setup(t)
	b := batchOf(151643, qwen3Rows...)
	got := qwen3Run(t, path, b, m.c.Hidden)
	d := maxDiff(got, m.forward(t, b), m.c.Hidden, nil)
	t.Logf("ONNX Runtime against the hand computation: %g", d)
	if d > qwen3Tolerance {
		t.Errorf("ONNX Runtime and the hand computation differ by %g, want <= %g", d, qwen3Tolerance)
	}
	for name, v := range map[string]variant{
		"KVInterleaved": {kvInterleaved: true}, "NoCausal": {noCausal: true},
		"RopePairs": {ropePairs: true}, "NoQKNorm": {noQKNorm: true}, "NoPadMask": {noPadMask: true},
	} {
		wrong := qwen3Hand{c: m.c, w: m.w, v: v}
		d := maxDiff(got, wrong.forward(t, b), m.c.Hidden, nil)
		t.Logf("variant %s: %g", name, d)
		if d < qwen3MinEffect {
			t.Errorf("variant %s: differs from ONNX Runtime by only %g, want >= %g: the check cannot see it", name, d, qwen3MinEffect)
		}
	}
}

// TestQwen3PositionIDs: position_ids drive RoPE. Positions that change the
// distances between tokens change the outputs (and still match the hand
// computation); shifting a row's positions by a constant does not, since
// RoPE scores depend only on the distance between two positions.
func TestQwen3PositionIDs(t *testing.T) {
	path, m := qwen3Setup(t)
	b := batchOf(151643, qwen3Rows...)
	base := qwen3Run(t, path, b, m.c.Hidden)

	spread := b
	spread.pos = slices.Clone(b.pos)
	for i := range spread.pos {
		spread.pos[i] *= 3
	}
	got := qwen3Run(t, path, spread, m.c.Hidden)
	if d := maxDiff(got, base, m.c.Hidden, nil); d < qwen3MinEffect {
		t.Errorf("positions 0, 3, 6, ... move the outputs by %g, want >= %g", d, qwen3MinEffect)
	}
	if d := maxDiff(got, m.forward(t, spread), m.c.Hidden, nil); d > qwen3Tolerance {
		t.Errorf("positions 0, 3, 6, ...: ONNX Runtime and the hand computation differ by %g", d)
	}

	shifted := b
	shifted.pos = slices.Clone(b.pos)
	for i := range shifted.pos {
		shifted.pos[i] += 5
	}
	if d := maxDiff(qwen3Run(t, path, shifted, m.c.Hidden), base, m.c.Hidden, nil); d > qwen3Tolerance {
		t.Errorf("positions shifted by 5 move the outputs by %g, want <= %g (RoPE is relative)", d, qwen3Tolerance)
	}
}

// TestQwen3Causal: the state at position i depends on tokens 0..i only.
// Two rows share a prefix and differ after it: the prefix's states agree,
// the rest do not. A right-padded row's real positions equal the same
// input run alone, whatever the pad id.
func TestQwen3Causal(t *testing.T) {
	path, m := qwen3Setup(t)
	H := m.c.Hidden
	a := []int64{9707, 11, 1879, 0, 151643}
	c := []int64{9707, 11, 1879, 42, 7}
	got := qwen3Run(t, path, batchOf(0, a, c), H)
	l := len(a)
	rowA, rowC := got[:l*H], got[l*H:]
	if d := maxDiff(rowA, rowC, H, func(pos int) bool { return pos < 3 }); d > 1e-6 {
		t.Errorf("shared prefix: states differ by %g, want equal", d)
	}
	for pos := 3; pos < l; pos++ {
		if d := maxDiff(rowA[pos*H:(pos+1)*H], rowC[pos*H:(pos+1)*H], H, nil); d < qwen3MinEffect {
			t.Errorf("position %d after different tokens: states differ by only %g", pos, d)
		}
	}

	short := a[:3]
	alone := qwen3Run(t, path, batchOf(0, short), H)
	for _, pad := range []int64{151643, 0, 151668} {
		padded := qwen3Run(t, path, batchOf(pad, a, short), H)
		if d := maxDiff(padded[l*H:l*H+len(short)*H], alone, H, nil); d > 1e-5 {
			t.Errorf("pad id %d: the padded row's real states differ from the row run alone by %g", pad, d)
		}
	}
}
