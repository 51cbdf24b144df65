//go:build cgo

package triton_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"go.opentelemetry.io/otel/propagation"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/backend/backendtest"
	"github.com/embedgate/embedgate/gateway/backend/onnx"
	"github.com/embedgate/embedgate/gateway/backend/triton/tritontest"
	"github.com/embedgate/embedgate/gateway/testmodel"
	"github.com/embedgate/embedgate/gateway/tracing"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		model  []testmodel.Option
		server []tritontest.Option
		want   gateway.ModelSpec
	}{
		{"Hidden", nil, nil,
			gateway.ModelSpec{HasTokenTypeIDs: true, Output: gateway.Hidden, Hidden: 32, MaxBatch: 32}},
		{"Pooled", []testmodel.Option{testmodel.WithPooled()}, nil,
			gateway.ModelSpec{HasTokenTypeIDs: true, Output: gateway.Pooled, Hidden: 32, MaxBatch: 32}},
		{"NoTokenTypeIDs", []testmodel.Option{testmodel.WithoutTokenTypeIDs()}, nil,
			gateway.ModelSpec{Output: gateway.Hidden, Hidden: 32, MaxBatch: 32}},
		{"Int32", nil, []tritontest.Option{tritontest.WithInt32Inputs()},
			gateway.ModelSpec{HasTokenTypeIDs: true, InputDType: gateway.Int32, Output: gateway.Hidden, Hidden: 32, MaxBatch: 32}},
		{"PooledInt32", []testmodel.Option{testmodel.WithPooled()}, []tritontest.Option{tritontest.WithInt32Inputs()},
			gateway.ModelSpec{HasTokenTypeIDs: true, InputDType: gateway.Int32, Output: gateway.Pooled, Hidden: 32, MaxBatch: 32}},
		{"NoTritonBatching", nil, []tritontest.Option{tritontest.WithMaxBatchSize(0)},
			gateway.ModelSpec{HasTokenTypeIDs: true, Output: gateway.Hidden, Hidden: 32}},
		{"ServerReadyFallback", nil, []tritontest.Option{tritontest.WithoutHealthService()},
			gateway.ModelSpec{HasTokenTypeIDs: true, Output: gateway.Hidden, Hidden: 32, MaxBatch: 32}},
		{"Reranker", []testmodel.Option{testmodel.WithNumLabels(1)}, nil,
			gateway.ModelSpec{HasTokenTypeIDs: true, Output: gateway.Logits, Hidden: 1, MaxBatch: 32}},
		{"RerankerTwoLabelsInt32", []testmodel.Option{testmodel.WithNumLabels(2)}, []tritontest.Option{tritontest.WithInt32Inputs()},
			gateway.ModelSpec{HasTokenTypeIDs: true, InputDType: gateway.Int32, Output: gateway.Logits, Hidden: 2, MaxBatch: 32}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := tritontest.Start(t, openONNX(t, tt.model...), tt.server...)
			b := openTriton(t, options(t, srv))
			tt.want.Name = srv.Name()
			tt.want.Version = "1" // the stand-in's one version
			if got := b.Spec(); got != tt.want {
				t.Errorf("Spec() = %+v, want %+v", got, tt.want)
			}
			backendtest.Run(t, b)
		})
	}
}

// TestConformanceQwen3: a decoder taking position_ids, served through
// the stand-in, says so in its spec and passes the conformance suite,
// with INT64 and INT32 inputs.
func TestConformanceQwen3(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		server []tritontest.Option
		dtype  gateway.DType
	}{
		{"Int64", nil, gateway.Int64},
		{"Int32", []tritontest.Option{tritontest.WithInt32Inputs()}, gateway.Int32},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := tritontest.Start(t, openQwen3(t), tt.server...)
			b := openTriton(t, options(t, srv))
			want := gateway.ModelSpec{Name: srv.Name(), HasPositionIDs: true, InputDType: tt.dtype, Output: gateway.Hidden,
				Hidden: 32, MaxBatch: 32, Version: "1"}
			if got := b.Spec(); got != want {
				t.Errorf("Spec() = %+v, want %+v", got, want)
			}
			backendtest.Run(t, b)
		})
	}
}

