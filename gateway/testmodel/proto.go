package testmodel

import (
	"cmp"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/embedgate/embedgate/gateway/internal/onnxproto"
)

// This file frames the generator's graph and model; the messages inside them
// come from onnxproto, which onnxpool shares. Field numbers come from
// onnx/onnx.proto (IR 8), and fields are always emitted in the same order,
// so the output is byte-for-byte deterministic.

type graph struct {
	name    string
	opset   int64 // the default-domain opset_import; 0 = DefaultOpset
	nodes   []onnxproto.Node
	inits   []onnxproto.Tensor
	inputs  []onnxproto.ValueInfo
	outputs []onnxproto.ValueInfo
}

func (g *graph) encode() []byte {
	var b []byte
	for _, n := range g.nodes {
		b = onnxproto.AppendMessage(b, 1, n.Encode())
	}
	b = onnxproto.AppendString(b, 2, g.name)
	for _, t := range g.inits {
		b = onnxproto.AppendMessage(b, 5, t.Encode())
	}
	for _, v := range g.inputs {
		b = onnxproto.AppendMessage(b, 11, v.Encode())
	}
	for _, v := range g.outputs {
		b = onnxproto.AppendMessage(b, 12, v.Encode())
	}
	return b
}

// encodeModel wraps g in a ModelProto (IR 8, default-domain opset g.opset).
func encodeModel(g *graph, producer string) []byte {
	b := protowire.AppendTag(nil, 1, protowire.VarintType) // ir_version
	b = protowire.AppendVarint(b, 8)
	b = onnxproto.AppendString(b, 2, producer) // producer_name
	b = onnxproto.AppendMessage(b, 7, g.encode())
	opset := onnxproto.AppendString(nil, 1, "")
	opset = protowire.AppendTag(opset, 2, protowire.VarintType)
	opset = protowire.AppendVarint(opset, uint64(cmp.Or(g.opset, DefaultOpset)))
	return onnxproto.AppendMessage(b, 8, opset) // opset_import
}
