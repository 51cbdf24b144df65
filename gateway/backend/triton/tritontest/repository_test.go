package tritontest_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/backend/triton/tritontest"
	"github.com/embedgate/embedgate/tritonstubs"
)

// pooled answers every row with hidden copies of its first id: a second
// model with a hidden size and output of its own.
type pooled struct{ hidden int }

func (p pooled) Spec() gateway.ModelSpec {
	return gateway.ModelSpec{Output: gateway.Pooled, Hidden: p.hidden}
}

func (p pooled) Embed(_ context.Context, b *gateway.Batch) (*gateway.Output, error) {
	out := &gateway.Output{Kind: gateway.Pooled, Rows: b.Rows, Hidden: p.hidden, Data: make([]float32, p.hidden*b.Rows)}
	for r := range b.Rows {
		for j := range p.hidden {
			out.Data[r*p.hidden+j] = float32(b.InputIDs[r*b.Len])
		}
	}
	return out, nil
}

func (pooled) Health(context.Context) error { return nil }

// requestFor is a valid [1,2] INT64 request for model with the given inputs.
func requestFor(model string, inputs ...string) *tritonstubs.ModelInferRequest {
	req := &tritonstubs.ModelInferRequest{ModelName: model, Id: "r1"}
	for _, name := range inputs {
		req.Inputs = append(req.Inputs, &tritonstubs.ModelInferRequest_InferInputTensor{Name: name, Datatype: "INT64", Shape: []int64{1, 2}})
		req.RawInputContents = append(req.RawInputContents, ints(8, 7, 1))
	}
	return req
}

func TestMultiModel(t *testing.T) {
	srv := tritontest.StartMulti(t,
		tritontest.WithModel("bert", fakeModel{}, tritontest.ModelMaxBatchSize(4),
			tritontest.ModelParameters(map[string]string{"hf_model_id": "org/bert", "pooling": "mean"})),
		tritontest.WithModel("xlmr", pooled{hidden: 5}, tritontest.ModelMaxBatchSize(0)),
	)
	if srv.Name() != "bert" {
		t.Errorf("Name() = %q, want the first model, bert", srv.Name())
	}
	c := tritonstubs.NewGRPCInferenceServiceClient(dial(t, srv.Addr()))
	ctx := context.Background()
	for _, tt := range []struct {
		name     string
		inputs   []string
		output   string
		shape    []int64 // of the [1,2] request's output
		maxBatch int32
		params   map[string]string
	}{
		{"bert", []string{"input_ids", "attention_mask", "token_type_ids"}, "last_hidden_state", []int64{1, 2, 2}, 4,
			map[string]string{"hf_model_id": "org/bert", "pooling": "mean"}},
		{"xlmr", []string{"input_ids", "attention_mask"}, "sentence_embedding", []int64{1, 5}, 0, map[string]string{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			meta, err := c.ModelMetadata(ctx, &tritonstubs.ModelMetadataRequest{Name: tt.name})
			if err != nil {
				t.Fatal(err)
			}
			if meta.GetName() != tt.name || len(meta.GetInputs()) != len(tt.inputs) || meta.GetOutputs()[0].GetName() != tt.output {
				t.Errorf("ModelMetadata() = %v, want %s with %d inputs and output %s", meta, tt.name, len(tt.inputs), tt.output)
			}
			resp, err := c.ModelConfig(ctx, &tritonstubs.ModelConfigRequest{Name: tt.name})
			if err != nil {
				t.Fatal(err)
			}
			cfg := resp.GetConfig()
			got := map[string]string{}
			for k, v := range cfg.GetParameters() {
				got[k] = v.GetStringValue()
			}
			if cfg.GetName() != tt.name || cfg.GetMaxBatchSize() != tt.maxBatch || fmt.Sprint(got) != fmt.Sprint(tt.params) {
				t.Errorf("ModelConfig() = name %q, max_batch_size %d, parameters %v; want %q, %d, %v",
					cfg.GetName(), cfg.GetMaxBatchSize(), got, tt.name, tt.maxBatch, tt.params)
			}
			out, err := c.ModelInfer(ctx, requestFor(tt.name, tt.inputs...))
			if err != nil {
				t.Fatal(err)
			}
			if o := out.GetOutputs(); len(o) != 1 || o[0].GetName() != tt.output || fmt.Sprint(o[0].GetShape()) != fmt.Sprint(tt.shape) {
				t.Errorf("ModelInfer() outputs = %v, want %s %v", o, tt.output, tt.shape)
			}
		})
	}
	// One model's inputs are not the other's.
	_, err := c.ModelInfer(ctx, requestFor("xlmr", "input_ids", "attention_mask", "token_type_ids"))
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "unexpected inference input 'token_type_ids' for model 'xlmr'") {
		t.Errorf("ModelInfer(xlmr with token_type_ids) = %v, want INVALID_ARGUMENT unexpected input", err)
	}
}

