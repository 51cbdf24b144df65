package triton

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"time"
	"unsafe"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/tritonstubs"
)

// Embed runs one padded batch as one ModelInfer call. It waits for one of
// MaxInflight slots and for the batch's response bytes within
// MaxInflightBytes (honouring ctx), bounds the call by min(ctx deadline,
// Timeout), sends what is left of that as Triton's timeout parameter (so
// Triton drops the batch from its queue once the gateway has given up on
// it), and retries once, on another connection, only a call that never
// reached Triton. A malformed batch is an Internal error (the gateway built
// it); Triton's answers map to kinds in errors.go. The output's Data comes
// from the backend's pool: its Release hands it back.
func (b *Backend) Embed(ctx context.Context, batch *gateway.Batch) (*gateway.Output, error) {
	if err := b.plan.validate(batch); err != nil {
		return nil, err
	}
	if b.isClosed() {
		return nil, errClosed()
	}
	// Close ends the calls of this backend, not the shared connections.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(b.life, cancel)()
	c := b.c
	// Errors before the call reach Triton are ErrNotCalled: a batch that
	// timed out waiting here says nothing about Triton's health.
	if err := ctx.Err(); err != nil {
		return nil, b.fail(ctx, batch.ID, fmt.Errorf("%w: %w", gateway.ErrNotCalled, err))
	}
	select {
	case c.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, b.fail(ctx, batch.ID, fmt.Errorf("%w: %w", gateway.ErrNotCalled, ctx.Err()))
	}
	defer func() { <-c.slots }()
	// A batch larger than the whole budget waits for all of it, then runs
	// alone; asking for more than the budget would wait forever.
	weight := min(b.plan.responseBytes(batch), c.opts.MaxInflightBytes)
	if err := c.budget.Acquire(ctx, weight); err != nil {
		return nil, b.fail(ctx, batch.ID, fmt.Errorf("%w: %w", gateway.ErrNotCalled, err))
	}
	defer c.budget.Release(weight)

	req, err := b.plan.request(b.model, b.version, batch)
	if err != nil {
		return nil, err
	}
	callCtx, cancelCall := context.WithTimeout(c.outgoing(ctx), c.opts.Timeout)
	defer cancelCall()
	resp := &inferResponse{pool: c.pool, wire: b.plan.wire}
	defer resp.release() // what decode did not take, also after an error
	i := c.pick()
	err = c.infer(callCtx, i, req, resp)
	if err != nil && neverSent(err) && callCtx.Err() == nil {
		c.logger.Debug("triton: call did not reach the server; retrying on another connection", "batch_id", batch.ID, "err", err)
		resp.release()
		err = c.infer(callCtx, (i+1)%len(c.conns), req, resp)
	}
	if err != nil {
		if resp.err != nil && !b.isClosed() { // Triton answered, but not a ModelInferResponse we can read
			return nil, &gateway.Error{Kind: gateway.Backend, Msg: "triton: unexpected response",
				Err: fmt.Errorf("batch %s: %w", batch.ID, resp.err)}
		}
		return nil, b.fail(callCtx, batch.ID, err)
	}
	return b.plan.decode(batch, resp)
}

// fail is the error of a call that did not succeed: the closed error once
// the backend is closed (Close ended the call), else classify's.
func (b *Backend) fail(ctx context.Context, batchID string, err error) error {
	if b.isClosed() {
		return errClosed()
	}
	return classify(ctx, b.c.logger, batchID, err)
}

// infer is the generated client's ModelInfer with our own response type and
// codec (see inferCodec). It sets req's timeout parameter to what is left of
// ctx's deadline at the moment of the call.
func (c *Client) infer(ctx context.Context, conn int, req *tritonstubs.ModelInferRequest, resp *inferResponse) error {
	if d, ok := ctx.Deadline(); ok {
		if req.Parameters == nil {
			req.Parameters = map[string]*tritonstubs.InferParameter{}
		}
		req.Parameters[timeoutParameter] = &tritonstubs.InferParameter{
			ParameterChoice: &tritonstubs.InferParameter_Int64Param{Int64Param: timeoutMicros(time.Until(d))}}
	}
	return c.conns[conn].Invoke(ctx, tritonstubs.GRPCInferenceService_ModelInfer_FullMethodName, req, resp,
		grpc.StaticMethod(), grpc.WaitForReady(false), grpc.ForceCodecV2(c.codec))
}

