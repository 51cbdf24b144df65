package tritontest

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/tritonstubs"
)

// service answers the RPCs; everything it knows lives in s.
type service struct {
	tritonstubs.UnimplementedGRPCInferenceServiceServer
	s *Server
}

func (v *service) fault() Fault { return Fault(v.s.fault.Load()) }

func (v *service) ServerLive(context.Context, *tritonstubs.ServerLiveRequest) (*tritonstubs.ServerLiveResponse, error) {
	return &tritonstubs.ServerLiveResponse{Live: true}, nil
}

func (v *service) ServerReady(context.Context, *tritonstubs.ServerReadyRequest) (*tritonstubs.ServerReadyResponse, error) {
	return &tritonstubs.ServerReadyResponse{Ready: v.fault() != NotReady}, nil
}

// ModelReady fails, as Triton's does, for a model not loaded (see
// Server.lookup): its gRPC frontend sends ready=false only with an error
// status, which clients see as the error alone.
func (v *service) ModelReady(ctx context.Context, req *tritonstubs.ModelReadyRequest) (*tritonstubs.ModelReadyResponse, error) {
	e, err := v.s.lookup(req.GetName(), req.GetVersion())
	if err != nil {
		return nil, err
	}
	return &tritonstubs.ModelReadyResponse{Ready: v.fault() != NotReady && e.model.Health(ctx) == nil}, nil
}

func (v *service) ServerMetadata(context.Context, *tritonstubs.ServerMetadataRequest) (*tritonstubs.ServerMetadataResponse, error) {
	return &tritonstubs.ServerMetadataResponse{Name: "triton", Version: "2.59.0",
		Extensions: []string{"classification", "sequence", "model_repository", "schedule_policy", "model_configuration", "statistics"}}, nil
}

// inputNames are the model's inputs in the order Triton lists them:
// position_ids last, as optimum exports a decoder's.
func (e *entry) inputNames() []string {
	names := []string{gateway.TensorInputIDs, gateway.TensorAttentionMask}
	if e.spec.HasTokenTypeIDs {
		names = append(names, gateway.TensorTokenTypeIDs)
	}
	if e.spec.HasPositionIDs {
		names = append(names, gateway.TensorPositionIDs)
	}
	return names
}

// output is the model's one output as an export names it: a cross-encoder
// answers logits [B, num_labels] (Hidden is num_labels).
func (e *entry) output() (name string, dims []int64) {
	switch e.spec.Output {
	case gateway.Pooled:
		return gateway.TensorSentenceEmbedding, []int64{int64(e.spec.Hidden)}
	case gateway.Logits:
		return gateway.TensorLogits, []int64{int64(e.spec.Hidden)}
	}
	return gateway.TensorLastHiddenState, []int64{-1, int64(e.spec.Hidden)}
}

func (v *service) inputDType() (wire string, cfg tritonstubs.DataType) {
	if v.s.int32s.Load() {
		return "INT32", tritonstubs.DataType_TYPE_INT32
	}
	return "INT64", tritonstubs.DataType_TYPE_INT64
}

// fullShape is what metadata reports: the batch dim (-1) is included both
// with Triton batching (prepended) and without (part of dims).
func fullShape(dims ...int64) []int64 { return append([]int64{-1}, dims...) }

func (v *service) ModelMetadata(_ context.Context, req *tritonstubs.ModelMetadataRequest) (*tritonstubs.ModelMetadataResponse, error) {
	e, err := v.s.lookup(req.GetName(), req.GetVersion())
	if err != nil {
		return nil, err
	}
	dt, _ := v.inputDType()
	resp := &tritonstubs.ModelMetadataResponse{Name: e.name, Versions: []string{"1"}, Platform: "onnxruntime_onnx"}
	for _, name := range e.inputNames() {
		resp.Inputs = append(resp.Inputs, &tritonstubs.ModelMetadataResponse_TensorMetadata{Name: name, Datatype: dt, Shape: fullShape(-1)})
	}
	out, dims := e.output()
	resp.Outputs = []*tritonstubs.ModelMetadataResponse_TensorMetadata{{Name: out, Datatype: v.s.out.wire, Shape: fullShape(dims...)}}
	return resp, nil
}

