package testmodel_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/embedgate/embedgate/gateway/testmodel"
)

// node is what TestOpsetForms checks of a NodeProto.
type node struct {
	op     string
	inputs int
	attrs  []string
}

// graphOf returns the default-domain opset and the nodes of an ONNX model.
func graphOf(t *testing.T, model []byte) (int64, []node) {
	t.Helper()
	top := fields(t, model)
	opset := int64(-1)
	for _, o := range top[8] {
		f := fields(t, o)
		if len(f[1]) == 0 || string(f[1][0]) == "" {
			v, _ := protowire.ConsumeVarint(f[2][0])
			opset = int64(v)
		}
	}
	var nodes []node
	for _, n := range fields(t, top[7][0])[1] {
		f := fields(t, n)
		nd := node{op: string(f[4][0]), inputs: len(f[1])}
		for _, a := range f[5] {
			nd.attrs = append(nd.attrs, string(fields(t, a)[1][0]))
		}
		nodes = append(nodes, nd)
	}
	return opset, nodes
}

// TestOpsetForms checks each opset's graph for the ops and forms ONNX
// defines at that opset (onnx/docs/Changelog.md), independently of the
// rule the generator follows: LayerNormalization from 17, Shape's start
// and end from 15, axes as an input from 13 for ReduceSum and Unsqueeze
// and from 18 for ReduceMean. ONNX Runtime is lenient about some of these
// (it has its own LayerNormalization for older opsets), so it is no check.
func TestOpsetForms(t *testing.T) {
	for _, opset := range []int{11, 12, 13, 14, 15, 16, 17} {
		for _, opts := range [][]testmodel.Option{{testmodel.WithPooled()}, {testmodel.WithNumLabels(1)}} {
			dir := t.TempDir()
			if err := testmodel.Write(dir, testmodel.NewConfig(append(opts, testmodel.WithOpset(opset))...)); err != nil {
				t.Fatalf("opset %d: Write: %v", opset, err)
			}
			model, err := os.ReadFile(filepath.Join(dir, "onnx", "model.onnx"))
			if err != nil {
				t.Fatal(err)
			}
			got, nodes := graphOf(t, model)
			if got != int64(opset) {
				t.Fatalf("WithOpset(%d) wrote opset_import %d", opset, got)
			}
			count := map[string]int{}
			for _, n := range nodes {
				count[n.op]++
				axesAttr := slices.Contains(n.attrs, "axes")
				switch n.op {
				case "LayerNormalization":
					if opset < 17 {
						t.Errorf("opset %d: LayerNormalization is opset 17's", opset)
					}
				case "Shape":
					if opset < 15 && len(n.attrs) > 0 {
						t.Errorf("opset %d: Shape with attributes %v (opset 15's)", opset, n.attrs)
					}
				case "ReduceSum", "Unsqueeze", "ReduceMean":
					asInput := opset >= 13 && n.op != "ReduceMean"
					if asInput && (n.inputs != 2 || axesAttr) || !asInput && (n.inputs != 1 || !axesAttr) {
						t.Errorf("opset %d: %s with %d inputs and attributes %v, want axes as an input: %v",
							opset, n.op, n.inputs, n.attrs, asInput)
					}
				}
			}
			if opset < 17 && count["ReduceMean"] == 0 {
				t.Errorf("opset %d: no ReduceMean: where did LayerNormalization go?", opset)
			}
		}
	}
}

func TestWithOpsetErrors(t *testing.T) {
	for _, n := range []int{-1, 1, 10, 18} {
		if err := testmodel.Write(t.TempDir(), testmodel.NewConfig(testmodel.WithOpset(n))); err == nil {
			t.Errorf("WithOpset(%d): Write = nil, want an error", n)
		}
	}
}