// timeoutParameter is Triton's request parameter for the time a request may
// wait in the model's queue, an int64_param in microseconds: Triton's gRPC
// frontend refuses any other type (server r25.06, src/grpc/infer_handler.cc,
// SetInferenceRequestMetadata). The scheduler uses it where the model's
// queue policy has allow_timeout_override, and only to shorten a non-zero
// default_timeout_microseconds (core r25.06, src/scheduler_utils.cc,
// PolicyQueue::Enqueue); with timeout_action REJECT, a request still queued
// at the end gets "Request timeout expired" (errors.go) instead of running
// for a caller that has gone.
const timeoutParameter = "timeout"

// timeoutMicros is the timeout parameter for a call with remaining time
// left: at least 1, since Triton reads 0 as no timeout of the request's own.
func timeoutMicros(remaining time.Duration) int64 {
	return max(1, remaining.Microseconds())
}

// outgoing adds the trace headers for the call in ctx.
func (c *Client) outgoing(ctx context.Context) context.Context {
	if c.opts.Propagate == nil {
		return ctx
	}
	var kv []string
	c.opts.Propagate(ctx, func(k, v string) { kv = append(kv, k, v) })
	if len(kv) == 0 {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, kv...)
}

// validate rejects batches the gateway should never build, or that exceed
// the model's max_batch_size.
func (p *plan) validate(b *gateway.Batch) error {
	if err := b.Check(); err != nil {
		return fmt.Errorf("triton: %w", err)
	}
	if p.spec.MaxBatch > 0 && b.Rows > p.spec.MaxBatch {
		return gateway.Errorf(gateway.Internal, "batch", "triton: batch of %d rows exceeds the model's max_batch_size %d", b.Rows, p.spec.MaxBatch)
	}
	return nil
}

// request builds the ModelInferRequest for batch: one [Rows, Len] tensor per
// model input (position_ids, which no Batch carries, from
// gateway.PositionIDs), data in raw_input_contents (never contents), only the output
// the gateway reads requested, id = batch id (Triton prefixes its errors
// with it).
func (p *plan) request(model, version string, batch *gateway.Batch) (*tritonstubs.ModelInferRequest, error) {
	n := batch.Rows * batch.Len
	shape := []int64{int64(batch.Rows), int64(batch.Len)} // shared: marshalling only reads it
	tensors := make([]tritonstubs.ModelInferRequest_InferInputTensor, len(p.inputs))
	req := &tritonstubs.ModelInferRequest{
		ModelName:        model,
		ModelVersion:     version,
		Id:               batch.ID,
		Inputs:           make([]*tritonstubs.ModelInferRequest_InferInputTensor, len(p.inputs)),
		Outputs:          []*tritonstubs.ModelInferRequest_InferRequestedOutputTensor{{Name: p.output}},
		RawInputContents: make([][]byte, len(p.inputs)),
	}
	for i, in := range p.inputs {
		t := &tensors[i]
		t.Name, t.Shape, t.Datatype = in.name, shape, "INT64"
		if in.int32 {
			t.Datatype = "INT32"
		}
		req.Inputs[i] = t
		var data []int64
		switch in.name {
		case gateway.TensorInputIDs:
			data = batch.InputIDs
		case gateway.TensorAttentionMask:
			data = batch.AttentionMask
		case gateway.TensorTokenTypeIDs:
			data = batch.TokenTypeIDs
		case gateway.TensorPositionIDs:
			data = gateway.PositionIDs(batch.Rows, batch.Len)
		}
		raw, err := encodeInts(data, n, in.int32)
		if err != nil {
			return nil, gateway.Errorf(gateway.Internal, "batch", "triton: input %s: %v", in.name, err)
		}
		req.RawInputContents[i] = raw
	}
	return req, nil
}

