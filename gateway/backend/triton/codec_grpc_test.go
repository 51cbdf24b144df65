package triton

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/tritonstubs"
)

// rawMsg is a message as bytes, for a server that answers whatever wire
// data a test gives it.
type rawMsg struct{ b []byte }

type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }
func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(v.(*rawMsg).b)}, nil
}
func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	v.(*rawMsg).b = data.Materialize()
	return nil
}

// startRaw serves ModelInfer with answer's bytes as the response.
func startRaw(t *testing.T, answer func() []byte) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.ForceServerCodecV2(rawCodec{}))
	gs.RegisterService(&grpc.ServiceDesc{
		ServiceName: "inference.GRPCInferenceService",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{MethodName: "ModelInfer",
			Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				var req rawMsg
				if err := dec(&req); err != nil {
					return nil, err
				}
				return &rawMsg{b: answer()}, nil
			}}},
	}, struct{}{})
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	return lis.Addr().String()
}

// rawBackend is a Backend on addr for a hidden-state model of the given
// size, without Open's readiness checks and model reading.
func rawBackend(t *testing.T, addr string, hidden int) *Backend {
	t.Helper()
	c, err := Dial(context.Background(), ClientOptions{URL: addr, Timeout: 5 * time.Second, MaxInflight: 2, Conns: 1,
		MaxInflightBytes: 1 << 30, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	life, stop := context.WithCancel(context.Background())
	b := &Backend{c: c, model: "m", own: true, life: life, stop: stop,
		plan: plan{spec: gateway.ModelSpec{Output: gateway.Hidden, Hidden: hidden, MaxBatch: 64}, output: gateway.TensorLastHiddenState,
			inputs: []input{{gateway.TensorInputIDs, false}, {gateway.TensorAttentionMask, false}}}}
	t.Cleanup(func() { b.Close() })
	return b
}

// TestEmbedOverGRPC runs Embed against a server answering chosen bytes: a
// response of many HTTP/2 frames decodes right, and one the codec refuses
// is a Backend error that says so.
func TestEmbedOverGRPC(t *testing.T) {
	t.Parallel()
	const rows, size, hidden = 4, 100, 384 // 600 KiB of FP32: tens of frames
	vals := make([]float32, rows*size*hidden)
	for i := range vals {
		vals[i] = float32(i%1009) - 500.5
	}
	good, err := proto.Marshal(&tritonstubs.ModelInferResponse{ModelName: "m", Id: "b",
		Outputs:           []*tritonstubs.ModelInferResponse_InferOutputTensor{{Name: gateway.TensorLastHiddenState, Datatype: "FP32", Shape: []int64{rows, size, hidden}}},
		RawOutputContents: [][]byte{bytesOf(vals)}})
	if err != nil {
		t.Fatal(err)
	}
	batch := &gateway.Batch{ID: "b", Rows: rows, Len: size, InputIDs: make([]int64, rows*size), AttentionMask: make([]int64, rows*size)}
	for _, tt := range []struct {
		name    string
		wire    []byte
		wantMsg string // "" = success
	}{
		{"Good", good, ""},
		{"Truncated", good[:len(good)-3], "triton: unexpected response"},
		{"NotFP32", append(append([]byte{}, good...), 0x32, 0x03, 1, 2, 3), "triton: unexpected response"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := rawBackend(t, startRaw(t, func() []byte { return tt.wire }), hidden)
			out, err := b.Embed(context.Background(), batch)
			if tt.wantMsg != "" {
				var gerr *gateway.Error
				if !errors.As(err, &gerr) || gerr.Kind != gateway.Backend || gerr.Msg != tt.wantMsg {
					t.Fatalf("Embed() error = %v, want a Backend error %q", err, tt.wantMsg)
				}
				if n, _ := b.c.pool.idle(); n > 1 {
					t.Errorf("pool holds %d buffers after one failed call, want at most 1", n)
				}
				return
			}
			if err != nil {
				t.Fatalf("Embed() error = %v", err)
			}
			defer out.Free()
			if len(out.Data) != len(vals) {
				t.Fatalf("Embed() has %d values, want %d", len(out.Data), len(vals))
			}
			for i := range vals {
				if out.Data[i] != vals[i] {
					t.Fatalf("Data[%d] = %v, want %v", i, out.Data[i], vals[i])
				}
			}
		})
	}
}

// TestCodecErrorRecorded checks that the error text gRPC shows carries
// the cause, in case it is logged without Embed's wrapping.
func TestCodecErrorRecorded(t *testing.T) {
	r := &inferResponse{pool: newFloatPool(1, 1<<20)}
	err := newCodec(t).Unmarshal(mem.BufferSlice{mem.SliceBuffer([]byte{0x32, 0x03, 1, 2, 3})}, r)
	if err == nil || !strings.Contains(err.Error(), "FP32") || !errors.Is(r.err, errNotWhole) {
		t.Errorf("Unmarshal() = %v, recorded %v; want the FP32 cause in both", err, r.err)
	}
}
