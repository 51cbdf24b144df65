package triton

import (
	"encoding/binary"
	"math"
	"testing"

	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/tritonstubs"
)

// BenchmarkEncodeDecode measures the client's own work per batch, without
// the network: building the ModelInferRequest for a 32×128 batch and
// decoding a last_hidden_state response of 32×128×384 FP32 (6 MiB) from
// 16 KiB buffers, as gRPC receives HTTP/2 frames, then freeing the output
// as the engine does. "Build+Decode" is this package's code alone (request,
// inferCodec's Unmarshal, decode); "WithProto" adds the protobuf
// marshalling of the request that gRPC does on the same goroutine.
func BenchmarkEncodeDecode(b *testing.B) {
	const rows, size, hidden = 32, 128, 384
	p := plan{spec: gateway.ModelSpec{Output: gateway.Hidden, Hidden: hidden, MaxBatch: 64}, output: gateway.TensorLastHiddenState,
		inputs: []input{{gateway.TensorInputIDs, false}, {gateway.TensorAttentionMask, false}, {gateway.TensorTokenTypeIDs, false}}}
	n := rows * size
	batch := &gateway.Batch{ID: "bench", Rows: rows, Len: size, InputIDs: make([]int64, n), AttentionMask: make([]int64, n), TokenTypeIDs: make([]int64, n)}
	for i := range n {
		batch.InputIDs[i], batch.AttentionMask[i] = int64(1000+i%20000), 1
	}
	raw := make([]byte, 4*n*hidden)
	for i := range n * hidden {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(float32(i%997)/997))
	}
	resp := &tritonstubs.ModelInferResponse{ModelName: "m", ModelVersion: "1", Id: "bench",
		Outputs:           []*tritonstubs.ModelInferResponse_InferOutputTensor{{Name: gateway.TensorLastHiddenState, Datatype: "FP32", Shape: []int64{rows, size, hidden}}},
		RawOutputContents: [][]byte{raw}}
	wire, err := proto.Marshal(resp)
	if err != nil {
		b.Fatal(err)
	}
	frames := splitEvery(wire, 16<<10)
	codec := &inferCodec{proto: encoding.GetCodecV2(protoenc.Name)}
	pool := newFloatPool(defaultMaxInflight+2, defaultMaxInflightBytes)
	// One call before timing fills the pool, as the first batches do in
	// the gateway: B/op is then the steady state.
	warm := &inferResponse{pool: pool}
	if err := codec.Unmarshal(frames, warm); err != nil {
		b.Fatal(err)
	}
	warm.release()
	run := func(b *testing.B, withProto bool) {
		b.SetBytes(int64(len(wire)))
		b.ReportAllocs()
		for b.Loop() {
			req, err := p.request("m", "", batch)
			if err != nil {
				b.Fatal(err)
			}
			if withProto {
				data, err := codec.Marshal(req)
				if err != nil {
					b.Fatal(err)
				}
				data.Free()
			}
			r := &inferResponse{pool: pool}
			if err := codec.Unmarshal(frames, r); err != nil {
				b.Fatal(err)
			}
			out, err := p.decode(batch, r)
			if err != nil || len(out.Data) != n*hidden {
				b.Fatalf("decode: %v", err)
			}
			r.release()
			out.Free()
		}
	}
	b.Run("Build+Decode", func(b *testing.B) { run(b, false) })
	b.Run("WithProto", func(b *testing.B) { run(b, true) })
}

// splitEvery cuts wire into buffers of size bytes (the last may be
// shorter); they view wire, so freeing them does nothing.
func splitEvery(wire []byte, size int) mem.BufferSlice {
	var s mem.BufferSlice
	for len(wire) > size {
		s = append(s, mem.SliceBuffer(wire[:size]))
		wire = wire[size:]
	}
	return append(s, mem.SliceBuffer(wire))
}