func (v *service) ModelConfig(_ context.Context, req *tritonstubs.ModelConfigRequest) (*tritonstubs.ModelConfigResponse, error) {
	e, err := v.s.lookup(req.GetName(), req.GetVersion())
	if err != nil {
		return nil, err
	}
	mbs := e.maxBatchSize
	// With max_batch_size > 0 dims exclude the batch dim; with 0 they are
	// the full shape.
	shape := func(dims ...int64) []int64 {
		if mbs == 0 {
			return fullShape(dims...)
		}
		return dims
	}
	_, dt := v.inputDType()
	cfg := &tritonstubs.ModelConfig{Name: e.name, Platform: "onnxruntime_onnx", Backend: "onnxruntime",
		MaxBatchSize: int32(mbs), DefaultModelFilename: "model.onnx",
		InstanceGroup: []*tritonstubs.ModelInstanceGroup{{Name: e.name + "_0", Kind: tritonstubs.ModelInstanceGroup_KIND_CPU, Count: 1}},
	}
	for k, val := range e.params {
		if cfg.Parameters == nil {
			cfg.Parameters = map[string]*tritonstubs.ModelParameter{}
		}
		cfg.Parameters[k] = &tritonstubs.ModelParameter{StringValue: val}
	}
	for _, name := range e.inputNames() {
		cfg.Input = append(cfg.Input, &tritonstubs.ModelInput{Name: name, DataType: dt, Dims: shape(-1)})
	}
	out, dims := e.output()
	cfg.Output = []*tritonstubs.ModelOutput{{Name: out, DataType: v.s.out.cfg, Dims: shape(dims...)}}
	if mbs > 0 {
		// The normalized config: preferred_batch_size defaults to [max_batch_size].
		cfg.SchedulingChoice = &tritonstubs.ModelConfig_DynamicBatching{DynamicBatching: &tritonstubs.ModelDynamicBatching{
			PreferredBatchSize: []int32{int32(mbs)},
			DefaultQueuePolicy: &tritonstubs.ModelQueuePolicy{MaxQueueSize: 64},
		}}
		cfg.ModelWarmup = []*tritonstubs.ModelWarmup{warmup(cfg.Input)}
	}
	return &tritonstubs.ModelConfigResponse{Config: cfg}, nil
}

// warmup is one zero-filled sample of 16 tokens for every input, as the
// shipped configs warm their models up, so that the default config passes
// modelrepo's checks.
func warmup(inputs []*tritonstubs.ModelInput) *tritonstubs.ModelWarmup {
	w := &tritonstubs.ModelWarmup{Name: "zeros", BatchSize: 1, Inputs: map[string]*tritonstubs.ModelWarmup_Input{}}
	for _, in := range inputs {
		w.Inputs[in.GetName()] = &tritonstubs.ModelWarmup_Input{DataType: in.GetDataType(), Dims: []int64{16},
			InputDataType: &tritonstubs.ModelWarmup_Input_ZeroData{ZeroData: true}}
	}
	return w
}

