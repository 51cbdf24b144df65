package onnxpool

import (
	"encoding/binary"
	"fmt"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// This file reads the few ONNX protobuf fields Append needs and writes the
// messages it adds. Field numbers come from onnx/onnx.proto. Reading walks
// the wire format without generated types, so unknown and future fields are
// skipped untouched, and every malformed input ends in an error: protowire
// reports truncation and bad tags as negative lengths and never panics.

// ModelProto, GraphProto and their parts: the field numbers used here.
const (
	modelIRVersion = 1
	modelGraph     = 7
	modelOpset     = 8

	graphNode        = 1
	graphInitializer = 5
	graphInput       = 11
	graphOutput      = 12
	graphValueInfo   = 13
	graphSparseInit  = 15
)

// ONNX TensorProto.DataType values.
const (
	dtUndefined  = 0
	dtFloat      = 1
	dtString     = 8
	dtBool       = 9
	dtFloat16    = 10
	dtDouble     = 11
	dtComplex64  = 14
	dtComplex128 = 15
	dtBFloat16   = 16
	dtInt64      = 7
)

// ONNX AttributeProto.AttributeType values.
const (
	attrInt = 2
)

// walk calls fn for each field of the message b: its number, wire type, the
// value bytes of a length-delimited field, and the value of a varint.
func walk(b []byte, fn func(num protowire.Number, typ protowire.Type, val []byte, v uint64) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var val []byte
		var v uint64
		switch typ {
		case protowire.BytesType:
			val, n = protowire.ConsumeBytes(b)
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if err := fn(num, typ, val, v); err != nil {
			return err
		}
	}
	return nil
}

// wantType rejects a known field sent with the wrong wire type, which a
// decoder would treat as corruption.
func wantType(what string, got, want protowire.Type) error {
	if got != want {
		return fmt.Errorf("%s has wire type %d, want %d", what, got, want)
	}
	return nil
}

// dim is one dimension of a tensor shape: a fixed size, a symbol, or neither.
type dim struct {
	value int64  // > 0 when fixed
	param string // the symbol, e.g. "batch_size"
}

// valueInfo is what Append needs of a graph input or output.
type valueInfo struct {
	name     string
	typed    bool  // the type is stated
	tensor   bool  // the type is a tensor (not a sequence, map, …)
	elem     int32 // TensorProto.DataType; 0 when not stated
	hasShape bool
	dims     []dim
}

func parseValueInfo(b []byte) (valueInfo, error) {
	var vi valueInfo
	err := walk(b, func(num protowire.Number, typ protowire.Type, val []byte, _ uint64) error {
		switch num {
		case 1: // name
			if err := wantType("value info name", typ, protowire.BytesType); err != nil {
				return err
			}
			vi.name = string(val)
		case 2: // type: TypeProto
			if err := wantType("value info type", typ, protowire.BytesType); err != nil {
				return err
			}
			vi.typed = true
			return walk(val, func(num protowire.Number, typ protowire.Type, val []byte, _ uint64) error {
				if num != 1 { // tensor_type; the other members are not tensors
					return nil
				}
				if err := wantType("tensor type", typ, protowire.BytesType); err != nil {
					return err
				}
				vi.tensor = true
				return parseTensorType(val, &vi)
			})
		}
		return nil
	})
	return vi, err
}

// parseTensorType reads TypeProto.Tensor: elem_type (1) and shape (2).
func parseTensorType(b []byte, vi *valueInfo) error {
	return walk(b, func(num protowire.Number, typ protowire.Type, val []byte, v uint64) error {
		switch num {
		case 1:
			if err := wantType("elem type", typ, protowire.VarintType); err != nil {
				return err
			}
			vi.elem = int32(v)
		case 2:
			if err := wantType("shape", typ, protowire.BytesType); err != nil {
				return err
			}
			vi.hasShape, vi.dims = true, nil
			return walk(val, func(num protowire.Number, typ protowire.Type, val []byte, _ uint64) error {
				if num != 1 {
					return nil
				}
				if err := wantType("dim", typ, protowire.BytesType); err != nil {
					return err
				}
				var d dim
				err := walk(val, func(num protowire.Number, typ protowire.Type, val []byte, v uint64) error {
					switch {
					case num == 1 && typ == protowire.VarintType:
						d.value = int64(v)
					case num == 2 && typ == protowire.BytesType:
						d.param = string(val)
					}
					return nil
				})
				vi.dims = append(vi.dims, d)
				return err
			})
		}
		return nil
	})
}

// stringsOf returns the values of the string field num of message b.
func stringsOf(b []byte, num protowire.Number) ([]string, error) {
	var out []string
	err := walk(b, func(n protowire.Number, typ protowire.Type, val []byte, _ uint64) error {
		if n != num {
			return nil
		}
		if err := wantType(fmt.Sprintf("field %d", num), typ, protowire.BytesType); err != nil {
			return err
		}
		out = append(out, string(val))
		return nil
	})
	return out, err
}

// Writing. The encoders below mirror gateway/testmodel/proto.go, which is a
// test-only package (it embeds a tokenizer), so the tool does not import it.

func appendString(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendMessage(b []byte, num protowire.Number, msg []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, msg)
}

// tensor is an initializer: raw little-endian data.
type tensor struct {
	name  string
	dims  []int64 // nil = a scalar
	dtype int32
	raw   []byte
}

func floatScalar(name string, f float32) tensor {
	return tensor{name: name, dtype: dtFloat, raw: binary.LittleEndian.AppendUint32(nil, math.Float32bits(f))}
}

func int64Tensor(name string, dims []int64, v ...int64) tensor {
	var raw []byte
	for _, x := range v {
		raw = binary.LittleEndian.AppendUint64(raw, uint64(x))
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

// intAttr is an integer node attribute.
type intAttr struct {
	name string
	v    int64
}

func (a intAttr) encode() []byte {
	b := appendString(nil, 1, a.name)
	b = protowire.AppendTag(b, 3, protowire.VarintType) // i
	b = protowire.AppendVarint(b, uint64(a.v))
	b = protowire.AppendTag(b, 20, protowire.VarintType) // type
	return protowire.AppendVarint(b, attrInt)
}

type node struct {
	op     string
	name   string
	inputs []string
	output string
	attrs  []intAttr
}

func (n node) encode() []byte {
	var b []byte
	for _, s := range n.inputs {
		b = appendString(b, 1, s)
	}
	b = appendString(b, 2, n.output)
	b = appendString(b, 3, n.name)
	b = appendString(b, 4, n.op)
	for _, a := range n.attrs {
		b = appendMessage(b, 5, a.encode())
	}
	return b
}

// encodeValueInfo writes a tensor ValueInfoProto; a dim with value 0 is
// written as its param (a symbol), or left unknown without one. nil dims
// leave the shape unstated.
func encodeValueInfo(name string, elem int32, dims []dim) []byte {
	var shape []byte
	for _, d := range dims {
		var db []byte
		switch {
		case d.value > 0:
			db = protowire.AppendTag(db, 1, protowire.VarintType) // dim_value
			db = protowire.AppendVarint(db, uint64(d.value))
		case d.param != "":
			db = appendString(db, 2, d.param) // dim_param
		}
		shape = appendMessage(shape, 1, db)
	}
	tt := protowire.AppendTag(nil, 1, protowire.VarintType) // elem_type
	tt = protowire.AppendVarint(tt, uint64(elem))
	if dims != nil {
		tt = appendMessage(tt, 2, shape)
	}
	typ := appendMessage(nil, 1, tt) // TypeProto.tensor_type
	b := appendString(nil, 1, name)
	return appendMessage(b, 2, typ)
}
