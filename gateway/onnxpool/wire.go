package onnxpool

import (
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/embedgate/embedgate/gateway/internal/onnxproto"
)

// This file reads the few ONNX protobuf fields Append needs; onnxproto writes
// the messages it adds. Field numbers come from onnx/onnx.proto. Reading
// walks the wire format without generated types, so unknown and future
// fields are skipped untouched, and every malformed input ends in an error:
// protowire reports truncation and bad tags as negative lengths and never
// panics. The parsed dims are onnxproto.Dim, so a dim read here can be
// written back unchanged.

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

// valueInfo is what Append needs of a graph input or output.
type valueInfo struct {
	name     string
	typed    bool  // the type is stated
	tensor   bool  // the type is a tensor (not a sequence, map, …)
	elem     int32 // an onnxproto.DT* value; 0 when not stated
	hasShape bool
	dims     []onnxproto.Dim
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
				var d onnxproto.Dim
				err := walk(val, func(num protowire.Number, typ protowire.Type, val []byte, v uint64) error {
					switch {
					case num == 1 && typ == protowire.VarintType:
						d.Value = int64(v)
					case num == 2 && typ == protowire.BytesType:
						d.Param = string(val)
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