// TestSameAsONNX checks that going through Triton changes no bit of the
// model's output, for each wire dtype and output kind; FP16 and BF16
// outputs change each value to it rounded to the format, no more.
func TestSameAsONNX(t *testing.T) {
	t.Parallel()
	fp16 := func(v float64) float64 { return roundTo(v, 11, -14) }
	bf16 := func(v float64) float64 { return roundTo(v, 8, -126) }
	for _, tt := range []struct {
		name   string
		model  []testmodel.Option
		server []tritontest.Option
		round  func(float64) float64 // the output's rounding; nil = FP32
		qwen3  bool                  // the tiny Qwen3 decoder, not model's BERT
	}{
		{"HiddenInt64", nil, nil, nil, false},
		{"HiddenInt32", nil, []tritontest.Option{tritontest.WithInt32Inputs()}, nil, false},
		{"Pooled", []testmodel.Option{testmodel.WithPooled()}, nil, nil, false},
		{"Logits", []testmodel.Option{testmodel.WithNumLabels(2)}, nil, nil, false},
		{"HiddenFP16", nil, []tritontest.Option{tritontest.WithOutputDType("FP16")}, fp16, false},
		{"PooledFP16", []testmodel.Option{testmodel.WithPooled()}, []tritontest.Option{tritontest.WithOutputDType("FP16")}, fp16, false},
		{"HiddenBF16", nil, []tritontest.Option{tritontest.WithOutputDType("BF16")}, bf16, false},
		{"LogitsBF16Int32", []testmodel.Option{testmodel.WithNumLabels(2)},
			[]tritontest.Option{tritontest.WithOutputDType("BF16"), tritontest.WithInt32Inputs()}, bf16, false},
		// position_ids go over the wire, and the stand-in accepts them
		// only as 0..L-1 per row, what its onnx model uses.
		{"Qwen3", nil, nil, nil, true},
		{"Qwen3Int32FP16", nil, []tritontest.Option{tritontest.WithInt32Inputs(), tritontest.WithOutputDType("FP16")}, fp16, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var direct *onnx.Backend
			if tt.qwen3 {
				direct = openQwen3(t)
			} else {
				direct = openONNX(t, tt.model...)
			}
			srv := tritontest.Start(t, direct, tt.server...)
			b := openTriton(t, options(t, srv))
			in := batch(7, 3, 12, 1)
			in.TokenTypeIDs[3] = 1
			want, err := direct.Embed(context.Background(), in)
			if err != nil {
				t.Fatalf("onnx Embed: %v", err)
			}
			got, err := b.Embed(context.Background(), in)
			if err != nil {
				t.Fatalf("triton Embed: %v", err)
			}
			if got.Kind != want.Kind || got.Rows != want.Rows || got.Len != want.Len || got.Hidden != want.Hidden || len(got.Data) != len(want.Data) {
				t.Fatalf("Embed() = %v %dx%dx%d (%d values), want %v %dx%dx%d (%d values)", got.Kind, got.Rows, got.Len, got.Hidden,
					len(got.Data), want.Kind, want.Rows, want.Len, want.Hidden, len(want.Data))
			}
			for i := range want.Data {
				if tt.round != nil {
					if w := tt.round(float64(want.Data[i])); float64(got.Data[i]) != w {
						t.Fatalf("Data[%d] = %v, want %v (onnx directly: %v, rounded)", i, got.Data[i], w, want.Data[i])
					}
				} else if d := math.Abs(float64(got.Data[i] - want.Data[i])); d > 1e-6 {
					t.Fatalf("Data[%d] = %v, want %v (onnx directly)", i, got.Data[i], want.Data[i])
				}
			}
		})
	}
}

