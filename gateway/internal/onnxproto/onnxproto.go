// Package onnxproto is a write-only encoder for the few ONNX protobuf
// messages embedgate builds: tensors, node attributes, nodes and tensor value
// infos. Field numbers come from onnx/onnx.proto. Writing them by hand keeps
// generated ONNX types (and their dependencies) out of the module, and each
// message emits its fields in one fixed order, so the output is
// byte-for-byte deterministic: testmodel pins its models by sha256 and
// onnxpool appends to existing models without disturbing a byte.
//
// Graphs and models are not here: testmodel writes whole ones, while
// onnxpool only appends fields to a graph it reads, so each frames its own.
package onnxproto

import (
	"encoding/binary"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// ONNX TensorProto.DataType values.
const (
	DTUndefined  = 0
	DTFloat      = 1
	DTInt64      = 7
	DTString     = 8
	DTBool       = 9
	DTFloat16    = 10
	DTDouble     = 11
	DTComplex64  = 14
	DTComplex128 = 15
	DTBFloat16   = 16
)

// ONNX AttributeProto.AttributeType values.
const (
	AttrFloat = 1
	AttrInt   = 2
	AttrInts  = 7
)

// AppendString appends the string field num to the message b.
func AppendString(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

// AppendMessage appends msg, an encoded message, as the field num of b.
func AppendMessage(b []byte, num protowire.Number, msg []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, msg)
}

// Tensor is a TensorProto holding raw little-endian data: an initializer
// or a constant.
type Tensor struct {
	Name  string
	Dims  []int64 // nil: a scalar
	DType int32   // a DT* value
	Raw   []byte
}

// FloatTensor returns a float32 tensor of the given dims holding v.
func FloatTensor(name string, dims []int64, v []float32) Tensor {
	raw := make([]byte, 0, 4*len(v))
	for _, f := range v {
		raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(f))
	}
	return Tensor{Name: name, Dims: dims, DType: DTFloat, Raw: raw}
}

// Int64Tensor returns an int64 tensor of the given dims holding v.
func Int64Tensor(name string, dims []int64, v []int64) Tensor {
	raw := make([]byte, 0, 8*len(v))
	for _, x := range v {
		raw = binary.LittleEndian.AppendUint64(raw, uint64(x))
	}
	return Tensor{Name: name, Dims: dims, DType: DTInt64, Raw: raw}
}

// Encode returns t as a TensorProto.
func (t Tensor) Encode() []byte {
	var b []byte
	for _, d := range t.Dims {
		b = protowire.AppendTag(b, 1, protowire.VarintType) // dims
		b = protowire.AppendVarint(b, uint64(d))
	}
	b = protowire.AppendTag(b, 2, protowire.VarintType) // data_type
	b = protowire.AppendVarint(b, uint64(t.DType))
	b = AppendString(b, 8, t.Name)                     // name
	b = protowire.AppendTag(b, 9, protowire.BytesType) // raw_data
	return protowire.AppendBytes(b, t.Raw)
}

// Attr is one node attribute (an AttributeProto). Exactly one value field
// is written, as Kind says; IntAttr, FloatAttr and IntsAttr fill it in.
type Attr struct {
	Name string
	Kind int // an Attr* value
	F    float32
	I    int64
	Ints []int64
}

// IntAttr returns an integer attribute.
func IntAttr(name string, v int64) Attr { return Attr{Name: name, Kind: AttrInt, I: v} }

// FloatAttr returns a float attribute.
func FloatAttr(name string, v float32) Attr { return Attr{Name: name, Kind: AttrFloat, F: v} }

// IntsAttr returns an integer-list attribute.
func IntsAttr(name string, v ...int64) Attr { return Attr{Name: name, Kind: AttrInts, Ints: v} }

// Encode returns a as an AttributeProto.
func (a Attr) Encode() []byte {
	b := AppendString(nil, 1, a.Name)
	switch a.Kind {
	case AttrFloat:
		b = protowire.AppendTag(b, 2, protowire.Fixed32Type) // f
		b = protowire.AppendFixed32(b, math.Float32bits(a.F))
	case AttrInt:
		b = protowire.AppendTag(b, 3, protowire.VarintType) // i
		b = protowire.AppendVarint(b, uint64(a.I))
	case AttrInts:
		for _, x := range a.Ints {
			b = protowire.AppendTag(b, 8, protowire.VarintType) // ints, unpacked
			b = protowire.AppendVarint(b, uint64(x))
		}
	}
	b = protowire.AppendTag(b, 20, protowire.VarintType) // type
	return protowire.AppendVarint(b, uint64(a.Kind))
}

// Node is a NodeProto in the default domain.
type Node struct {
	Op      string
	Name    string
	Inputs  []string
	Outputs []string
	Attrs   []Attr
}

// Encode returns n as a NodeProto.
func (n Node) Encode() []byte {
	var b []byte
	for _, s := range n.Inputs {
		b = AppendString(b, 1, s)
	}
	for _, s := range n.Outputs {
		b = AppendString(b, 2, s)
	}
	b = AppendString(b, 3, n.Name)
	b = AppendString(b, 4, n.Op)
	for _, a := range n.Attrs {
		b = AppendMessage(b, 5, a.Encode())
	}
	return b
}

// Dim is one dimension of a tensor shape: a fixed size, a symbol, or
// neither (unknown).
type Dim struct {
	Value int64  // > 0 when fixed
	Param string // the symbol, e.g. "batch_size"
}

// ValueInfo is a tensor graph input or output (a ValueInfoProto).
type ValueInfo struct {
	Name string
	Elem int32 // a DT* value
	// Dims is the shape; nil leaves the shape unstated, which differs from
	// an empty shape (a scalar).
	Dims []Dim
}

// Encode returns v as a ValueInfoProto with a tensor type. A dim with a
// Value is written as dim_value, else one with a Param as dim_param, else
// as an empty Dimension (unknown).
func (v ValueInfo) Encode() []byte {
	var shape []byte
	for _, d := range v.Dims {
		var db []byte
		switch {
		case d.Value > 0:
			db = protowire.AppendTag(db, 1, protowire.VarintType) // dim_value
			db = protowire.AppendVarint(db, uint64(d.Value))
		case d.Param != "":
			db = AppendString(db, 2, d.Param) // dim_param
		}
		shape = AppendMessage(shape, 1, db)
	}
	tt := protowire.AppendTag(nil, 1, protowire.VarintType) // elem_type
	tt = protowire.AppendVarint(tt, uint64(v.Elem))
	if v.Dims != nil {
		tt = AppendMessage(tt, 2, shape) // shape
	}
	typ := AppendMessage(nil, 1, tt)  // TypeProto.tensor_type
	b := AppendString(nil, 1, v.Name) // name
	return AppendMessage(b, 2, typ)   // type
}