// encodeInts returns data as n little-endian INT64 or INT32 values; nil
// data stands for zeros. INT64 on a little-endian host is the slice's own
// memory, not a copy: it is only read, while the call runs.
func encodeInts(data []int64, n int, int32s bool) ([]byte, error) {
	size := 8
	if int32s {
		size = 4
	}
	if data == nil {
		return make([]byte, n*size), nil
	}
	if !int32s {
		if littleEndian() {
			return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(data))), len(data)*8), nil
		}
		out := make([]byte, 8*len(data))
		for i, v := range data {
			binary.LittleEndian.PutUint64(out[8*i:], uint64(v))
		}
		return out, nil
	}
	out := make([]byte, 4*len(data))
	for i, v := range data {
		if v < math.MinInt32 || v > math.MaxInt32 {
			return nil, fmt.Errorf("value %d at %d does not fit INT32", v, i)
		}
		binary.LittleEndian.PutUint32(out[4*i:], uint32(v))
	}
	return out, nil
}

// responseBytes is the size of the FP32 output Triton sends for batch.
func (p *plan) responseBytes(batch *gateway.Batch) int64 {
	n := int64(batch.Rows) * int64(p.spec.Hidden) * 4
	if p.spec.Output == gateway.Hidden {
		n *= int64(batch.Len)
	}
	return n
}

// decode finds the requested output by name and checks its type, shape and
// size against the batch (its values are FP32 already, whatever the wire
// datatype). The output takes its values from resp, with a
// Release that returns them to the pool.
func (p *plan) decode(batch *gateway.Batch, resp *inferResponse) (*gateway.Output, error) {
	bad := func(format string, args ...any) error {
		return &gateway.Error{Kind: gateway.Backend, Msg: "triton: unexpected response",
			Err: fmt.Errorf("batch %s: "+format, append([]any{batch.ID}, args...)...)}
	}
	outputs := resp.msg.GetOutputs()
	idx := -1
	for i, o := range outputs {
		if o.GetName() == p.output {
			idx = i
			break
		}
	}
	if idx < 0 {
		return nil, bad("no output %s among %d outputs", p.output, len(outputs))
	}
	if idx >= len(resp.raw) {
		return nil, bad("output %s has no raw_output_contents (%d entries)", p.output, len(resp.raw))
	}
	o := outputs[idx]
	if o.GetDatatype() != p.wire.String() {
		// The codec read raw_output_contents as the metadata's datatype.
		return nil, bad("output %s is %s, want %s as the model's metadata said", p.output, o.GetDatatype(), p.wire)
	}
	out := &gateway.Output{Kind: p.spec.Output, Rows: batch.Rows, Hidden: p.spec.Hidden}
	want := []int64{int64(batch.Rows), int64(p.spec.Hidden)}
	if out.Kind == gateway.Hidden {
		out.Len = batch.Len
		want = []int64{int64(batch.Rows), int64(batch.Len), int64(p.spec.Hidden)}
	}
	shape := o.GetShape()
	if len(shape) != len(want) {
		return nil, bad("output %s has shape %v, want %v", p.output, shape, want)
	}
	for i := range want {
		if shape[i] != want[i] {
			return nil, bad("output %s has shape %v, want %v", p.output, shape, want)
		}
	}
	n := out.Rows * out.Hidden * max(out.Len, 1)
	if len(resp.raw[idx]) != n {
		size := p.wire.size()
		return nil, bad("output %s has %d bytes, want %d for shape %v", p.output, size*len(resp.raw[idx]), size*n, want)
	}
	data := resp.take(idx)
	out.Data = data[:n:n] // appending to Data must not write into the pooled capacity
	out.Release = resp.pool.releaser(data)
	return out, nil
}

// littleEndian reports the host's byte order; the compiler folds it.
func littleEndian() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}