// roundTo rounds v to nearest, ties to even, in a binary format of p
// significant bits whose normal numbers start at 2^minExp (below that the
// spacing stays 2^(minExp-p+1)): FP16 is (11, -14), BF16 (8, -126). It is
// computed in float64 from the formats' definitions, apart from the
// stand-in's conversion and the backend's.
func roundTo(v float64, p, minExp int) float64 {
	if v == 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return v
	}
	_, e := math.Frexp(v) // |v| in [2^(e-1), 2^e)
	ulp := math.Ldexp(1, max(e-1, minExp)-p+1)
	return math.RoundToEven(v/ulp) * ulp
}

// TestRelease checks that an output's buffer is reused once freed, and
// only then: concurrent calls each get their own, and the values stay
// right while buffers go round.
func TestRelease(t *testing.T) {
	t.Parallel()
	direct := openONNX(t)
	srv := tritontest.Start(t, direct)
	b := openTriton(t, options(t, srv))
	ctx := context.Background()
	first, err := b.Embed(ctx, batch(6, 4))
	if err != nil {
		t.Fatal(err)
	}
	held, err := b.Embed(ctx, batch(6, 4))
	if err != nil {
		t.Fatal(err)
	}
	if unsafe.SliceData(first.Data) == unsafe.SliceData(held.Data) {
		t.Fatal("two outputs in use share one buffer")
	}
	p := unsafe.SliceData(first.Data)
	first.Free()
	first.Free() // a second Free does nothing
	first.Free()
	// A smaller batch fits in the freed buffer.
	again, err := b.Embed(ctx, batch(5, 3))
	if err != nil {
		t.Fatal(err)
	}
	if unsafe.SliceData(again.Data) != p {
		t.Errorf("Embed after Free did not reuse the freed buffer")
	}
	other, err := b.Embed(ctx, batch(6, 4))
	if err != nil {
		t.Fatal(err)
	}
	if unsafe.SliceData(other.Data) == p || unsafe.SliceData(other.Data) == unsafe.SliceData(held.Data) {
		t.Error("a buffer in use was handed out again (the first Free was called twice)")
	}
	for _, o := range []*gateway.Output{held, again, other} {
		o.Free()
	}

	shapes := [][]int{{7, 3, 12, 1}, {5}, {9, 9}, {2, 8, 3}}
	want := make([][]float32, len(shapes))
	for i, lens := range shapes {
		out, err := direct.Embed(ctx, batch(lens...))
		if err != nil {
			t.Fatal(err)
		}
		want[i] = out.Data
	}
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Go(func() {
			for i := range 10 {
				k := (g + i) % len(shapes)
				out, err := b.Embed(ctx, batch(shapes[k]...))
				if err != nil {
					t.Errorf("Embed: %v", err)
					return
				}
				if fmt.Sprint(out.Data) != fmt.Sprint(want[k]) {
					t.Errorf("Embed(shape %v) under concurrent reuse differs from onnx", shapes[k])
				}
				out.Free()
			}
		})
	}
	wg.Wait()
}