// ModelInfer validates req like Triton's gRPC frontend and core, plays the
// current fault, then runs the model.
func (v *service) ModelInfer(ctx context.Context, req *tritonstubs.ModelInferRequest) (*tritonstubs.ModelInferResponse, error) {
	v.s.record(ctx, req)
	name := req.GetModelName()
	e, err := v.s.lookup(name, req.GetModelVersion())
	if err != nil {
		return nil, err
	}
	id := req.GetId()
	if id == "" {
		id = "<id_unknown>"
	}
	fail := func(c codes.Code, format string, args ...any) error {
		return status.Errorf(c, "[request id: %s] %s", id, fmt.Sprintf(format, args...))
	}
	if v.fault() == NotReady {
		return nil, status.Errorf(codes.NotFound, "Request for unknown model: '%s' has no available versions", name)
	}
	if err := checkParameters(req); err != nil {
		return nil, err
	}
	batch, err := v.decode(e, req, fail)
	if err != nil {
		return nil, err
	}
	outName, err := e.requested(req, fail)
	if err != nil {
		return nil, err
	}
	switch v.fault() {
	case QueueFull:
		return nil, fail(codes.Unavailable, "Exceeds maximum queue size")
	case QueueTimeout:
		return nil, status.Error(codes.Unavailable, "Request timeout expired")
	case InvalidArgument:
		return nil, fail(codes.InvalidArgument, "inference input '%s' data-type is 'FP16', but model '%s' expects 'INT64'", gateway.TensorInputIDs, name)
	case InternalError:
		return nil, fail(codes.Internal, "onnx runtime error 6: Non-zero status code returned while running Gather node")
	}
	if d := time.Duration(v.s.delay.Load()); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	if err := v.s.occupyGPU(ctx, batch.Rows, batch.Len); err != nil {
		return nil, status.FromContextError(err).Err()
	}
	out, err := e.model.Embed(ctx, batch)
	if err != nil {
		if ctx.Err() != nil {
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		return nil, fail(codes.Internal, "%v", err)
	}
	return v.respond(req, outName, out), nil
}

// TimeoutParameter is the request parameter Triton reads as the request's
// queue timeout, in microseconds.
const TimeoutParameter = "timeout"

// checkParameters refuses a timeout parameter of any type but int64, with
// the message of Triton's gRPC frontend, which has no request id (server
// r25.06, src/grpc/infer_handler.cc, SetInferenceRequestMetadata).
func checkParameters(req *tritonstubs.ModelInferRequest) error {
	p, ok := req.GetParameters()[TimeoutParameter]
	if !ok {
		return nil
	}
	if _, ok := p.GetParameterChoice().(*tritonstubs.InferParameter_Int64Param); !ok {
		return status.Error(codes.InvalidArgument, "invalid value type for 'timeout' parameter, expected int64_param.")
	}
	return nil
}

// decode checks inputs as Triton does and returns them as a batch.
func (v *service) decode(e *entry, req *tritonstubs.ModelInferRequest, fail func(codes.Code, string, ...any) error) (*gateway.Batch, error) {
	dt, _ := v.inputDType()
	r := &inputReader{model: req.GetModelName(), dtype: dt, raw: req.GetRawInputContents(), fail: fail}
	if err := r.checkNames(req.GetInputs(), e.inputNames()); err != nil {
		return nil, err
	}
	batch := &gateway.Batch{ID: req.GetId()}
	for i, in := range req.GetInputs() {
		if err := r.checkShape(in, i == 0, batch, e.maxBatchSize); err != nil {
			return nil, err
		}
		vals, err := r.values(in, batch.Rows*batch.Len)
		if err != nil {
			return nil, err
		}
		switch in.GetName() {
		case gateway.TensorInputIDs:
			batch.InputIDs = vals
		case gateway.TensorAttentionMask:
			batch.AttentionMask = vals
		case gateway.TensorTokenTypeIDs:
			batch.TokenTypeIDs = vals
		case gateway.TensorPositionIDs:
			if err := checkPositions(vals, batch, fail); err != nil {
				return nil, err
			}
		}
	}
	if r.next != len(r.raw) {
		return nil, fail(codes.InvalidArgument, "raw_input_contents has %d entries but %d were used for model '%s'", len(r.raw), r.next, r.model)
	}
	if batch.Rows == 0 || batch.Len == 0 {
		return nil, fail(codes.InvalidArgument, "empty input shape [%d,%d] for model '%s'", batch.Rows, batch.Len, r.model)
	}
	return batch, nil
}

// checkPositions wants position_ids 0..Len-1 on every row. Triton would
// pass any values to the model; the stand-in's Model fills the positions
// itself (a gateway.Batch has none), so it refuses what the model would
// not see, rather than answer as if it had used them.
func checkPositions(vals []int64, batch *gateway.Batch, fail func(codes.Code, string, ...any) error) error {
	for i, v := range vals {
		if v != int64(i%batch.Len) {
			return fail(codes.InvalidArgument, "tritontest: input '%s' is %d at row %d, position %d; the stand-in's model takes 0..%d on every row",
				gateway.TensorPositionIDs, v, i/batch.Len, i%batch.Len, batch.Len-1)
		}
	}
	return nil
}

// inputReader reads the input tensors of one ModelInfer request, with
// Triton's checks and messages.
type inputReader struct {
	model string
	dtype string // the inputs' datatype: INT64 or INT32
	raw   [][]byte
	next  int // the raw_input_contents entry the next raw input reads
	fail  func(codes.Code, string, ...any) error
}

// checkNames wants exactly the inputs in want, and data in either contents
// or raw_input_contents, not both.
func (r *inputReader) checkNames(inputs []*tritonstubs.ModelInferRequest_InferInputTensor, want []string) error {
	var got []string
	for _, in := range inputs {
		if len(r.raw) > 0 && in.GetContents() != nil {
			return r.fail(codes.InvalidArgument, "contents field must not be specified when using raw_input_contents for '%s' for model '%s'", in.GetName(), r.model)
		}
		if !slices.Contains(want, in.GetName()) {
			return r.fail(codes.InvalidArgument, "unexpected inference input '%s' for model '%s'", in.GetName(), r.model)
		}
		got = append(got, in.GetName())
	}
	if len(got) == len(want) {
		return nil
	}
	var missing []string
	for _, w := range want {
		if !slices.Contains(got, w) {
			missing = append(missing, w)
		}
	}
	return r.fail(codes.InvalidArgument, "expected %d inputs but got %d inputs for model '%s'. Got input(s) [%s], but missing required input(s) [%s]. Please provide all required input(s).",
		len(want), len(got), r.model, strings.Join(got, ","), strings.Join(missing, ","))
}

// checkShape wants in's datatype and a concrete [rows, len] shape: the
// first input sets the batch's, the others must match it.
func (r *inputReader) checkShape(in *tritonstubs.ModelInferRequest_InferInputTensor, first bool, batch *gateway.Batch, maxBatchSize int) error {
	if in.GetDatatype() != r.dtype {
		return r.fail(codes.InvalidArgument, "inference input '%s' data-type is '%s', but model '%s' expects '%s'", in.GetName(), in.GetDatatype(), r.model, r.dtype)
	}
	shape := in.GetShape()
	if len(shape) != 2 {
		return r.fail(codes.InvalidArgument, "unexpected shape for input '%s' for model '%s'. Expected [-1,-1], got %s", in.GetName(), r.model, dimsString(shape))
	}
	if shape[0] < 0 || shape[1] < 0 {
		return r.fail(codes.InvalidArgument, "All input dimensions should be specified for input '%s' for model '%s', got %s", in.GetName(), r.model, dimsString(shape))
	}
	if first {
		batch.Rows, batch.Len = int(shape[0]), int(shape[1])
	} else if int(shape[0]) != batch.Rows {
		return r.fail(codes.InvalidArgument, "input '%s' batch size does not match other inputs for '%s'", in.GetName(), r.model)
	} else if int(shape[1]) != batch.Len {
		return r.fail(codes.InvalidArgument, "unexpected shape for input '%s' for model '%s'. Expected [-1,%d], got %s", in.GetName(), r.model, batch.Len, dimsString(shape))
	}
	if maxBatchSize > 0 && batch.Rows > maxBatchSize {
		return r.fail(codes.InvalidArgument, "inference request batch-size must be <= %d for '%s'", maxBatchSize, r.model)
	}
	return nil
}

// values returns in's n values, from its contents or from the next
// raw_input_contents entry.
func (r *inputReader) values(in *tritonstubs.ModelInferRequest_InferInputTensor, n int) ([]int64, error) {
	if c := in.GetContents(); c != nil {
		vals := contentsInts(c, r.dtype)
		if len(vals) != n {
			return nil, r.fail(codes.InvalidArgument, "unexpected number of elements for input '%s' for model '%s'. Expected %d, got %d", in.GetName(), r.model, n, len(vals))
		}
		return vals, nil
	}
	if r.next >= len(r.raw) {
		return nil, r.fail(codes.InvalidArgument, "unable to find data for input tensor '%s' for model '%s' in request.", in.GetName(), r.model)
	}
	b := r.raw[r.next]
	r.next++
	size := 8
	if r.dtype == "INT32" {
		size = 4
	}
	if len(b) != n*size {
		return nil, r.fail(codes.InvalidArgument, "input byte size mismatch for input '%s' for model '%s'. Expected %d, got %d", in.GetName(), r.model, n*size, len(b))
	}
	return rawInts(b, size), nil
}

// requested returns the output to send: the one asked for, or the model's
// only output when none is named (Triton then returns all outputs).
func (e *entry) requested(req *tritonstubs.ModelInferRequest, fail func(codes.Code, string, ...any) error) (string, error) {
	have, _ := e.output()
	for _, o := range req.GetOutputs() {
		if o.GetName() != have {
			return "", fail(codes.InvalidArgument, "unexpected inference output '%s' for model '%s'", o.GetName(), req.GetModelName())
		}
	}
	return have, nil
}

func (v *service) respond(req *tritonstubs.ModelInferRequest, name string, out *gateway.Output) *tritonstubs.ModelInferResponse {
	shape := []int64{int64(out.Rows), int64(out.Hidden)}
	if out.Kind == gateway.Hidden {
		shape = []int64{int64(out.Rows), int64(out.Len), int64(out.Hidden)}
	}
	return &tritonstubs.ModelInferResponse{ModelName: req.GetModelName(), ModelVersion: "1", Id: req.GetId(),
		Outputs:           []*tritonstubs.ModelInferResponse_InferOutputTensor{{Name: name, Datatype: v.s.out.wire, Shape: shape}},
		RawOutputContents: [][]byte{v.s.out.encode(out.Data)}}
}

func rawInts(b []byte, size int) []int64 {
	vals := make([]int64, len(b)/size)
	for i := range vals {
		if size == 4 {
			vals[i] = int64(int32(binary.LittleEndian.Uint32(b[4*i:])))
		} else {
			vals[i] = int64(binary.LittleEndian.Uint64(b[8*i:]))
		}
	}
	return vals
}

func contentsInts(c *tritonstubs.InferTensorContents, dt string) []int64 {
	if dt == "INT32" {
		vals := make([]int64, len(c.GetIntContents()))
		for i, x := range c.GetIntContents() {
			vals[i] = int64(x)
		}
		return vals
	}
	return slices.Clone(c.GetInt64Contents())
}

func dimsString(d []int64) string {
	parts := make([]string, len(d))
	for i, x := range d {
		parts[i] = fmt.Sprint(x)
	}
	return "[" + strings.Join(parts, ",") + "]"
}
