package tritontest_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/backend/triton/tritontest"
	"github.com/embedgate/embedgate/tritonstubs"
)

// fakeModel answers every batch with value = input id, per hidden unit.
type fakeModel struct{}

func (fakeModel) Spec() gateway.ModelSpec {
	return gateway.ModelSpec{HasTokenTypeIDs: true, Output: gateway.Hidden, Hidden: 2}
}

func (fakeModel) Embed(_ context.Context, b *gateway.Batch) (*gateway.Output, error) {
	out := &gateway.Output{Kind: gateway.Hidden, Rows: b.Rows, Len: b.Len, Hidden: 2, Data: make([]float32, 2*len(b.InputIDs))}
	for i, id := range b.InputIDs {
		out.Data[2*i], out.Data[2*i+1] = float32(id), float32(b.AttentionMask[i])
	}
	return out, nil
}

func (fakeModel) Health(context.Context) error { return nil }

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func ints(size int, v ...int64) []byte {
	b := make([]byte, size*len(v))
	for i, x := range v {
		if size == 4 {
			binary.LittleEndian.PutUint32(b[4*i:], uint32(x))
		} else {
			binary.LittleEndian.PutUint64(b[8*i:], uint64(x))
		}
	}
	return b
}

// goodRequest is a valid [1,2] INT64 request with id "r1".
func goodRequest() *tritonstubs.ModelInferRequest {
	req := &tritonstubs.ModelInferRequest{ModelName: "embed", Id: "r1"}
	for _, name := range []string{"input_ids", "attention_mask", "token_type_ids"} {
		req.Inputs = append(req.Inputs, &tritonstubs.ModelInferRequest_InferInputTensor{Name: name, Datatype: "INT64", Shape: []int64{1, 2}})
		req.RawInputContents = append(req.RawInputContents, ints(8, 7, 1))
	}
	return req
}

