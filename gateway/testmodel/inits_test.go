package testmodel_test

import (
	"encoding/binary"
	"math"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
)

// floatInits reads the float initialisers of an ONNX model as testmodel
// writes them (raw little-endian data), by name.
func floatInits(t *testing.T, model []byte) map[string][]float32 {
	t.Helper()
	out := map[string][]float32{}
	graph := fields(t, model)[7]
	if len(graph) != 1 {
		t.Fatalf("model has %d graphs", len(graph))
	}
	for _, init := range fields(t, graph[0])[5] {
		f := fields(t, init)
		if len(f[2]) != 1 || len(f[8]) != 1 || len(f[9]) != 1 {
			t.Fatalf("initializer without one data_type, name and raw_data")
		}
		if dt, _ := protowire.ConsumeVarint(f[2][0]); dt != 1 { // FLOAT
			continue
		}
		raw := f[9][0]
		v := make([]float32, len(raw)/4)
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
		out[string(f[8][0])] = v
	}
	return out
}

// fields splits a protobuf message into its fields' payloads by number:
// bytes fields' contents, and varints re-encoded.
func fields(t *testing.T, b []byte) map[protowire.Number][][]byte {
	t.Helper()
	out := map[protowire.Number][][]byte{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			t.Fatalf("bad tag: %v", protowire.ParseError(n))
		}
		b = b[n:]
		var val []byte
		switch typ {
		case protowire.BytesType:
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				t.Fatalf("field %d: %v", num, protowire.ParseError(m))
			}
			val, n = v, m
		case protowire.VarintType:
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				t.Fatalf("field %d: %v", num, protowire.ParseError(m))
			}
			val, n = protowire.AppendVarint(nil, v), m
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				t.Fatalf("field %d: %v", num, protowire.ParseError(n))
			}
		}
		out[num] = append(out[num], val)
		b = b[n:]
	}
	return out
}
