package onnxpool

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/backend/onnx"
	"github.com/embedgate/embedgate/gateway/internal/onnxproto"
	"github.com/embedgate/embedgate/gateway/internal/testenv"
	"github.com/embedgate/embedgate/gateway/pooling"
	"github.com/embedgate/embedgate/gateway/testmodel"
)

// tinyONNX returns the bytes of the generated tiny model (opset 17, output
// last_hidden_state [batch_size, sequence_length, 32]).
func tinyONNX(t *testing.T, opts ...testmodel.Option) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.TinyModel(t, opts...), "onnx", "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func openModel(t *testing.T, lib, path string) *onnx.Backend {
	t.Helper()
	b, err := onnx.Open(onnx.Options{LibraryPath: lib, ModelPath: path, IntraOpThreads: 1})
	if err != nil {
		t.Fatalf("onnx.Open(%s): %v", path, err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

// padded builds a [len(lengths), max] batch of random token ids, each row
// with lengths[i] real tokens, padded on the right or the left.
func padded(rng *rand.Rand, lengths []int, left bool) *gateway.Batch {
	l := max(1, slices.Max(lengths))
	b := &gateway.Batch{Rows: len(lengths), Len: l, InputIDs: make([]int64, len(lengths)*l), AttentionMask: make([]int64, len(lengths)*l)}
	for r, n := range lengths {
		for i := range n {
			p := i
			if left {
				p = l - n + i
			}
			b.InputIDs[r*l+p] = 1000 + rng.Int64N(20000)
			b.AttentionMask[r*l+p] = 1
		}
	}
	return b
}

// testBatch is a batch the pooling tests run.
type testBatch struct {
	name  string
	batch *gateway.Batch
}

func testBatches() []testBatch {
	rng := rand.New(rand.NewPCG(1, 2))
	return []testBatch{
		{"RightPadded", padded(rng, []int{7, 1, 4, 9, 2}, false)}, // what the gateway sends
		{"RightPaddedEqual", padded(rng, []int{3, 3}, false)},
		{"OneRow", padded(rng, []int{5}, false)},
		{"LeftPadded", padded(rng, []int{7, 1, 4, 9, 2}, true)},
		{"EmptyRow", padded(rng, []int{4, 0, 2}, false)}, // a padding row: zeros
	}
}

// variants are the poolings Append writes, each with and without
// normalization.
func variants() []Options {
	var out []Options
	for _, m := range []pooling.Method{pooling.Mean, pooling.CLS, pooling.LastToken} {
		for _, norm := range []bool{false, true} {
			out = append(out, Options{Pooling: m, Normalize: norm})
		}
	}
	return out
}

func variantName(o Options) string {
	if o.Normalize {
		return o.Pooling.String() + "+normalize"
	}
	return o.Pooling.String()
}

// TestAppendMatchesGateway pools the BERT test model written at opsets 11,
// 13 and 17 (testmodel.WithOpset: an opset-11 graph is what older exports
// such as bge-small-en-v1.5's hold), runs each appended pooling in ONNX
// Runtime, and compares sentence_embedding with package pooling applied to
// the original model's last_hidden_state.
func TestAppendMatchesGateway(t *testing.T) {
	lib := testenv.ORTLib(t)
	batches := testBatches()
	for _, opset := range []int{11, 13, 17} {
		t.Run("Opset"+strconv.Itoa(opset), func(t *testing.T) {
			src := filepath.Join(testenv.TinyModel(t, testmodel.WithOpset(opset)), "onnx", "model.onnx")
			model, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			orig := openModel(t, lib, src)
			hidden := make([]*gateway.Output, len(batches))
			for i, bt := range batches {
				if hidden[i], err = orig.Embed(context.Background(), bt.batch); err != nil {
					t.Fatalf("%s: original Embed: %v", bt.name, err)
				}
			}
			for _, opts := range variants() {
				t.Run(variantName(opts), func(t *testing.T) {
					pooled := openModel(t, lib, appendTo(t, model, opts))
					checkPooled(t, pooled, batches, hidden, opts)
				})
			}
		})
	}
}

// appendTo appends opts' pooling to model and returns the path of the
// result.
func appendTo(t *testing.T, model []byte, opts Options) string {
	t.Helper()
	out, err := Append(model, opts)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	path := filepath.Join(t.TempDir(), "pooled.onnx")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkPooled runs each batch through the pooled model and compares its
// vectors with package pooling applied to hidden, the batches' hidden
// states, to 1e-5.
func checkPooled(t *testing.T, pooled *onnx.Backend, batches []testBatch, hidden []*gateway.Output, opts Options) {
	t.Helper()
	h := hidden[0].Hidden
	if spec := pooled.Spec(); spec.Output != gateway.Pooled || spec.Hidden != h {
		t.Fatalf("Spec() = output %v hidden %d, want Pooled, %d", spec.Output, spec.Hidden, h)
	}
	worst := 0.0
	for i, bt := range batches {
		got, err := pooled.Embed(context.Background(), bt.batch)
		if err != nil {
			t.Fatalf("%s: Embed: %v", bt.name, err)
		}
		want := gatewayPool(hidden[i], bt.batch.AttentionMask, opts.Pooling, opts.Normalize)
		if len(got.Data) != len(want) {
			t.Fatalf("%s: got %d values, want %d", bt.name, len(got.Data), len(want))
		}
		for j := range want {
			d := math.Abs(float64(got.Data[j] - want[j]))
			worst = max(worst, d)
			if d > 1e-5 || math.IsNaN(float64(got.Data[j])) {
				t.Fatalf("%s: row %d dim %d = %v, want %v", bt.name, j/h, j%h, got.Data[j], want[j])
			}
		}
	}
	t.Logf("max |onnx - gateway| = %.3g", worst)
}

// gatherModel is an embedding lookup at the given opset: input_ids and
// attention_mask in, last_hidden_state = table[input_ids] out, with table
// a [vocab, hidden] initializer. Gather has kept its signature since opset
// 1, so the graph is valid at every opset Append accepts.
func gatherModel(opset int64, table []float32, vocab, hidden int64) []byte {
	bl := []onnxproto.Dim{{Param: "batch"}, {Param: "seq"}}
	var g []byte
	lookup := onnxproto.Node{Op: "Gather", Name: "lookup", Inputs: []string{"table", gateway.TensorInputIDs}, Outputs: []string{gateway.TensorLastHiddenState}}
	g = onnxproto.AppendMessage(g, graphNode, lookup.Encode())
	g = onnxproto.AppendString(g, 2, "gather")
	g = onnxproto.AppendMessage(g, graphInitializer, onnxproto.FloatTensor("table", []int64{vocab, hidden}, table).Encode())
	for _, in := range []string{gateway.TensorInputIDs, gateway.TensorAttentionMask} {
		g = onnxproto.AppendMessage(g, graphInput, onnxproto.ValueInfo{Name: in, Elem: onnxproto.DTInt64, Dims: bl}.Encode())
	}
	out := onnxproto.ValueInfo{Name: gateway.TensorLastHiddenState, Elem: onnxproto.DTFloat, Dims: append(bl, onnxproto.Dim{Value: hidden})}
	g = onnxproto.AppendMessage(g, graphOutput, out.Encode())
	return modelOf(g, opset)
}

// modelOf wraps the graph g in a model (IR 8) importing the default opset.
func modelOf(g []byte, opset int64) []byte {
	b := protowire.AppendTag(nil, modelIRVersion, protowire.VarintType)
	b = protowire.AppendVarint(b, 8)
	b = onnxproto.AppendMessage(b, modelGraph, g)
	if opset != 0 {
		op := onnxproto.AppendString(nil, 1, "")
		op = protowire.AppendTag(op, 2, protowire.VarintType)
		op = protowire.AppendVarint(op, uint64(opset))
		b = onnxproto.AppendMessage(b, modelOpset, op)
	}
	return b
}

// TestAppendEveryOpset pools an embedding lookup at every opset from
// MinOpset to MaxOpset and runs it in ONNX Runtime: ONNX Runtime checks
// each node against its opset's schema at load (an axes input where the
// opset wants an attribute fails), and the vectors must equal package
// pooling of the looked-up rows. MaxOpset must also be one ONNX Runtime
// loads.
func TestAppendEveryOpset(t *testing.T) {
	lib := testenv.ORTLib(t)
	const vocab, h = 30000, 8
	rng := rand.New(rand.NewPCG(5, 6))
	table := make([]float32, vocab*h)
	for i := range table {
		table[i] = float32(rng.NormFloat64())
	}
	batches := testBatches()
	hidden := make([]*gateway.Output, len(batches))
	for i, bt := range batches {
		b := bt.batch
		o := &gateway.Output{Rows: b.Rows, Len: b.Len, Hidden: h, Data: make([]float32, 0, b.Rows*b.Len*h)}
		for _, id := range b.InputIDs {
			o.Data = append(o.Data, table[id*h:(id+1)*h]...)
		}
		hidden[i] = o
	}
	for opset := int64(MinOpset); opset <= MaxOpset; opset++ {
		model := gatherModel(opset, table, vocab, h)
		for _, opts := range variants() {
			t.Run(fmt.Sprintf("Opset%d/%s", opset, variantName(opts)), func(t *testing.T) {
				pooled := openModel(t, lib, appendTo(t, model, opts))
				checkPooled(t, pooled, batches, hidden, opts)
			})
		}
	}
}

// gatewayPool is what the gateway computes from last_hidden_state.
func gatewayPool(o *gateway.Output, mask []int64, m pooling.Method, norm bool) []float32 {
	out := make([]float32, o.Rows*o.Hidden)
	lh := o.Len * o.Hidden
	for r := range o.Rows {
		dst := out[r*o.Hidden : (r+1)*o.Hidden]
		pooling.Pool(dst, o.Data[r*lh:(r+1)*lh], mask[r*o.Len:(r+1)*o.Len], o.Len, o.Hidden, m)
		if norm {
			pooling.Normalize(dst)
		}
	}
	return out
}

// TestAppendKeepsBytes checks the splice: everything but the graph field's
// length is the original, and the graph only grows at its end.
func TestAppendKeepsBytes(t *testing.T) {
	model := tinyONNX(t)
	out, err := Append(model, Options{Pooling: pooling.Mean, Normalize: true})
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	m, err := parseModel(model)
	if err != nil {
		t.Fatal(err)
	}
	p, err := parseModel(out)
	if err != nil {
		t.Fatalf("parse appended model: %v", err)
	}
	if !bytes.Equal(out[:p.graphStart], model[:m.graphStart]) || !bytes.Equal(out[p.graphEnd:], model[m.graphEnd:]) {
		t.Error("bytes outside the graph field changed")
	}
	if !bytes.HasPrefix(p.graph, m.graph) {
		t.Error("the graph does not start with the original graph")
	}
	if _, err := Append(out, Options{Pooling: pooling.Mean, Output: "second"}); err != nil {
		t.Errorf("Append to an appended model under another name: %v", err)
	}
}

// synth describes a small hand-written model for the parse-level tests: an
// Identity from input "x" to the hidden output.
type synth struct {
	opset      int64 // 0: no opset_import
	mask       string
	maskElem   int32
	maskDims   []onnxproto.Dim
	hidden     string
	hiddenElem int32
	hiddenDims []onnxproto.Dim
	tensor     string // an extra initializer name
}

func defaultSynth() synth {
	bl := []onnxproto.Dim{{Param: "batch"}, {Param: "seq"}}
	return synth{opset: 17, mask: "attention_mask", maskElem: onnxproto.DTInt64, maskDims: bl,
		hidden: "last_hidden_state", hiddenElem: onnxproto.DTFloat, hiddenDims: append(bl, onnxproto.Dim{Value: 8})}
}

func (s synth) encode() []byte {
	var g []byte
	id := onnxproto.Node{Op: "Identity", Name: "id", Inputs: []string{"x"}, Outputs: []string{s.hidden}}
	g = onnxproto.AppendMessage(g, graphNode, id.Encode())
	g = onnxproto.AppendString(g, 2, "synth")
	if s.tensor != "" {
		g = onnxproto.AppendMessage(g, graphInitializer, onnxproto.FloatTensor(s.tensor, nil, []float32{1}).Encode())
	}
	g = onnxproto.AppendMessage(g, graphInput, onnxproto.ValueInfo{Name: "x", Elem: onnxproto.DTFloat, Dims: s.hiddenDims}.Encode())
	g = onnxproto.AppendMessage(g, graphInput, onnxproto.ValueInfo{Name: s.mask, Elem: s.maskElem, Dims: s.maskDims}.Encode())
	g = onnxproto.AppendMessage(g, graphOutput, onnxproto.ValueInfo{Name: s.hidden, Elem: s.hiddenElem, Dims: s.hiddenDims}.Encode())
	return modelOf(g, s.opset)
}

func TestAppendErrors(t *testing.T) {
	pooled := tinyONNX(t, testmodel.WithPooled())
	mod := func(f func(*synth)) []byte {
		s := defaultSynth()
		f(&s)
		return s.encode()
	}
	rng := rand.New(rand.NewPCG(3, 4))
	garbage := make([]byte, 4096)
	for i := range garbage {
		garbage[i] = byte(rng.Uint32())
	}
	for _, tt := range []struct {
		name  string
		model []byte
		opts  Options
		want  string // in the error
	}{
		{"AlreadyPooled", pooled, Options{Pooling: pooling.Mean}, `already has output "sentence_embedding"`},
		{"Empty", nil, Options{}, "no graph"},
		{"Garbage", garbage, Options{}, "read model"},
		{"Text", []byte("not an onnx model\n"), Options{}, "read model"},
		{"UnknownPooling", defaultSynth().encode(), Options{Pooling: pooling.Method(7)}, "unknown pooling"},
		{"OldOpset", mod(func(s *synth) { s.opset = MinOpset - 1 }), Options{}, "default opset 10, want 11 to 26"},
		{"NewOpset", mod(func(s *synth) { s.opset = MaxOpset + 1 }), Options{}, "default opset 27, want 11 to 26"},
		{"NoOpset", mod(func(s *synth) { s.opset = 0 }), Options{}, "no default-domain opset_import"},
		{"NoMask", mod(func(s *synth) { s.mask = "mask" }), Options{}, `no input "attention_mask" (inputs: x, mask)`},
		{"NoHidden", mod(func(s *synth) { s.hidden = "hidden" }), Options{}, `no output "last_hidden_state" (outputs: hidden)`},
		{"HiddenRank2", mod(func(s *synth) { s.hiddenDims = s.hiddenDims[:2] }), Options{}, "rank 2"},
		{"HiddenInt", mod(func(s *synth) { s.hiddenElem = onnxproto.DTInt64 }), Options{}, "want a float type"},
		{"MaskString", mod(func(s *synth) { s.maskElem = onnxproto.DTString }), Options{}, "want an integer type"},
		{"MaskRank3", mod(func(s *synth) { s.maskDims = append(s.maskDims, onnxproto.Dim{Value: 1}) }), Options{}, "rank 3"},
		{"OutputIsInput", defaultSynth().encode(), Options{Output: "x"}, `tensor named "x"`},
		{"OutputIsHidden", defaultSynth().encode(), Options{Output: "last_hidden_state"}, "already has output"},
		{"InternalName", mod(func(s *synth) { s.tensor = "/onnxpool/sentence_embedding/Cast_0" }), Options{}, "already has a tensor"},
		{"TwoGraphs", append(defaultSynth().encode(), onnxproto.AppendMessage(nil, modelGraph, nil)...), Options{}, "2 graph fields"},
		{"GraphAsVarint", protowire.AppendVarint(protowire.AppendTag(nil, modelGraph, protowire.VarintType), 1), Options{}, "wire type"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, err := Append(tt.model, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Append() = %d bytes, %v; want an error containing %q", len(out), err, tt.want)
			}
		})
	}
}

func TestAppendSynthetic(t *testing.T) {
	for _, tt := range []struct {
		name string
		mod  func(*synth)
		opts Options
	}{
		{"Default", func(*synth) {}, Options{Pooling: pooling.LastToken, Normalize: true}},
		{"Float16Hidden", func(s *synth) { s.hiddenElem = onnxproto.DTFloat16 }, Options{Pooling: pooling.Mean}},
		{"Int32Mask", func(s *synth) { s.maskElem = 6 }, Options{Pooling: pooling.CLS}},
		{"NoShapes", func(s *synth) { s.hiddenDims, s.maskDims = nil, nil }, Options{Pooling: pooling.Mean}},
		{"Opset11", func(s *synth) { s.opset = 11 }, Options{Pooling: pooling.Mean, Normalize: true}},
		{"Opset13", func(s *synth) { s.opset = 13 }, Options{Pooling: pooling.Mean}},
		{"OtherNames", func(s *synth) { s.hidden, s.mask = "h", "m" }, Options{HiddenOutput: "h", MaskInput: "m", Output: "emb"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := defaultSynth()
			tt.mod(&s)
			out, err := Append(s.encode(), tt.opts)
			if err != nil {
				t.Fatalf("Append: %v", err)
			}
			m, err := parseModel(out)
			if err != nil {
				t.Fatal(err)
			}
			g, err := parseGraph(m.graph)
			if err != nil {
				t.Fatal(err)
			}
			name := tt.opts.Output
			if name == "" {
				name = "sentence_embedding"
			}
			v, ok := find(g.outputs, name)
			if !ok || v.elem != onnxproto.DTFloat || len(v.dims) != 2 {
				t.Fatalf("output %q = %+v (found %v), want float [B, H]", name, v, ok)
			}
			if s.hiddenDims != nil && (v.dims[0] != s.hiddenDims[0] || v.dims[1] != s.hiddenDims[2]) {
				t.Errorf("output dims = %+v, want the hidden output's batch and hidden dims", v.dims)
			}
		})
	}
}

// TestAppendTruncated cuts the tiny model at many points: every prefix must
// fail cleanly (a cut between top-level fields drops the opset or graph).
func TestAppendTruncated(t *testing.T) {
	model := tinyONNX(t)
	m, err := parseModel(model)
	if err != nil {
		t.Fatal(err)
	}
	cuts := map[int]bool{}
	for i := range 64 {
		cuts[i] = true                            // the header and the graph's tag
		cuts[len(model)-1-i] = true               // the opset_import at the end
		cuts[m.graphStart+i] = true               // around the graph field's start
		cuts[m.graphEnd-i] = true                 // the graph's last bytes
		cuts[m.graphStart+i*len(model)/64] = true // spread over the weights
	}
	for n := range cuts {
		if n < 0 || n >= len(model) {
			continue
		}
		if out, err := Append(model[:n], Options{Pooling: pooling.Mean}); err == nil {
			t.Errorf("Append(model[:%d]) = %d bytes, nil; want an error", n, len(out))
		}
	}
}

// TestAppendCorrupted flips bytes of a small model: Append may accept or
// refuse the result, but must not panic.
func TestAppendCorrupted(t *testing.T) {
	model := defaultSynth().encode()
	for i := range model {
		for _, x := range []byte{0x00, 0xff, 0x80, 0x0a} {
			c := bytes.Clone(model)
			c[i] = x
			_, _ = Append(c, Options{Pooling: pooling.LastToken, Normalize: true})
		}
	}
}

func FuzzAppend(f *testing.F) {
	f.Add(defaultSynth().encode())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, model []byte) {
		out, err := Append(model, Options{Pooling: pooling.Mean, Normalize: true})
		if err != nil {
			return
		}
		if _, err := parseModel(out); err != nil {
			t.Fatalf("Append accepted a model but wrote one that does not parse: %v", err)
		}
	})
}