// TestWire checks what reaches Triton: raw_input_contents only, one entry
// per input in order, the right dtype and byte size, little-endian values,
// only the needed output, the batch id, and the traceparent of the call's
// context, injected by the W3C propagator on the Propagate hook as serve
// sets it.
func TestWire(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name     string
		server   []tritontest.Option
		dtype    string
		elemSize int
		qwen3    bool // the decoder: position_ids instead of token_type_ids
	}{
		{"Int64", nil, "INT64", 8, false},
		{"Int32", []tritontest.Option{tritontest.WithInt32Inputs()}, "INT32", 4, false},
		{"Qwen3Int64", nil, "INT64", 8, true},
		{"Qwen3Int32", []tritontest.Option{tritontest.WithInt32Inputs()}, "INT32", 4, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			model := tritontest.Model(nil)
			if tt.qwen3 {
				model = openQwen3(t)
			} else {
				model = openONNX(t)
			}
			srv := tritontest.Start(t, model, tt.server...)
			opts := options(t, srv)
			prop := propagation.TraceContext{}
			opts.Propagate = tracing.InjectFunc(prop)
			b := openTriton(t, opts)
			in := batch(5, 2)
			in.ID = "req-42"
			in.TokenTypeIDs = nil // sent as zeros
			const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
			ctx := prop.Extract(context.Background(), propagation.MapCarrier{"traceparent": tp})
			if _, err := b.Embed(ctx, in); err != nil {
				t.Fatalf("Embed: %v", err)
			}
			req, md := srv.LastInfer()
			if req.GetId() != in.ID {
				t.Errorf("request id = %q, want %q", req.GetId(), in.ID)
			}
			if got := md.Get("traceparent"); len(got) != 1 || got[0] != tp {
				t.Errorf("traceparent metadata = %q, want [%q]", got, tp)
			}
			if outs := req.GetOutputs(); len(outs) != 1 || outs[0].GetName() != "last_hidden_state" {
				t.Errorf("requested outputs = %v, want only last_hidden_state", outs)
			}
			wantNames := []string{"input_ids", "attention_mask", "token_type_ids"}
			wantData := [][]int64{in.InputIDs, in.AttentionMask, make([]int64, len(in.InputIDs))}
			if tt.qwen3 {
				wantNames[2], wantData[2] = "position_ids", []int64{0, 1, 2, 3, 4, 0, 1, 2, 3, 4}
			}
			if len(req.GetInputs()) != len(wantNames) || len(req.GetRawInputContents()) != len(wantNames) {
				t.Fatalf("request has %d inputs and %d raw contents, want %d each", len(req.GetInputs()), len(req.GetRawInputContents()), len(wantNames))
			}
			for i, tensor := range req.GetInputs() {
				if tensor.GetName() != wantNames[i] || tensor.GetDatatype() != tt.dtype || tensor.GetContents() != nil {
					t.Errorf("input %d = %s %s contents=%v, want %s %s and no contents", i, tensor.GetName(), tensor.GetDatatype(),
						tensor.GetContents(), wantNames[i], tt.dtype)
				}
				if s := tensor.GetShape(); len(s) != 2 || s[0] != 2 || s[1] != 5 {
					t.Errorf("input %s shape = %v, want [2 5]", tensor.GetName(), s)
				}
				raw := req.GetRawInputContents()[i]
				if len(raw) != 10*tt.elemSize {
					t.Fatalf("input %s has %d bytes, want %d", tensor.GetName(), len(raw), 10*tt.elemSize)
				}
				for j, want := range wantData[i] {
					var got int64
					if tt.elemSize == 4 {
						got = int64(int32(binary.LittleEndian.Uint32(raw[4*j:])))
					} else {
						got = int64(binary.LittleEndian.Uint64(raw[8*j:]))
					}
					if got != want {
						t.Fatalf("input %s value %d = %d, want %d", tensor.GetName(), j, got, want)
					}
				}
			}
		})
	}
}

// TestTimeoutParameter: every call tells Triton how long it may queue the
// batch, as an int64 of microseconds: what is left of the earlier of the
// caller's deadline and Options.Timeout.
func TestTimeoutParameter(t *testing.T) {
	t.Parallel()
	srv := tritontest.Start(t, openONNX(t))
	opts := options(t, srv)
	opts.Timeout = 20 * time.Second
	b := openTriton(t, opts)
	for _, tt := range []struct {
		name     string
		deadline time.Duration // the caller's; 0 = none
		atMost   time.Duration
	}{
		{"OptionTimeout", 0, 20 * time.Second},
		{"CallerDeadline", 10 * time.Second, 10 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.deadline > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.deadline)
				defer cancel()
			}
			if _, err := b.Embed(ctx, batch(3)); err != nil {
				t.Fatalf("Embed: %v", err)
			}
			// At most the caller's 10 s shows that the earlier bound won.
			d, ok := srv.LastTimeout()
			if !ok || d <= 0 || d > tt.atMost {
				t.Errorf("timeout parameter = %v (present %v), want an int64 of microseconds in (0, %v]", d, ok, tt.atMost)
			}
		})
	}
}