// index renders RepositoryIndex as "name:version:state:reason" entries.
func index(t *testing.T, c tritonstubs.GRPCInferenceServiceClient, ready bool) string {
	t.Helper()
	resp, err := c.RepositoryIndex(context.Background(), &tritonstubs.RepositoryIndexRequest{Ready: ready})
	if err != nil {
		t.Fatalf("RepositoryIndex() = %v", err)
	}
	var parts []string
	for _, m := range resp.GetModels() {
		parts = append(parts, strings.Join([]string{m.GetName(), m.GetVersion(), m.GetState(), m.GetReason()}, ":"))
	}
	return strings.Join(parts, " ")
}

// wantCode checks err's gRPC code and that its message contains msg.
func wantCode(t *testing.T, what string, err error, code codes.Code, msg string) {
	t.Helper()
	if st := status.Convert(err); st.Code() != code || !strings.Contains(st.Message(), msg) {
		t.Errorf("%s = %v, want %v containing %q", what, err, code, msg)
	}
}

// modelCalls makes every per-model call for name at version and checks
// each fails with code and msg.
func modelCalls(t *testing.T, c tritonstubs.GRPCInferenceServiceClient, name, version string, code codes.Code, msg string) {
	t.Helper()
	ctx := context.Background()
	_, err := c.ModelReady(ctx, &tritonstubs.ModelReadyRequest{Name: name, Version: version})
	wantCode(t, "ModelReady("+name+")", err, code, msg)
	_, err = c.ModelMetadata(ctx, &tritonstubs.ModelMetadataRequest{Name: name, Version: version})
	wantCode(t, "ModelMetadata("+name+")", err, code, msg)
	_, err = c.ModelConfig(ctx, &tritonstubs.ModelConfigRequest{Name: name, Version: version})
	wantCode(t, "ModelConfig("+name+")", err, code, msg)
	req := requestFor(name, "input_ids", "attention_mask")
	req.ModelVersion = version
	_, err = c.ModelInfer(ctx, req)
	wantCode(t, "ModelInfer("+name+")", err, code, msg)
}

func TestLoadUnload(t *testing.T) {
	srv := tritontest.StartMulti(t,
		tritontest.WithModel("a", pooled{hidden: 3}),
		tritontest.WithModel("b", pooled{hidden: 4}, tritontest.ModelUnloaded()),
	)
	c := tritonstubs.NewGRPCInferenceServiceClient(dial(t, srv.Addr()))
	ctx := context.Background()
	infer := func(name string) error {
		_, err := c.ModelInfer(ctx, requestFor(name, "input_ids", "attention_mask"))
		return err
	}

	// b is in the repository, never loaded.
	if got, want := index(t, c, false), "a:1:READY: b:::"; got != want {
		t.Errorf("index = %q, want %q", got, want)
	}
	if got, want := index(t, c, true), "a:1:READY:"; got != want {
		t.Errorf("ready index = %q, want %q", got, want)
	}
	modelCalls(t, c, "b", "", codes.NotFound, "Request for unknown model: 'b' is not found")

	// Load b through the RPC.
	if _, err := c.RepositoryModelLoad(ctx, &tritonstubs.RepositoryModelLoadRequest{ModelName: "b"}); err != nil {
		t.Fatalf("RepositoryModelLoad(b) = %v", err)
	}
	if got, want := index(t, c, true), "a:1:READY: b:1:READY:"; got != want {
		t.Errorf("ready index after loading b = %q, want %q", got, want)
	}
	if r, err := c.ModelReady(ctx, &tritonstubs.ModelReadyRequest{Name: "b"}); err != nil || !r.GetReady() {
		t.Errorf("ModelReady(b) = %v, %v; want ready", r, err)
	}
	if err := infer("b"); err != nil {
		t.Errorf("ModelInfer(b) after load = %v", err)
	}

	// Unload a through the RPC: Triton keeps its version, unavailable.
	if _, err := c.RepositoryModelUnload(ctx, &tritonstubs.RepositoryModelUnloadRequest{ModelName: "a"}); err != nil {
		t.Fatalf("RepositoryModelUnload(a) = %v", err)
	}
	if got, want := index(t, c, false), "a:1:UNAVAILABLE:unloaded b:1:READY:"; got != want {
		t.Errorf("index after unloading a = %q, want %q", got, want)
	}
	if got, want := index(t, c, true), "b:1:READY:"; got != want {
		t.Errorf("ready index after unloading a = %q, want %q", got, want)
	}
	modelCalls(t, c, "a", "", codes.NotFound, "Request for unknown model: 'a' has no available versions")
	modelCalls(t, c, "a", "1", codes.Unavailable, "Request for unknown model: 'a' version 1 is not at ready state")
	if err := infer("b"); err != nil {
		t.Errorf("ModelInfer(b) after unloading a = %v", err)
	}

	// The Go methods do the same.
	if err := srv.Load("a"); err != nil {
		t.Fatalf("Load(a) = %v", err)
	}
	if err := infer("a"); err != nil {
		t.Errorf("ModelInfer(a) after Load = %v", err)
	}
	if err := srv.Unload("b"); err != nil {
		t.Fatalf("Unload(b) = %v", err)
	}
	if got, want := index(t, c, true), "a:1:READY:"; got != want {
		t.Errorf("ready index after Unload(b) = %q, want %q", got, want)
	}
	wantCode(t, "ModelInfer(b) after Unload", infer("b"), codes.NotFound, "'b' has no available versions")

	// Names not in the repository.
	const failedPoll = "failed to load 'nope', failed to poll from model repository"
	_, err := c.RepositoryModelLoad(ctx, &tritonstubs.RepositoryModelLoadRequest{ModelName: "nope"})
	wantCode(t, "RepositoryModelLoad(nope)", err, codes.Internal, failedPoll)
	wantCode(t, "Load(nope)", srv.Load("nope"), codes.Internal, failedPoll)
	if _, err := c.RepositoryModelUnload(ctx, &tritonstubs.RepositoryModelUnloadRequest{ModelName: "nope"}); err != nil {
		t.Errorf("RepositoryModelUnload(nope) = %v, want OK as Triton answers", err)
	}
	if err := srv.Unload("nope"); err == nil || !strings.Contains(err.Error(), "no such model") {
		t.Errorf("Unload(nope) = %v, want no such model", err)
	}
	_, err = c.RepositoryModelLoad(ctx, &tritonstubs.RepositoryModelLoadRequest{ModelName: "a",
		Parameters: map[string]*tritonstubs.ModelRepositoryParameter{"config": {}}})
	wantCode(t, "RepositoryModelLoad(a, config)", err, codes.Unimplemented, "not supported")
}

