package triton

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"testing"
	"unsafe"

	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/tritonstubs"
)

func newCodec(t testing.TB) *inferCodec {
	t.Helper()
	c := encoding.GetCodecV2(protoenc.Name)
	if c == nil {
		t.Fatal("grpc's proto codec is not registered")
	}
	return &inferCodec{proto: c}
}

// unmarshalResp marshals m and decodes it with inferCodec, as ModelInfer
// would receive it.
func unmarshalResp(t *testing.T, pool *floatPool, m *tritonstubs.ModelInferResponse) *inferResponse {
	t.Helper()
	wire, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	r := &inferResponse{pool: pool}
	if err := newCodec(t).Unmarshal(splitEvery(wire, 7), r); err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	return r
}

// cut returns wire as buffers split at the given increasing offsets.
func cut(wire []byte, at ...int) mem.BufferSlice {
	var s mem.BufferSlice
	prev := 0
	for _, i := range at {
		s = append(s, mem.SliceBuffer(wire[prev:i]))
		prev = i
	}
	return append(s, mem.SliceBuffer(wire[prev:]))
}

// bytesOf is f's memory as little-endian FP32 (the test hosts are
// little-endian; see TestCodecSplits for the other path).
func bytesOf(f []float32) []byte {
	b := make([]byte, 4*len(f))
	for i, x := range f {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// sameAsProto checks that r holds what proto.Unmarshal makes of wire, but
// for the top-level unknown fields that inferCodec skips.
func sameAsProto(t *testing.T, wire []byte, r *inferResponse) {
	t.Helper()
	var want tritonstubs.ModelInferResponse
	if err := proto.Unmarshal(wire, &want); err != nil {
		t.Fatalf("proto.Unmarshal: %v", err)
	}
	want.ProtoReflect().SetUnknown(nil)
	if len(r.raw) != len(want.RawOutputContents) {
		t.Fatalf("decoded %d raw_output_contents, want %d", len(r.raw), len(want.RawOutputContents))
	}
	for i, f := range r.raw {
		if got := bytesOf(f); !bytes.Equal(got, want.RawOutputContents[i]) {
			t.Fatalf("raw_output_contents[%d] = % x, want % x", i, got, want.RawOutputContents[i])
		}
	}
	want.RawOutputContents = nil
	if !proto.Equal(&r.msg, &want) {
		t.Fatalf("decoded %v, want %v", &r.msg, &want)
	}
}

// richWire is a small ModelInferResponse using every field, with unknown
// fields of every wire type, known numbers with unexpected wire types, and
// an empty raw_output_contents entry.
func richWire(t testing.TB) []byte {
	t.Helper()
	m := &tritonstubs.ModelInferResponse{ModelName: "embed", ModelVersion: "1", Id: "req-7",
		Parameters: map[string]*tritonstubs.InferParameter{
			"seq": {ParameterChoice: &tritonstubs.InferParameter_Int64Param{Int64Param: 3}},
		},
		Outputs: []*tritonstubs.ModelInferResponse_InferOutputTensor{
			{Name: gateway.TensorLastHiddenState, Datatype: "FP32", Shape: []int64{1, 2, 2}},
			{Name: "empty", Datatype: "FP32", Shape: []int64{0}},
			{Name: gateway.TensorSentenceEmbedding, Datatype: "FP32", Shape: []int64{1, 3}},
		},
		RawOutputContents: [][]byte{
			bytesOf([]float32{1, -2, 3.5, float32(math.Inf(1))}),
			{},
			bytesOf([]float32{0.25, -0, 1e-30}),
		},
	}
	wire, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	wire = protowire.AppendTag(wire, 9, protowire.VarintType)
	wire = protowire.AppendVarint(wire, 1<<40)
	wire = protowire.AppendTag(wire, 10, protowire.Fixed32Type)
	wire = protowire.AppendFixed32(wire, 7)
	wire = protowire.AppendTag(wire, 11, protowire.Fixed64Type)
	wire = protowire.AppendFixed64(wire, 7)
	wire = protowire.AppendTag(wire, 12, protowire.BytesType)
	wire = protowire.AppendBytes(wire, []byte("skip me"))
	wire = protowire.AppendTag(wire, 13, protowire.StartGroupType)
	wire = protowire.AppendTag(wire, 1, protowire.VarintType)
	wire = protowire.AppendVarint(wire, 5)
	wire = protowire.AppendTag(wire, 2, protowire.StartGroupType)
	wire = protowire.AppendTag(wire, 2, protowire.EndGroupType)
	wire = protowire.AppendTag(wire, 13, protowire.EndGroupType)
	wire = protowire.AppendTag(wire, fieldRawOutputContents, protowire.VarintType) // unknown to proto too
	wire = protowire.AppendVarint(wire, 3)
	wire = protowire.AppendTag(wire, fieldModelName, protowire.Fixed32Type)
	wire = protowire.AppendFixed32(wire, 3)
	// A later model_version replaces the first, as in proto.Unmarshal.
	wire = protowire.AppendTag(wire, 2, protowire.BytesType)
	return protowire.AppendString(wire, "2")
}

// TestCodecSplits decodes a message cut at every byte, at close pairs of
// bytes, one byte per buffer and with empty buffers between, on both the
// little-endian and the portable path, and compares with proto.Unmarshal.
func TestCodecSplits(t *testing.T) {
	t.Parallel()
	wire := richWire(t)
	pool := newFloatPool(8, 1<<20)
	check := func(t *testing.T, data mem.BufferSlice) {
		t.Helper()
		for _, native := range []bool{true, false} {
			r := &inferResponse{pool: pool}
			if err := r.unmarshal(data, native); err != nil {
				t.Fatalf("unmarshal(native=%v): %v", native, err)
			}
			sameAsProto(t, wire, r)
			r.release()
		}
	}
	t.Run("Whole", func(t *testing.T) { check(t, cut(wire)) })
	t.Run("OneCut", func(t *testing.T) {
		for i := range len(wire) + 1 {
			check(t, cut(wire, i))
		}
	})
	t.Run("TwoCuts", func(t *testing.T) {
		// Cuts up to 12 bytes apart put a tag, a length or a value across
		// three buffers.
		for i := range len(wire) + 1 {
			for j := i; j <= min(i+12, len(wire)); j++ {
				check(t, cut(wire, i, j))
			}
		}
	})
	t.Run("EveryByte", func(t *testing.T) { check(t, splitEvery(wire, 1)) })
	t.Run("EmptyBuffers", func(t *testing.T) {
		var data mem.BufferSlice
		for i := range wire {
			data = append(data, mem.SliceBuffer(nil), mem.SliceBuffer(wire[i:i+1]))
		}
		check(t, append(data, mem.SliceBuffer(nil)))
	})
	t.Run("Empty", func(t *testing.T) {
		r := &inferResponse{pool: pool}
		if err := r.unmarshal(nil, true); err != nil || len(r.raw) != 0 || r.msg.GetModelName() != "" {
			t.Errorf("unmarshal(empty) = %v, %d raw, %v; want an empty response", err, len(r.raw), &r.msg)
		}
	})
}

// TestCodecLarge decodes a tensor bigger than the portable path's scratch
// array from HTTP/2-sized frames.
func TestCodecLarge(t *testing.T) {
	vals := make([]float32, 3000)
	for i := range vals {
		vals[i] = float32(i) / 7
	}
	wire, err := proto.Marshal(&tritonstubs.ModelInferResponse{RawOutputContents: [][]byte{bytesOf(vals)}})
	if err != nil {
		t.Fatal(err)
	}
	pool := newFloatPool(2, 1<<20)
	for _, native := range []bool{true, false} {
		r := &inferResponse{pool: pool}
		if err := r.unmarshal(splitEvery(wire, 1000), native); err != nil {
			t.Fatalf("unmarshal(native=%v): %v", native, err)
		}
		sameAsProto(t, wire, r)
		r.release()
	}
}

// TestCodecDelegates checks that other messages use grpc's proto codec.
func TestCodecDelegates(t *testing.T) {
	c := newCodec(t)
	if c.Name() != "proto" {
		t.Errorf("Name() = %q, want proto (same content-type as grpc's codec)", c.Name())
	}
	in := &tritonstubs.ModelInferRequest{ModelName: "m", Id: "x", RawInputContents: [][]byte{{1, 2, 3}}}
	data, err := c.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out tritonstubs.ModelInferRequest
	if err := c.Unmarshal(data, &out); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(in, &out) {
		t.Errorf("round trip = %v, want %v", &out, in)
	}
}

func TestCodecMalformed(t *testing.T) {
	tag := func(num protowire.Number, typ protowire.Type) []byte { return protowire.AppendTag(nil, num, typ) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	good := richWire(t)
	for _, tt := range []struct {
		name string
		wire []byte
	}{
		{"TruncatedTag", []byte{0x80}},
		{"FieldZero", []byte{0x02, 0x00}},
		{"FieldTooLarge", tag(protowire.MaxValidNumber+1, protowire.VarintType)},
		{"TagOverflow", bytes.Repeat([]byte{0xff}, 11)},
		{"TenthByteOverflow", cat(tag(9, protowire.VarintType), bytes.Repeat([]byte{0xff}, 9), []byte{0x02})},
		{"TruncatedVarint", cat(tag(9, protowire.VarintType), []byte{0x80})},
		{"TruncatedLength", cat(tag(fieldRawOutputContents, protowire.BytesType), []byte{0x80})},
		{"LengthPastEnd", cat(tag(fieldRawOutputContents, protowire.BytesType), []byte{8, 0, 0, 0, 0})},
		{"HugeLength", cat(tag(fieldRawOutputContents, protowire.BytesType), protowire.AppendVarint(nil, math.MaxUint64))},
		{"SmallFieldPastEnd", cat(tag(fieldModelName, protowire.BytesType), []byte{5, 'a'})},
		{"NotFP32", cat(tag(fieldRawOutputContents, protowire.BytesType), []byte{3, 1, 2, 3})},
		{"TruncatedFixed32", cat(tag(10, protowire.Fixed32Type), []byte{1, 2})},
		{"TruncatedFixed64", cat(tag(11, protowire.Fixed64Type), []byte{1, 2, 3, 4})},
		{"UnknownBytesPastEnd", cat(tag(12, protowire.BytesType), []byte{9, 1})},
		{"ReservedWireType", []byte{0x4e}},
		{"EndGroupAtTop", tag(13, protowire.EndGroupType)},
		{"UnterminatedGroup", tag(13, protowire.StartGroupType)},
		{"MismatchedGroup", cat(tag(13, protowire.StartGroupType), tag(14, protowire.EndGroupType))},
		{"BadTagInGroup", cat(tag(13, protowire.StartGroupType), []byte{0x00})},
		{"InvalidUTF8", cat(tag(fieldModelName, protowire.BytesType), []byte{1, 0xff})},
		{"BadOutputs", cat(tag(5, protowire.BytesType), []byte{2, 0x08, 0x80})},
		{"GoodThenTruncated", cat(good, tag(fieldRawOutputContents, protowire.BytesType), []byte{4, 1})},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pool := newFloatPool(8, 1<<20)
			for i := range len(tt.wire) + 1 {
				if len(tt.wire) > 64 && i%16 != 0 {
					continue
				}
				r := &inferResponse{pool: pool}
				err := r.unmarshal(cut(tt.wire, i), i%2 == 0)
				if err == nil {
					t.Fatalf("unmarshal(% x cut at %d) = nil error, want one", tt.wire, i)
				}
				if len(r.raw) != 0 {
					t.Fatalf("unmarshal(% x) kept %d buffers after %v", tt.wire, len(r.raw), err)
				}
				if tt.name == "NotFP32" && !errors.Is(err, errNotWhole) {
					t.Errorf("unmarshal(% x) = %v, want errNotWhole", tt.wire, err)
				}
			}
		})
	}
	// Unknown groups nest as deep as proto.Unmarshal allows, no deeper.
	t.Run("DeepGroups", func(t *testing.T) {
		for _, depth := range []int{protowire.DefaultRecursionLimit, protowire.DefaultRecursionLimit + 1, protowire.DefaultRecursionLimit + 2} {
			wire := cat(bytes.Repeat(tag(13, protowire.StartGroupType), depth), bytes.Repeat(tag(13, protowire.EndGroupType), depth))
			var ref tritonstubs.ModelInferResponse
			refErr := proto.Unmarshal(wire, &ref)
			r := &inferResponse{pool: newFloatPool(1, 1<<20)}
			if err := r.unmarshal(cut(wire, len(wire)/2), true); (err != nil) != (refErr != nil) {
				t.Errorf("unmarshal(%d nested groups) = %v, proto.Unmarshal = %v", depth, err, refErr)
			}
		}
	})
	// Every strict prefix of a good message is malformed exactly when
	// proto.Unmarshal says so.
	t.Run("Prefixes", func(t *testing.T) {
		pool := newFloatPool(8, 1<<20)
		for i := range len(good) {
			var ref tritonstubs.ModelInferResponse
			refErr := proto.Unmarshal(good[:i], &ref)
			r := &inferResponse{pool: pool}
			err := r.unmarshal(cut(good[:i], i/2), true)
			if (err != nil) != (refErr != nil) {
				t.Errorf("unmarshal(prefix %d) = %v, proto.Unmarshal = %v", i, err, refErr)
			}
			r.release()
		}
	})
}

// FuzzCodec checks that inferCodec never panics, fails where
// proto.Unmarshal fails, and otherwise decodes what it decodes; it may
// refuse only a raw_output_contents entry that is not whole FP32 values.
func FuzzCodec(f *testing.F) {
	f.Add(richWire(f), uint16(3), false)
	f.Add([]byte{0x32, 0x03, 1, 2, 3}, uint16(1), true)
	f.Add([]byte{0x6b, 0x08, 0x01, 0x6c}, uint16(2), true)
	f.Add([]byte{0x0a, 0x01, 0xff}, uint16(0), false)
	f.Fuzz(func(t *testing.T, wire []byte, at uint16, native bool) {
		var ref tritonstubs.ModelInferResponse
		refErr := proto.Unmarshal(wire, &ref)
		pool := newFloatPool(4, 1<<20)
		r := &inferResponse{pool: pool}
		i := int(at) % (len(wire) + 1)
		err := r.unmarshal(cut(wire, i/2, i), native)
		switch {
		case refErr != nil && err == nil:
			t.Fatalf("unmarshal(% x) = nil error, proto.Unmarshal: %v", wire, refErr)
		case refErr == nil && err != nil:
			if !errors.Is(err, errNotWhole) && !errors.Is(err, errTooManyOutputs) {
				t.Fatalf("unmarshal(% x) = %v, proto.Unmarshal succeeds", wire, err)
			}
		case err == nil:
			sameAsProto(t, wire, r)
		}
		r.release()
	})
}

// TestFloatsAreCopied checks that decoded values do not alias the frames,
// which gRPC reuses once Unmarshal returns.
func TestFloatsAreCopied(t *testing.T) {
	wire, err := proto.Marshal(&tritonstubs.ModelInferResponse{RawOutputContents: [][]byte{bytesOf([]float32{1, 2})}})
	if err != nil {
		t.Fatal(err)
	}
	r := &inferResponse{pool: newFloatPool(2, 1<<20)}
	if err := r.unmarshal(cut(wire), true); err != nil {
		t.Fatal(err)
	}
	clear(wire)
	if got := fmt.Sprint(r.raw[0]); got != "[1 2]" {
		t.Errorf("values after the frames were reused = %s, want [1 2]", got)
	}
	if p := uintptr(unsafe.Pointer(unsafe.SliceData(r.raw[0]))); p%unsafe.Alignof(float32(0)) != 0 {
		t.Errorf("buffer at %#x is not aligned for float32", p)
	}
}

// A response of many tiny raw_output_contents entries is refused, not
// given a buffer each; as many as the bound are read.
func TestTooManyOutputs(t *testing.T) {
	entries := func(k int) []byte {
		var wire []byte
		for range k {
			wire = protowire.AppendTag(wire, fieldRawOutputContents, protowire.BytesType)
			wire = protowire.AppendBytes(wire, []byte{0, 0, 128, 63}) // 1.0
		}
		return wire
	}
	pool := newFloatPool(4, 1<<20)
	r := &inferResponse{pool: pool}
	defer r.release()
	if err := r.unmarshal(cut(entries(maxRawOutputs)), true); err != nil || len(r.raw) != maxRawOutputs {
		t.Errorf("unmarshal of %d entries = %v with %d decoded", maxRawOutputs, err, len(r.raw))
	}
	if err := r.unmarshal(cut(entries(maxRawOutputs+1)), true); !errors.Is(err, errTooManyOutputs) {
		t.Errorf("unmarshal of %d entries = %v, want errTooManyOutputs", maxRawOutputs+1, err)
	}
}
