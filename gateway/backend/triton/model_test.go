package triton

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/tritonstubs"
)

type tensor = tritonstubs.ModelMetadataResponse_TensorMetadata

func tm(name, dtype string, shape ...int64) *tensor {
	return &tensor{Name: name, Datatype: dtype, Shape: shape}
}

// bertMeta is the metadata of an exported BERT with the given inputs and
// output, batch dim included.
func bertMeta(dtype string, out *tensor, inputs ...string) *tritonstubs.ModelMetadataResponse {
	m := &tritonstubs.ModelMetadataResponse{Outputs: []*tensor{out}}
	for _, in := range inputs {
		m.Inputs = append(m.Inputs, tm(in, dtype, -1, -1))
	}
	return m
}

func TestDescribe(t *testing.T) {
	hidden := tm(gateway.TensorLastHiddenState, "FP32", -1, -1, 384)
	pooled := tm(gateway.TensorSentenceEmbedding, "FP32", -1, 384)
	three := []string{gateway.TensorInputIDs, gateway.TensorAttentionMask, gateway.TensorTokenTypeIDs}
	cfg := &tritonstubs.ModelConfig{MaxBatchSize: 64}
	for _, tt := range []struct {
		name    string
		meta    *tritonstubs.ModelMetadataResponse
		cfg     *tritonstubs.ModelConfig
		want    gateway.ModelSpec
		inputs  []input
		output  string
		wire    wireFloat
		wantErr string
	}{
		{name: "Hidden", meta: bertMeta("INT64", hidden, three...), cfg: cfg,
			want:   gateway.ModelSpec{Name: "m", HasTokenTypeIDs: true, Output: gateway.Hidden, Hidden: 384, MaxBatch: 64},
			inputs: []input{{gateway.TensorInputIDs, false}, {gateway.TensorAttentionMask, false}, {gateway.TensorTokenTypeIDs, false}}, output: gateway.TensorLastHiddenState},
		{name: "PooledPreferred", meta: &tritonstubs.ModelMetadataResponse{Inputs: bertMeta("INT64", nil, gateway.TensorInputIDs, gateway.TensorAttentionMask).Inputs,
			Outputs: []*tensor{hidden, pooled}}, cfg: cfg,
			want:   gateway.ModelSpec{Name: "m", Output: gateway.Pooled, Hidden: 384, MaxBatch: 64},
			inputs: []input{{gateway.TensorInputIDs, false}, {gateway.TensorAttentionMask, false}}, output: gateway.TensorSentenceEmbedding},
		{name: "Int32", meta: bertMeta("INT32", pooled, gateway.TensorAttentionMask, gateway.TensorInputIDs), cfg: cfg,
			want:   gateway.ModelSpec{Name: "m", InputDType: gateway.Int32, Output: gateway.Pooled, Hidden: 384, MaxBatch: 64},
			inputs: []input{{gateway.TensorAttentionMask, true}, {gateway.TensorInputIDs, true}}, output: gateway.TensorSentenceEmbedding},
		{name: "NoTritonBatching", meta: bertMeta("INT64", hidden, three...), cfg: &tritonstubs.ModelConfig{},
			want:   gateway.ModelSpec{Name: "m", HasTokenTypeIDs: true, Output: gateway.Hidden, Hidden: 384},
			inputs: []input{{gateway.TensorInputIDs, false}, {gateway.TensorAttentionMask, false}, {gateway.TensorTokenTypeIDs, false}}, output: gateway.TensorLastHiddenState},
		{name: "HiddenFromConfig", meta: bertMeta("INT64", tm(gateway.TensorLastHiddenState, "FP32", -1, -1, -1), gateway.TensorInputIDs, gateway.TensorAttentionMask),
			cfg:    &tritonstubs.ModelConfig{MaxBatchSize: 8, Output: []*tritonstubs.ModelOutput{{Name: gateway.TensorLastHiddenState, Dims: []int64{-1, 768}}}},
			want:   gateway.ModelSpec{Name: "m", Output: gateway.Hidden, Hidden: 768, MaxBatch: 8},
			inputs: []input{{gateway.TensorInputIDs, false}, {gateway.TensorAttentionMask, false}}, output: gateway.TensorLastHiddenState},
		{name: "OptionalExtraInputSkipped", meta: bertMeta("INT64", pooled, gateway.TensorInputIDs, gateway.TensorAttentionMask, "pixel_values"),
			cfg:    &tritonstubs.ModelConfig{MaxBatchSize: 4, Input: []*tritonstubs.ModelInput{{Name: "pixel_values", Optional: true}}},
			want:   gateway.ModelSpec{Name: "m", Output: gateway.Pooled, Hidden: 384, MaxBatch: 4},
			inputs: []input{{gateway.TensorInputIDs, false}, {gateway.TensorAttentionMask, false}}, output: gateway.TensorSentenceEmbedding},
		// A decoder (Qwen3's export): the gateway fills position_ids.
		{name: "PositionIDs", meta: bertMeta("INT64", hidden, gateway.TensorInputIDs, gateway.TensorAttentionMask, gateway.TensorPositionIDs), cfg: cfg,
			want:   gateway.ModelSpec{Name: "m", HasPositionIDs: true, Output: gateway.Hidden, Hidden: 384, MaxBatch: 64},
			inputs: []input{{gateway.TensorInputIDs, false}, {gateway.TensorAttentionMask, false}, {gateway.TensorPositionIDs, false}}, output: gateway.TensorLastHiddenState},
		{name: "PositionIDsInt32", meta: bertMeta("INT32", hidden, gateway.TensorPositionIDs, gateway.TensorInputIDs, gateway.TensorAttentionMask), cfg: cfg,
			want:   gateway.ModelSpec{Name: "m", HasPositionIDs: true, InputDType: gateway.Int32, Output: gateway.Hidden, Hidden: 384, MaxBatch: 64},
			inputs: []input{{gateway.TensorPositionIDs, true}, {gateway.TensorInputIDs, true}, {gateway.TensorAttentionMask, true}}, output: gateway.TensorLastHiddenState},

		{name: "MissingMask", meta: bertMeta("INT64", hidden, gateway.TensorInputIDs), cfg: cfg, wantErr: "needs input_ids and attention_mask"},
		{name: "UnknownInput", meta: bertMeta("INT64", hidden, gateway.TensorInputIDs, gateway.TensorAttentionMask, "pixel_values"), cfg: cfg,
			wantErr: `input "pixel_values" that the gateway cannot fill: it sends only input_ids, attention_mask, token_type_ids and position_ids (export the model without it)`},
		{name: "FP16Input", meta: bertMeta("FP16", hidden, gateway.TensorInputIDs, gateway.TensorAttentionMask), cfg: cfg, wantErr: "TYPE_INT64 or TYPE_INT32"},
		{name: "MixedDTypes", meta: &tritonstubs.ModelMetadataResponse{Inputs: []*tensor{tm(gateway.TensorInputIDs, "INT64", -1, -1), tm(gateway.TensorAttentionMask, "INT32", -1, -1)},
			Outputs: []*tensor{hidden}}, cfg: cfg, wantErr: "mixes INT64 and INT32"},
		{name: "Logits", meta: bertMeta("INT64", tm(gateway.TensorLogits, "FP32", -1, 2), three...), cfg: cfg,
			want:   gateway.ModelSpec{Name: "m", HasTokenTypeIDs: true, Output: gateway.Logits, Hidden: 2, MaxBatch: 64},
			inputs: []input{{gateway.TensorInputIDs, false}, {gateway.TensorAttentionMask, false}, {gateway.TensorTokenTypeIDs, false}}, output: gateway.TensorLogits},
		{name: "HiddenPreferredToLogits", meta: &tritonstubs.ModelMetadataResponse{Inputs: bertMeta("INT64", nil, gateway.TensorInputIDs, gateway.TensorAttentionMask).Inputs,
			Outputs: []*tensor{tm(gateway.TensorLogits, "FP32", -1, 1), hidden}}, cfg: cfg,
			want:   gateway.ModelSpec{Name: "m", Output: gateway.Hidden, Hidden: 384, MaxBatch: 64},
			inputs: []input{{gateway.TensorInputIDs, false}, {gateway.TensorAttentionMask, false}}, output: gateway.TensorLastHiddenState},
		{name: "NoUsableOutput", meta: bertMeta("INT64", tm("scores", "FP32", -1, 2), gateway.TensorInputIDs, gateway.TensorAttentionMask), cfg: cfg, wantErr: "outputs [scores]"},
		{name: "LogitsRank", meta: bertMeta("INT64", tm(gateway.TensorLogits, "FP32", -1, 7, 1), gateway.TensorInputIDs, gateway.TensorAttentionMask), cfg: cfg, wantErr: "want rank 2"},
		// TensorRT engines and half-precision exports: decoded into FP32.
		{name: "FP16Output", meta: bertMeta("INT64", tm(gateway.TensorSentenceEmbedding, "FP16", -1, 384), gateway.TensorInputIDs, gateway.TensorAttentionMask), cfg: cfg,
			want:   gateway.ModelSpec{Name: "m", Output: gateway.Pooled, Hidden: 384, MaxBatch: 64},
			inputs: []input{{gateway.TensorInputIDs, false}, {gateway.TensorAttentionMask, false}}, output: gateway.TensorSentenceEmbedding, wire: wireFP16},
		{name: "BF16Output", meta: bertMeta("INT64", tm(gateway.TensorLastHiddenState, "BF16", -1, -1, 384), gateway.TensorInputIDs, gateway.TensorAttentionMask), cfg: cfg,
			want:   gateway.ModelSpec{Name: "m", Output: gateway.Hidden, Hidden: 384, MaxBatch: 64},
			inputs: []input{{gateway.TensorInputIDs, false}, {gateway.TensorAttentionMask, false}}, output: gateway.TensorLastHiddenState, wire: wireBF16},
		{name: "FP64Output", meta: bertMeta("INT64", tm(gateway.TensorSentenceEmbedding, "FP64", -1, 384), gateway.TensorInputIDs, gateway.TensorAttentionMask), cfg: cfg, wantErr: "is FP64; the gateway reads FP32, FP16 or BF16"},
		{name: "HiddenUnknown", meta: bertMeta("INT64", tm(gateway.TensorSentenceEmbedding, "FP32", -1, -1), gateway.TensorInputIDs, gateway.TensorAttentionMask), cfg: cfg, wantErr: "hidden size unknown"},
		{name: "OutputRank", meta: bertMeta("INT64", tm(gateway.TensorLastHiddenState, "FP32", -1, 384), gateway.TensorInputIDs, gateway.TensorAttentionMask), cfg: cfg, wantErr: "want rank 3"},
		{name: "FixedBatchWithoutBatching", meta: &tritonstubs.ModelMetadataResponse{Inputs: []*tensor{tm(gateway.TensorInputIDs, "INT64", 1, -1), tm(gateway.TensorAttentionMask, "INT64", 1, -1)},
			Outputs: []*tensor{hidden}}, cfg: &tritonstubs.ModelConfig{}, wantErr: "max_batch_size 0"},
		{name: "FixedLength", meta: &tritonstubs.ModelMetadataResponse{Inputs: []*tensor{tm(gateway.TensorInputIDs, "INT64", -1, 128), tm(gateway.TensorAttentionMask, "INT64", -1, 128)},
			Outputs: []*tensor{hidden}}, cfg: cfg, wantErr: "fixed length 128"},
		{name: "InputRank", meta: &tritonstubs.ModelMetadataResponse{Inputs: []*tensor{tm(gateway.TensorInputIDs, "INT64", -1), tm(gateway.TensorAttentionMask, "INT64", -1)},
			Outputs: []*tensor{hidden}}, cfg: cfg, wantErr: "[batch, length]"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := describe("m", tt.meta, tt.cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("describe() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("describe() error = %v", err)
			}
			if p.spec != tt.want {
				t.Errorf("describe() spec = %+v, want %+v", p.spec, tt.want)
			}
			if fmt.Sprint(p.inputs) != fmt.Sprint(tt.inputs) || p.output != tt.output || p.wire != tt.wire {
				t.Errorf("describe() inputs, output = %v, %s %s, want %v, %s %s", p.inputs, p.output, p.wire, tt.inputs, tt.output, tt.wire)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	bg := context.Background()
	for _, tt := range []struct {
		name       string
		ctx        context.Context
		err        error
		want       gateway.Kind
		retryAfter time.Duration
		loud       bool
	}{
		{"QueueFull", bg, status.Error(codes.Unavailable, "[request id: b1] Exceeds maximum queue size"), gateway.Overloaded, time.Second, false},
		{"Unavailable", bg, status.Error(codes.Unavailable, "Server not ready"), gateway.Unhealthy, 0, false},
		// Triton's exact answer (core's FinishRejectedCancelledRequests), and
		// the same text should a version add the request id.
		{"QueueTimeout", bg, status.Error(codes.Unavailable, "Request timeout expired"), gateway.Overloaded, time.Second, false},
		{"QueueTimeoutWithID", bg, status.Error(codes.Unavailable, "[request id: b1] Request timeout expired"), gateway.Overloaded, time.Second, false},
		{"NotFound", bg, status.Error(codes.NotFound, "Request for unknown model: 'm' has no available versions"), gateway.Unhealthy, 0, false},
		{"DeadlineExceeded", bg, status.Error(codes.DeadlineExceeded, "context deadline exceeded"), gateway.Timeout, 0, false},
		{"OurDeadline", expired, status.Error(codes.Unknown, "whatever"), gateway.Timeout, 0, false},
		{"ContextDeadline", bg, context.DeadlineExceeded, gateway.Timeout, 0, false},
		{"InvalidArgument", bg, status.Error(codes.InvalidArgument, "[request id: b1] unexpected inference input 'x'"), gateway.Backend, 0, true},
		{"Internal", bg, status.Error(codes.Internal, "onnx runtime error"), gateway.Backend, 0, false},
		{"Unknown", bg, status.Error(codes.Unknown, "?"), gateway.Backend, 0, false},
		{"Cancelled", bg, status.Error(codes.Canceled, "context canceled"), gateway.Backend, 0, false},
		{"NotStatus", bg, errors.New("boom"), gateway.Backend, 0, false},
		{"AlreadyGateway", bg, gateway.Errorf(gateway.Internal, "batch", "bad"), gateway.Internal, 0, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var log strings.Builder
			logger := slog.New(slog.NewTextHandler(&log, nil))
			err := classify(tt.ctx, logger, "b1", tt.err)
			var gerr *gateway.Error
			if !errors.As(err, &gerr) {
				t.Fatalf("classify(%v) = %v, want a *gateway.Error", tt.err, err)
			}
			if gerr.Kind != tt.want || gerr.RetryAfter != tt.retryAfter {
				t.Errorf("classify(%v) = %v, RetryAfter %v; want %v, %v", tt.err, gerr.Kind, gerr.RetryAfter, tt.want, tt.retryAfter)
			}
			if !errors.Is(err, tt.err) {
				t.Errorf("classify(%v) loses the cause", tt.err)
			}
			if want := gateway.ContextError(context.DeadlineExceeded).Msg; tt.want == gateway.Timeout && gerr.Msg != want {
				t.Errorf("classify(%v) says %q, want gateway.ContextError's %q", tt.err, gerr.Msg, want)
			}
			if loud := strings.Contains(log.String(), "level=ERROR"); loud != tt.loud {
				t.Errorf("classify(%v) logged at error = %v, want %v", tt.err, loud, tt.loud)
			}
		})
	}
}

func TestNeverSent(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{status.Error(codes.Unavailable, `connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:1: connect: connection refused"`), true},
		{status.Error(codes.Unavailable, "error reading from server: EOF"), false}, // may have reached Triton
		{status.Error(codes.Unavailable, "[request id: x] Exceeds maximum queue size"), false},
		{status.Error(codes.Internal, "connection error"), false},
		{errors.New("connection error"), false},
	} {
		if got := neverSent(tt.err); got != tt.want {
			t.Errorf("neverSent(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestEncodeInts(t *testing.T) {
	for _, tt := range []struct {
		name    string
		data    []int64
		n       int
		int32s  bool
		want    []byte
		wantErr bool
	}{
		{"Int64", []int64{1, -2}, 2, false, []byte{1, 0, 0, 0, 0, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, false},
		{"Int32", []int64{1, 258}, 2, true, []byte{1, 0, 0, 0, 2, 1, 0, 0}, false},
		{"NilIsZeros", nil, 3, true, make([]byte, 12), false},
		{"Int32Overflow", []int64{1 << 40}, 1, true, nil, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := encodeInts(tt.data, tt.n, tt.int32s)
			if (err != nil) != tt.wantErr || string(got) != string(tt.want) {
				t.Errorf("encodeInts(%v, %d, %v) = %v, %v; want %v, error %v", tt.data, tt.n, tt.int32s, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestDecode(t *testing.T) {
	p := plan{spec: gateway.ModelSpec{Output: gateway.Pooled, Hidden: 2}, output: gateway.TensorSentenceEmbedding}
	b := &gateway.Batch{ID: "b", Rows: 2, Len: 3}
	good := []byte{0, 0, 0x80, 0x3f, 0, 0, 0, 0x40, 0, 0, 0x40, 0x40, 0, 0, 0x80, 0x40} // 1 2 3 4
	resp := func(name, dtype string, shape []int64, raw ...[]byte) *tritonstubs.ModelInferResponse {
		return &tritonstubs.ModelInferResponse{Outputs: []*tritonstubs.ModelInferResponse_InferOutputTensor{
			{Name: "other", Datatype: "FP32", Shape: []int64{2}}, {Name: name, Datatype: dtype, Shape: shape}},
			RawOutputContents: append([][]byte{{0, 0, 0, 0, 0, 0, 0, 0}}, raw...)}
	}
	for _, tt := range []struct {
		name string
		resp *tritonstubs.ModelInferResponse
		want string // fmt of Data, or "error"
	}{
		{"ByName", resp(gateway.TensorSentenceEmbedding, "FP32", []int64{2, 2}, good), "[1 2 3 4]"},
		{"Missing", resp("x", "FP32", []int64{2, 2}, good), "error"},
		{"NoRaw", resp(gateway.TensorSentenceEmbedding, "FP32", []int64{2, 2}), "error"},
		{"FP16", resp(gateway.TensorSentenceEmbedding, "FP16", []int64{2, 2}, good[:8]), "error"},
		{"Shape", resp(gateway.TensorSentenceEmbedding, "FP32", []int64{1, 4}, good), "error"},
		{"Rank", resp(gateway.TensorSentenceEmbedding, "FP32", []int64{2, 2, 1}, good), "error"},
		{"ShortData", resp(gateway.TensorSentenceEmbedding, "FP32", []int64{2, 2}, good[:12]), "error"},
		{"LongData", resp(gateway.TensorSentenceEmbedding, "FP32", []int64{2, 2}, append(good, good[:4]...)), "error"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pool := newFloatPool(4, 1<<20)
			r := unmarshalResp(t, pool, tt.resp)
			out, err := p.decode(b, r)
			r.release()
			got := "error"
			if err == nil {
				got = fmt.Sprint(out.Data)
				if out.Release == nil {
					t.Errorf("decode() output has no Release")
				}
				out.Free()
			} else if gateway.KindOf(err) != gateway.Backend {
				t.Errorf("decode() error kind = %v, want Backend", gateway.KindOf(err))
			}
			if got != tt.want {
				t.Errorf("decode() = %s (%v), want %s", got, err, tt.want)
			}
			// Every buffer the codec took is back: the one decode handed
			// out through Release, the others through release.
			if n, _ := pool.idle(); n != len(tt.resp.GetRawOutputContents()) {
				t.Errorf("pool holds %d idle buffers after decode and Free, want %d", n, len(tt.resp.GetRawOutputContents()))
			}
		})
	}
}

// Triton reads a timeout of 0 as none: a call with less than a
// microsecond left, or none, still sends 1.
func TestTimeoutMicros(t *testing.T) {
	for _, tt := range []struct {
		left time.Duration
		want int64
	}{
		{1500 * time.Microsecond, 1500},
		{2*time.Second + 999*time.Nanosecond, 2_000_000},
		{999 * time.Nanosecond, 1},
		{0, 1},
		{-time.Second, 1},
	} {
		if got := timeoutMicros(tt.left); got != tt.want {
			t.Errorf("timeoutMicros(%v) = %d, want %d", tt.left, got, tt.want)
		}
	}
}

func TestResponseBytes(t *testing.T) {
	b := &gateway.Batch{Rows: 32, Len: 512}
	for _, tt := range []struct {
		kind gateway.OutputKind
		want int64
	}{
		{gateway.Hidden, 32 * 512 * 384 * 4},
		{gateway.Pooled, 32 * 384 * 4},
	} {
		p := plan{spec: gateway.ModelSpec{Output: tt.kind, Hidden: 384}}
		if got := p.responseBytes(b); got != tt.want {
			t.Errorf("responseBytes(%v, 32×512, hidden 384) = %d, want %d", tt.kind, got, tt.want)
		}
	}
}

// The served version is the one asked for, else the highest ready one,
// compared as numbers (Triton's versions are integers).
func TestServedVersion(t *testing.T) {
	for _, tt := range []struct {
		asked string
		ready []string
		want  string
	}{
		{"", nil, ""},
		{"", []string{"1"}, "1"},
		{"", []string{"2", "10", "9"}, "10"},
		{"3", []string{"2", "10"}, "3"},
	} {
		if got := servedVersion(tt.asked, tt.ready); got != tt.want {
			t.Errorf("servedVersion(%q, %q) = %q, want %q", tt.asked, tt.ready, got, tt.want)
		}
	}
}