func TestModelInfer(t *testing.T) {
	srv := tritontest.Start(t, fakeModel{}, tritontest.WithMaxBatchSize(4))
	c := tritonstubs.NewGRPCInferenceServiceClient(dial(t, srv.Addr()))
	for _, tt := range []struct {
		name    string
		mod     func(*tritonstubs.ModelInferRequest)
		code    codes.Code
		message string
	}{
		{"OK", func(*tritonstubs.ModelInferRequest) {}, codes.OK, ""},
		{"UnknownModel", func(r *tritonstubs.ModelInferRequest) { r.ModelName = "x" }, codes.NotFound, "Request for unknown model: 'x' is not found"},
		{"UnknownVersion", func(r *tritonstubs.ModelInferRequest) { r.ModelVersion = "3" }, codes.NotFound, "version 3 is not found"},
		{"ContentsAndRaw", func(r *tritonstubs.ModelInferRequest) {
			r.Inputs[1].Contents = &tritonstubs.InferTensorContents{Int64Contents: []int64{1, 1}}
		}, codes.InvalidArgument, "[request id: r1] contents field must not be specified when using raw_input_contents for 'attention_mask' for model 'embed'"},
		{"WrongDType", func(r *tritonstubs.ModelInferRequest) { r.Inputs[0].Datatype = "INT32" }, codes.InvalidArgument,
			"[request id: r1] inference input 'input_ids' data-type is 'INT32', but model 'embed' expects 'INT64'"},
		{"MissingInput", func(r *tritonstubs.ModelInferRequest) {
			r.Inputs, r.RawInputContents = r.Inputs[:2], r.RawInputContents[:2]
		}, codes.InvalidArgument, "expected 3 inputs but got 2 inputs for model 'embed'"},
		{"UnknownInput", func(r *tritonstubs.ModelInferRequest) { r.Inputs[2].Name = "position_ids" }, codes.InvalidArgument,
			"unexpected inference input 'position_ids' for model 'embed'"},
		{"Rank", func(r *tritonstubs.ModelInferRequest) { r.Inputs[0].Shape = []int64{2} }, codes.InvalidArgument,
			"unexpected shape for input 'input_ids' for model 'embed'. Expected [-1,-1], got [2]"},
		{"MinusOne", func(r *tritonstubs.ModelInferRequest) { r.Inputs[0].Shape = []int64{-1, 2} }, codes.InvalidArgument,
			"All input dimensions should be specified for input 'input_ids'"},
		{"BatchMismatch", func(r *tritonstubs.ModelInferRequest) { r.Inputs[1].Shape = []int64{2, 1} }, codes.InvalidArgument,
			"input 'attention_mask' batch size does not match other inputs for 'embed'"},
		{"BatchTooLarge", func(r *tritonstubs.ModelInferRequest) {
			for i := range r.Inputs {
				r.Inputs[i].Shape = []int64{5, 1}
				r.RawInputContents[i] = ints(8, 1, 1, 1, 1, 1)
			}
		}, codes.InvalidArgument, "inference request batch-size must be <= 4 for 'embed'"},
		{"ByteSize", func(r *tritonstubs.ModelInferRequest) { r.RawInputContents[2] = ints(4, 0, 0) }, codes.InvalidArgument,
			"[request id: r1] input byte size mismatch for input 'token_type_ids' for model 'embed'. Expected 16, got 8"},
		{"TooFewRaw", func(r *tritonstubs.ModelInferRequest) { r.RawInputContents = r.RawInputContents[:2] }, codes.InvalidArgument,
			"unable to find data for input tensor 'token_type_ids' for model 'embed' in request."},
		{"UnknownOutput", func(r *tritonstubs.ModelInferRequest) {
			r.Outputs = []*tritonstubs.ModelInferRequest_InferRequestedOutputTensor{{Name: "logits"}}
		}, codes.InvalidArgument, "unexpected inference output 'logits' for model 'embed'"},
		{"NoID", func(r *tritonstubs.ModelInferRequest) { r.Id = ""; r.Inputs[0].Datatype = "FP32" }, codes.InvalidArgument, "[request id: <id_unknown>] "},
		{"Timeout", func(r *tritonstubs.ModelInferRequest) {
			r.Parameters = map[string]*tritonstubs.InferParameter{"timeout": {ParameterChoice: &tritonstubs.InferParameter_Int64Param{Int64Param: 1500}}}
		}, codes.OK, ""},
		{"TimeoutNotInt64", func(r *tritonstubs.ModelInferRequest) {
			r.Parameters = map[string]*tritonstubs.InferParameter{"timeout": {ParameterChoice: &tritonstubs.InferParameter_Uint64Param{Uint64Param: 1500}}}
		}, codes.InvalidArgument, "invalid value type for 'timeout' parameter, expected int64_param."},
		{"ContentsOnly", func(r *tritonstubs.ModelInferRequest) {
			for _, in := range r.Inputs {
				in.Contents = &tritonstubs.InferTensorContents{Int64Contents: []int64{7, 1}}
			}
			r.RawInputContents = nil
		}, codes.OK, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := goodRequest()
			tt.mod(req)
			resp, err := c.ModelInfer(context.Background(), req)
			st := status.Convert(err)
			if st.Code() != tt.code || !strings.Contains(st.Message(), tt.message) {
				t.Fatalf("ModelInfer() = %v %q, want %v containing %q", st.Code(), st.Message(), tt.code, tt.message)
			}
			if tt.code != codes.OK {
				return
			}
			wantTimeout := req.GetParameters()["timeout"] != nil
			if d, ok := srv.LastTimeout(); ok != wantTimeout || ok && d != 1500*time.Microsecond {
				t.Errorf("LastTimeout() = %v, %v; want 1.5ms, %v", d, ok, wantTimeout)
			}
			if resp.GetId() != req.GetId() || len(resp.GetOutputs()) != 1 || len(resp.GetRawOutputContents()) != 1 {
				t.Fatalf("ModelInfer() = %v, want id %q and one output", resp, req.GetId())
			}
			o := resp.GetOutputs()[0]
			if o.GetName() != "last_hidden_state" || o.GetDatatype() != "FP32" || len(o.GetShape()) != 3 || o.GetShape()[2] != 2 {
				t.Errorf("output = %v, want last_hidden_state FP32 [1 2 2]", o)
			}
			if raw := resp.GetRawOutputContents()[0]; len(raw) != 16 || binary.LittleEndian.Uint32(raw) != 0x40e00000 { // 7.0
				t.Errorf("raw output = %v, want 4 little-endian FP32 starting with 7", raw)
			}
		})
	}
}

