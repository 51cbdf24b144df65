package testmodel

import (
	"encoding/binary"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// This file is a write-only encoder for the few ONNX protobuf messages the
// generator needs. Field numbers come from onnx/onnx.proto (IR 8). Writing
// them by hand keeps generated ONNX types (and their dependencies) out of the
// module, and fields are always emitted in the same order, so the output is
// byte-for-byte deterministic.

// ONNX TensorProto.DataType values.
const (
	dtFloat = 1
	dtInt64 = 7
)

// ONNX AttributeProto.AttributeType values.
const (
	attrFloat = 1
	attrInt   = 2
	attrInts  = 7
)

// tensor is an initializer or constant: raw little-endian data.
type tensor struct {
	name  string
	dims  []int64
	dtype int32
	raw   []byte
}

func floatTensor(name string, dims []int64, v []float32) tensor {
	raw := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(f))
	}
	return tensor{name: name, dims: dims, dtype: dtFloat, raw: raw}
}

func int64Tensor(name string, dims []int64, v []int64) tensor {
	raw := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(raw[8*i:], uint64(x))
	}
	return tensor{name: name, dims: dims, dtype: dtInt64, raw: raw}
}

func (t tensor) encode() []byte {
	var b []byte
	for _, d := range t.dims {
		b = protowire.AppendTag(b, 1, protowire.VarintType) // dims
		b = protowire.AppendVarint(b, uint64(d))
	}
	b = protowire.AppendTag(b, 2, protowire.VarintType) // data_type
	b = protowire.AppendVarint(b, uint64(t.dtype))
	b = appendString(b, 8, t.name)                     // name
	b = protowire.AppendTag(b, 9, protowire.BytesType) // raw_data
	return protowire.AppendBytes(b, t.raw)
}

// attr is one node attribute; exactly one of its value fields is used,
// as kind says.
type attr struct {
	name string
	kind int
	f    float32
	i    int64
	ints []int64
}

func (a attr) encode() []byte {
	b := appendString(nil, 1, a.name)
	switch a.kind {
	case attrFloat:
		b = protowire.AppendTag(b, 2, protowire.Fixed32Type)
		b = protowire.AppendFixed32(b, math.Float32bits(a.f))
	case attrInt:
		b = protowire.AppendTag(b, 3, protowire.VarintType)
		b = protowire.AppendVarint(b, uint64(a.i))
	case attrInts:
		for _, x := range a.ints {
			b = protowire.AppendTag(b, 8, protowire.VarintType)
			b = protowire.AppendVarint(b, uint64(x))
		}
	}
	b = protowire.AppendTag(b, 20, protowire.VarintType) // type
	return protowire.AppendVarint(b, uint64(a.kind))
}

type node struct {
	op      string
	name    string
	inputs  []string
	outputs []string
	attrs   []attr
}

func (n node) encode() []byte {
	var b []byte
	for _, s := range n.inputs {
		b = appendString(b, 1, s)
	}
	for _, s := range n.outputs {
		b = appendString(b, 2, s)
	}
	b = appendString(b, 3, n.name)
	b = appendString(b, 4, n.op)
	for _, a := range n.attrs {
		b = appendMessage(b, 5, a.encode())
	}
	return b
}

// valueInfo is a graph input or output: a tensor whose dims are either fixed
// (dim > 0) or symbolic (the matching name in params).
type valueInfo struct {
	name   string
	dtype  int32
	dims   []int64
	params []string
}

func (v valueInfo) encode() []byte {
	var shape []byte
	for i, d := range v.dims {
		var dim []byte
		if d > 0 {
			dim = protowire.AppendTag(dim, 1, protowire.VarintType) // dim_value
			dim = protowire.AppendVarint(dim, uint64(d))
		} else {
			dim = appendString(dim, 2, v.params[i]) // dim_param
		}
		shape = appendMessage(shape, 1, dim)
	}
	tt := protowire.AppendTag(nil, 1, protowire.VarintType) // elem_type
	tt = protowire.AppendVarint(tt, uint64(v.dtype))
	tt = appendMessage(tt, 2, shape)  // shape
	typ := appendMessage(nil, 1, tt)  // TypeProto.tensor_type
	b := appendString(nil, 1, v.name) // name
	return appendMessage(b, 2, typ)   // type
}

type graph struct {
	name    string
	nodes   []node
	inits   []tensor
	inputs  []valueInfo
	outputs []valueInfo
}

func (g *graph) encode() []byte {
	var b []byte
	for _, n := range g.nodes {
		b = appendMessage(b, 1, n.encode())
	}
	b = appendString(b, 2, g.name)
	for _, t := range g.inits {
		b = appendMessage(b, 5, t.encode())
	}
	for _, v := range g.inputs {
		b = appendMessage(b, 11, v.encode())
	}
	for _, v := range g.outputs {
		b = appendMessage(b, 12, v.encode())
	}
	return b
}

// encodeModel wraps g in a ModelProto (IR 8, default-domain opset 17).
func encodeModel(g *graph, producer string) []byte {
	b := protowire.AppendTag(nil, 1, protowire.VarintType) // ir_version
	b = protowire.AppendVarint(b, 8)
	b = appendString(b, 2, producer) // producer_name
	b = appendMessage(b, 7, g.encode())
	opset := appendString(nil, 1, "")
	opset = protowire.AppendTag(opset, 2, protowire.VarintType)
	opset = protowire.AppendVarint(opset, 17)
	return appendMessage(b, 8, opset) // opset_import
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendMessage(b []byte, num protowire.Number, msg []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, msg)
}