func TestPropagate(t *testing.T) {
	t.Parallel()
	srv := tritontest.Start(t, openONNX(t))
	opts := options(t, srv)
	opts.Propagate = func(ctx context.Context, set func(k, v string)) {
		set("traceparent", "00-11111111111111111111111111111111-2222222222222222-01")
		set("baggage", "k=v")
	}
	b := openTriton(t, opts)
	if _, err := b.Embed(context.Background(), batch(3)); err != nil {
		t.Fatalf("Embed: %v", err)
	}
	_, md := srv.LastInfer()
	if got := md.Get("traceparent"); len(got) != 1 || got[0] != "00-11111111111111111111111111111111-2222222222222222-01" {
		t.Errorf("traceparent = %q, want the propagator's", got)
	}
	if got := md.Get("baggage"); len(got) != 1 || got[0] != "k=v" {
		t.Errorf("baggage = %q, want [k=v]", got)
	}
}

// TestConfigWarnings checks that Open logs what modelrepo finds wrong in
// the config Triton reports: one warning line per problem, naming the
// model, and none for a config that passes.
func TestConfigWarnings(t *testing.T) {
	for _, tt := range []struct {
		name   string
		model  []testmodel.Option
		server []tritontest.Option
		qwen3  bool     // the tiny Qwen3 decoder, not model's BERT
		want   []string // what each warning's problem starts with, in order
	}{
		{"Good", nil, nil, false, nil},
		// logits, a cross-encoder's only output, is one the gateway reads.
		{"GoodReranker", []testmodel.Option{testmodel.WithNumLabels(1)}, nil, false, nil},
		// A half-precision output is one the gateway reads.
		{"GoodFP16", nil, []tritontest.Option{tritontest.WithOutputDType("FP16")}, false, nil},
		// position_ids, a decoder's, is an input the gateway fills.
		{"GoodQwen3", nil, nil, true, nil},
		{"NoTritonBatching", nil, []tritontest.Option{tritontest.WithName("bge"), tritontest.WithMaxBatchSize(0)}, false, []string{
			"max_batch_size is 0",
			`input \"input_ids\" dims [-1 -1]`,
			`input \"attention_mask\" dims [-1 -1]`,
			`input \"token_type_ids\" dims [-1 -1]`,
			`output \"last_hidden_state\" dims [-1 -1 32]`,
			"no dynamic_batching",
			"no model_warmup",
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			model := tritontest.Model(nil)
			if tt.qwen3 {
				model = openQwen3(t)
			} else {
				model = openONNX(t, tt.model...)
			}
			srv := tritontest.Start(t, model, tt.server...)
			var log lockedBuffer
			opts := options(t, srv)
			opts.Logger = slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelWarn}))
			openTriton(t, opts)
			var lines []string
			if s := strings.TrimSpace(log.String()); s != "" {
				lines = strings.Split(s, "\n")
			}
			if len(lines) != len(tt.want) {
				t.Fatalf("Open logged %d warnings, want %d:\n%s", len(lines), len(tt.want), log.String())
			}
			for i, line := range lines {
				prefix := `level=WARN msg="triton model config does not fit the gateway" model=` + srv.Name() + ` problem="` + tt.want[i]
				if !strings.Contains(line, prefix) {
					t.Errorf("warning %d = %s\nwant it to contain %s", i, line, prefix)
				}
			}
		})
	}
}

// lockedBuffer is a bytes.Buffer that a logger may write from any
// goroutine.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