func TestMetadataAndConfig(t *testing.T) {
	for _, tt := range []struct {
		name      string
		opts      []tritontest.Option
		dtype     string
		inputDims []int64
		batching  bool
	}{
		{"Batching", nil, "INT64", []int64{-1}, true},
		{"NoBatching", []tritontest.Option{tritontest.WithMaxBatchSize(0)}, "INT64", []int64{-1, -1}, false},
		{"Int32", []tritontest.Option{tritontest.WithInt32Inputs()}, "INT32", []int64{-1}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := tritontest.Start(t, fakeModel{}, tt.opts...)
			c := tritonstubs.NewGRPCInferenceServiceClient(dial(t, srv.Addr()))
			meta, err := c.ModelMetadata(context.Background(), &tritonstubs.ModelMetadataRequest{Name: "embed"})
			if err != nil {
				t.Fatal(err)
			}
			if meta.GetPlatform() != "onnxruntime_onnx" || len(meta.GetInputs()) != 3 {
				t.Fatalf("ModelMetadata() = %v, want onnxruntime_onnx with 3 inputs", meta)
			}
			for _, in := range meta.GetInputs() {
				if in.GetDatatype() != tt.dtype || len(in.GetShape()) != 2 || in.GetShape()[0] != -1 || in.GetShape()[1] != -1 {
					t.Errorf("input %v, want %s [-1 -1]", in, tt.dtype)
				}
			}
			if o := meta.GetOutputs(); len(o) != 1 || o[0].GetName() != "last_hidden_state" || len(o[0].GetShape()) != 3 || o[0].GetShape()[2] != 2 {
				t.Errorf("outputs = %v, want last_hidden_state [-1 -1 2]", o)
			}
			resp, err := c.ModelConfig(context.Background(), &tritonstubs.ModelConfigRequest{Name: "embed"})
			if err != nil {
				t.Fatal(err)
			}
			cfg := resp.GetConfig()
			if got := cfg.GetInput()[0].GetDims(); len(got) != len(tt.inputDims) {
				t.Errorf("config input dims = %v, want %v", got, tt.inputDims)
			}
			if (cfg.GetDynamicBatching() != nil) != tt.batching || (cfg.GetMaxBatchSize() > 0) != tt.batching {
				t.Errorf("config max_batch_size %d, dynamic_batching %v; want batching %v", cfg.GetMaxBatchSize(), cfg.GetDynamicBatching(), tt.batching)
			}
		})
	}
}

func TestFaultsAndHealth(t *testing.T) {
	srv := tritontest.Start(t, fakeModel{})
	cc := dial(t, srv.Addr())
	c := tritonstubs.NewGRPCInferenceServiceClient(cc)
	h := healthpb.NewHealthClient(cc)
	for _, tt := range []struct {
		fault   tritontest.Fault
		serving bool
		code    codes.Code
		message string
		exact   bool // the message is all of it
	}{
		{tritontest.NoFault, true, codes.OK, "", false},
		{tritontest.NotReady, false, codes.NotFound, "has no available versions", false},
		{tritontest.QueueFull, true, codes.Unavailable, "[request id: r1] Exceeds maximum queue size", true},
		// Triton's dynamic batcher sends it without the request id.
		{tritontest.QueueTimeout, true, codes.Unavailable, "Request timeout expired", true},
		{tritontest.InvalidArgument, true, codes.InvalidArgument, "[request id: r1] ", false},
		{tritontest.InternalError, true, codes.Internal, "[request id: r1] ", false},
	} {
		t.Run(tt.fault.String(), func(t *testing.T) {
			srv.SetFault(tt.fault)
			defer srv.SetFault(tritontest.NoFault)
			hr, err := h.Check(context.Background(), &healthpb.HealthCheckRequest{})
			if err != nil || (hr.GetStatus() == healthpb.HealthCheckResponse_SERVING) != tt.serving {
				t.Errorf("health Check() = %v, %v; want serving %v", hr, err, tt.serving)
			}
			mr, err := c.ModelReady(context.Background(), &tritonstubs.ModelReadyRequest{Name: "embed"})
			if err != nil || mr.GetReady() != tt.serving {
				t.Errorf("ModelReady() = %v, %v; want ready %v", mr, err, tt.serving)
			}
			_, err = c.ModelInfer(context.Background(), goodRequest())
			if st := status.Convert(err); st.Code() != tt.code || !strings.Contains(st.Message(), tt.message) ||
				tt.exact && st.Message() != tt.message {
				t.Errorf("ModelInfer() = %v %q, want %v containing %q (exactly: %v)", st.Code(), st.Message(), tt.code, tt.message, tt.exact)
			}
		})
	}
	t.Run("Delay", func(t *testing.T) {
		srv.SetDelay(time.Second)
		defer srv.SetDelay(0)
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if _, err := c.ModelInfer(ctx, goodRequest()); status.Code(err) != codes.DeadlineExceeded {
			t.Errorf("ModelInfer() past deadline = %v, want DeadlineExceeded", err)
		}
	})
}