func TestIndexWhileNotReady(t *testing.T) {
	srv := tritontest.Start(t, fakeModel{}, tritontest.WithParameters(map[string]string{"hf_model_id": "x/y"}))
	c := tritonstubs.NewGRPCInferenceServiceClient(dial(t, srv.Addr()))
	srv.SetFault(tritontest.NotReady)
	if got, want := index(t, c, false), "embed:1:LOADING:"; got != want {
		t.Errorf("index while not ready = %q, want %q", got, want)
	}
	if got := index(t, c, true); got != "" {
		t.Errorf("ready index while not ready = %q, want none", got)
	}
	srv.SetFault(tritontest.NoFault)
	if got, want := index(t, c, true), "embed:1:READY:"; got != want {
		t.Errorf("ready index = %q, want %q", got, want)
	}
	resp, err := c.ModelConfig(context.Background(), &tritonstubs.ModelConfigRequest{Name: "embed"})
	if err != nil || resp.GetConfig().GetParameters()["hf_model_id"].GetStringValue() != "x/y" {
		t.Errorf("ModelConfig() = %v, %v; want parameter hf_model_id x/y", resp, err)
	}
}

func TestNewMultiErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts []tritontest.Option
		want string
	}{
		{"NoModel", nil, "no model"},
		{"Twice", []tritontest.Option{tritontest.WithModel("a", fakeModel{}), tritontest.WithModel("a", pooled{hidden: 1})}, `"a" added twice`},
		{"NoName", []tritontest.Option{tritontest.WithModel("", fakeModel{})}, "no name"},
		{"Nil", []tritontest.Option{tritontest.WithModel("a", nil)}, `"a" is nil`},
		{"NoHidden", []tritontest.Option{tritontest.WithModel("a", pooled{})}, "hidden size 0"},
		{"BatchSize", []tritontest.Option{tritontest.WithModel("a", fakeModel{}, tritontest.ModelMaxBatchSize(-1))}, "max_batch_size -1"},
		{"WithName", []tritontest.Option{tritontest.WithModel("a", fakeModel{}), tritontest.WithName("b")}, "describe New's model"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tritontest.NewMulti(tt.opts...); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("NewMulti() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	if _, err := tritontest.New(fakeModel{}, tritontest.WithModel("embed", pooled{hidden: 1})); err == nil {
		t.Error("New() with WithModel of the same name = nil, want an error")
	}
}