func TestStopRestart(t *testing.T) {
	srv := tritontest.Start(t, fakeModel{})
	if err := srv.Restart(); err == nil {
		t.Error("Restart() while serving = nil, want an error")
	}
	srv.Stop()
	if conn, err := net.DialTimeout("tcp", srv.Addr(), time.Second); err == nil {
		conn.Close()
		t.Fatal("dial after Stop succeeded, want connection refused")
	}
	if err := srv.Restart(); err != nil {
		t.Fatalf("Restart() = %v", err)
	}
	c := tritonstubs.NewGRPCInferenceServiceClient(dial(t, srv.Addr()))
	if _, err := c.ModelInfer(context.Background(), goodRequest()); err != nil {
		t.Fatalf("ModelInfer after Restart: %v", err)
	}
	if n := srv.InferCount(); n != 1 {
		t.Errorf("InferCount() = %d, want 1", n)
	}
}

// TestServe runs the non-test form: New, Serve on the caller's listener,
// Close.
func TestServe(t *testing.T) {
	srv, err := tritontest.New(fakeModel{}, tritontest.WithName("bge"))
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	c := tritonstubs.NewGRPCInferenceServiceClient(dial(t, lis.Addr().String()))
	if r, err := c.ServerReady(context.Background(), &tritonstubs.ServerReadyRequest{}); err != nil || !r.GetReady() {
		t.Fatalf("ServerReady() = %v, %v", r, err)
	}
	if _, err := c.ModelReady(context.Background(), &tritonstubs.ModelReadyRequest{Name: "bge"}); err != nil {
		t.Fatalf("ModelReady(bge) = %v", err)
	}
	srv.Close()
	if err := <-errc; err != nil {
		t.Errorf("Serve() = %v, want nil after Close", err)
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := tritontest.New(fakeModel{}, tritontest.WithMaxBatchSize(-1)); err == nil {
		t.Error("New(max batch -1) = nil error, want one")
	}
	if _, err := tritontest.New(fakeModel{}, tritontest.WithOutputDType("FP64")); err == nil {
		t.Error("New(output FP64) = nil error, want one")
	}
}

// TestOutputDType: a half-precision output is declared in metadata and
// config and sent as 2-byte little-endian values, rounded to nearest.
func TestOutputDType(t *testing.T) {
	for _, tt := range []struct {
		dtype string
		cfg   tritonstubs.DataType
		raw   []byte // fakeModel's [7 7 1 1] for ids and mask [7 1]
	}{
		{"FP16", tritonstubs.DataType_TYPE_FP16, []byte{0x00, 0x47, 0x00, 0x47, 0x00, 0x3c, 0x00, 0x3c}},
		{"BF16", tritonstubs.DataType_TYPE_BF16, []byte{0xe0, 0x40, 0xe0, 0x40, 0x80, 0x3f, 0x80, 0x3f}},
	} {
		t.Run(tt.dtype, func(t *testing.T) {
			srv := tritontest.Start(t, fakeModel{}, tritontest.WithOutputDType(tt.dtype))
			c := tritonstubs.NewGRPCInferenceServiceClient(dial(t, srv.Addr()))
			meta, err := c.ModelMetadata(context.Background(), &tritonstubs.ModelMetadataRequest{Name: "embed"})
			if err != nil || meta.GetOutputs()[0].GetDatatype() != tt.dtype {
				t.Errorf("ModelMetadata() = %v, %v; want output %s", meta, err, tt.dtype)
			}
			resp, err := c.ModelConfig(context.Background(), &tritonstubs.ModelConfigRequest{Name: "embed"})
			if err != nil || resp.GetConfig().GetOutput()[0].GetDataType() != tt.cfg {
				t.Errorf("ModelConfig() = %v, %v; want output %v", resp, err, tt.cfg)
			}
			out, err := c.ModelInfer(context.Background(), goodRequest())
			if err != nil {
				t.Fatal(err)
			}
			if o := out.GetOutputs()[0]; o.GetDatatype() != tt.dtype || !bytes.Equal(out.GetRawOutputContents()[0], tt.raw) {
				t.Errorf("ModelInfer() = %s % x, want %s % x", o.GetDatatype(), out.GetRawOutputContents()[0], tt.dtype, tt.raw)
			}
		})
	}
}

// decoder is fakeModel taking position_ids, as a Qwen3 export does.
type decoder struct{ fakeModel }

func (decoder) Spec() gateway.ModelSpec {
	return gateway.ModelSpec{HasPositionIDs: true, Output: gateway.Hidden, Hidden: 2}
}

// TestPositionIDs: a model whose spec takes position_ids declares the
// input, requires it as Triton requires every declared input, and accepts
// only 0..L-1 on every row, the positions its Model uses.
func TestPositionIDs(t *testing.T) {
	srv := tritontest.Start(t, decoder{})
	c := tritonstubs.NewGRPCInferenceServiceClient(dial(t, srv.Addr()))
	meta, err := c.ModelMetadata(context.Background(), &tritonstubs.ModelMetadataRequest{Name: "embed"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, in := range meta.GetInputs() {
		names = append(names, in.GetName())
	}
	if got := strings.Join(names, ","); got != "input_ids,attention_mask,position_ids" {
		t.Errorf("metadata inputs = %s, want input_ids,attention_mask,position_ids", got)
	}
	request := func(pos ...int64) *tritonstubs.ModelInferRequest {
		req := &tritonstubs.ModelInferRequest{ModelName: "embed", Id: "r1"}
		for _, name := range []string{"input_ids", "attention_mask", "position_ids"}[:2+min(len(pos), 1)] {
			req.Inputs = append(req.Inputs, &tritonstubs.ModelInferRequest_InferInputTensor{Name: name, Datatype: "INT64", Shape: []int64{2, 2}})
			vals := []int64{7, 1, 8, 1}
			if name == "position_ids" {
				vals = pos
			}
			req.RawInputContents = append(req.RawInputContents, ints(8, vals...))
		}
		return req
	}
	for _, tt := range []struct {
		name    string
		req     *tritonstubs.ModelInferRequest
		code    codes.Code
		message string
	}{
		{"Given", request(0, 1, 0, 1), codes.OK, ""},
		{"Missing", request(), codes.InvalidArgument, "expected 3 inputs but got 2 inputs for model 'embed'. Got input(s) [input_ids,attention_mask], but missing required input(s) [position_ids]"},
		{"Zeros", request(0, 0, 0, 0), codes.InvalidArgument, "[request id: r1] tritontest: input 'position_ids' is 0 at row 0, position 1"},
		{"Continued", request(0, 1, 2, 3), codes.InvalidArgument, "is 2 at row 1, position 0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.ModelInfer(context.Background(), tt.req)
			if st := status.Convert(err); st.Code() != tt.code || !strings.Contains(st.Message(), tt.message) {
				t.Errorf("ModelInfer() = %v %q, want %v containing %q", st.Code(), st.Message(), tt.code, tt.message)
			}
		})
	}
}
