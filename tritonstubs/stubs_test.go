package tritonstubs_test

import (
	"bytes"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/embedgate/embedgate/tritonstubs"
)

// TestGeneratedCodeIsFresh regenerates the Go code into a temp dir with
// scripts/gen-proto and fails if the committed files differ: someone edited a
// .proto without running make proto, or edited generated code by hand.
func TestGeneratedCodeIsFresh(t *testing.T) {
	if _, err := exec.LookPath("protoc"); err != nil {
		// CI must check freshness; a laptop without protoc may skip it.
		if os.Getenv("CI") == "true" {
			t.Fatalf("protoc not found with CI=true: install protobuf-compiler: %v", err)
		}
		t.Skipf("protoc not found (set CI=true to make this a failure): %v", err)
	}
	out := t.TempDir()
	cmd := exec.Command("bash", filepath.Join("..", "scripts", "gen-proto"), out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/gen-proto: %v\n%s", err, b)
	}

	committed := generatedFiles(t, ".")
	fresh := generatedFiles(t, out)
	if !slices.Equal(committed, fresh) {
		t.Fatalf("generated files = %v, want %v (run make proto)", committed, fresh)
	}
	for _, name := range fresh {
		got := readGenerated(t, name)
		want := readGenerated(t, filepath.Join(out, name))
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run make proto and commit the result", name)
		}
	}
}

// generatedFiles lists the *.pb.go files of dir by base name, sorted.
func generatedFiles(t *testing.T, dir string) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.pb.go"))
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, len(paths))
	for i, p := range paths {
		names[i] = filepath.Base(p)
	}
	slices.Sort(names)
	return names
}

// readGenerated reads a generated file without its protoc version line:
// that line names the protoc that happened to run, not a difference in the
// code, so a committer's protoc and CI's may differ in patch level.
func readGenerated(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var keep []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "// \tprotoc ") || strings.HasPrefix(line, "// - protoc ") {
			continue
		}
		keep = append(keep, line)
	}
	return []byte(strings.Join(keep, "\n"))
}

// field is one decoded protobuf field: a varint/fixed value or bytes.
type field struct {
	num protowire.Number
	typ protowire.Type
	v   uint64
	b   []byte
}

// decode splits b into its top-level fields with protowire alone, so the
// checks below compare against triton-protocol.md's numbers, not against
// our generated code's idea of them.
func decode(t *testing.T, b []byte) []field {
	t.Helper()
	var fs []field
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			t.Fatalf("bad tag: %v", protowire.ParseError(n))
		}
		b = b[n:]
		f := field{num: num, typ: typ}
		switch typ {
		case protowire.VarintType:
			f.v, n = protowire.ConsumeVarint(b)
		case protowire.Fixed64Type:
			f.v, n = protowire.ConsumeFixed64(b)
		case protowire.Fixed32Type:
			var v uint32
			v, n = protowire.ConsumeFixed32(b)
			f.v = uint64(v)
		case protowire.BytesType:
			f.b, n = protowire.ConsumeBytes(b)
		default:
			t.Fatalf("field %d: unexpected wire type %d", num, typ)
		}
		if n < 0 {
			t.Fatalf("field %d: %v", num, protowire.ParseError(n))
		}
		b = b[n:]
		fs = append(fs, f)
	}
	return fs
}

// one returns the only field numbered num, failing if there are 0 or more.
func one(t *testing.T, fs []field, num protowire.Number, typ protowire.Type) field {
	t.Helper()
	var found []field
	for _, f := range fs {
		if f.num == num {
			found = append(found, f)
		}
	}
	if len(found) != 1 {
		t.Fatalf("field %d occurs %d times, want 1 (fields: %+v)", num, len(found), fs)
	}
	if found[0].typ != typ {
		t.Fatalf("field %d wire type = %d, want %d", num, found[0].typ, typ)
	}
	return found[0]
}

func wantString(t *testing.T, fs []field, num protowire.Number, want string) {
	t.Helper()
	if got := string(one(t, fs, num, protowire.BytesType).b); got != want {
		t.Errorf("field %d = %q, want %q", num, got, want)
	}
}

// packedInt64s decodes a packed repeated int64 (proto3's default encoding).
func packedInt64s(t *testing.T, b []byte) []int64 {
	t.Helper()
	var out []int64
	for len(b) > 0 {
		v, n := protowire.ConsumeVarint(b)
		if n < 0 {
			t.Fatalf("packed int64: %v", protowire.ParseError(n))
		}
		out = append(out, int64(v))
		b = b[n:]
	}
	return out
}

// TestModelInferRequestWire marshals a request as the gateway will and reads
// it back by field number, as Triton's C++ parser does.
func TestModelInferRequestWire(t *testing.T) {
	req := &tritonstubs.ModelInferRequest{
		ModelName:    "bge-small-en-v1.5",
		ModelVersion: "1",
		Id:           "req-42",
		Parameters: map[string]*tritonstubs.InferParameter{
			"timeout": {ParameterChoice: &tritonstubs.InferParameter_Int64Param{Int64Param: 5000}},
		},
		Inputs: []*tritonstubs.ModelInferRequest_InferInputTensor{{
			Name:     "input_ids",
			Datatype: "INT64",
			Shape:    []int64{2, 3},
			Parameters: map[string]*tritonstubs.InferParameter{
				"flag": {ParameterChoice: &tritonstubs.InferParameter_BoolParam{BoolParam: true}},
			},
		}},
		Outputs: []*tritonstubs.ModelInferRequest_InferRequestedOutputTensor{{
			Name: "last_hidden_state",
			Parameters: map[string]*tritonstubs.InferParameter{
				"classification": {ParameterChoice: &tritonstubs.InferParameter_StringParam{StringParam: "x"}},
			},
		}},
		RawInputContents: [][]byte{{1, 0, 0, 0, 0, 0, 0, 0}},
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	top := decode(t, b)
	wantString(t, top, 1, "bge-small-en-v1.5") // model_name
	wantString(t, top, 2, "1")                 // model_version
	wantString(t, top, 3, "req-42")            // id

	// parameters=4: map entry {key=1, value=2 InferParameter{int64_param=2}}.
	entry := decode(t, one(t, top, 4, protowire.BytesType).b)
	wantString(t, entry, 1, "timeout")
	param := decode(t, one(t, entry, 2, protowire.BytesType).b)
	if got := one(t, param, 2, protowire.VarintType).v; got != 5000 {
		t.Errorf("parameters[timeout].int64_param = %d, want 5000", got)
	}

	// inputs=5: InferInputTensor{name=1, datatype=2, shape=3, parameters=4}.
	in := decode(t, one(t, top, 5, protowire.BytesType).b)
	wantString(t, in, 1, "input_ids")
	wantString(t, in, 2, "INT64")
	if got := packedInt64s(t, one(t, in, 3, protowire.BytesType).b); !slices.Equal(got, []int64{2, 3}) {
		t.Errorf("inputs[0].shape = %v, want [2 3]", got)
	}
	inParam := decode(t, one(t, decode(t, one(t, in, 4, protowire.BytesType).b), 2, protowire.BytesType).b)
	if got := one(t, inParam, 1, protowire.VarintType).v; got != 1 {
		t.Errorf("inputs[0].parameters[flag].bool_param = %d, want 1", got)
	}

	// outputs=6: InferRequestedOutputTensor{name=1, parameters=2}.
	out := decode(t, one(t, top, 6, protowire.BytesType).b)
	wantString(t, out, 1, "last_hidden_state")
	outParam := decode(t, one(t, decode(t, one(t, out, 2, protowire.BytesType).b), 2, protowire.BytesType).b)
	wantString(t, outParam, 3, "x") // string_param=3

	// raw_input_contents=7.
	if got := one(t, top, 7, protowire.BytesType).b; !bytes.Equal(got, req.RawInputContents[0]) {
		t.Errorf("raw_input_contents[0] = %v, want %v", got, req.RawInputContents[0])
	}
}

// TestModelInferResponseWire builds a response byte by byte the way Triton
// sends one (data in raw_output_contents only) and checks our type reads it.
func TestModelInferResponseWire(t *testing.T) {
	raw := make([]byte, 0, 8)
	raw = protowire.AppendFixed32(raw, math.Float32bits(0.5))
	raw = protowire.AppendFixed32(raw, math.Float32bits(-1))

	var shape []byte
	for _, d := range []int64{1, 2} {
		shape = protowire.AppendVarint(shape, uint64(d))
	}
	var outTensor []byte
	outTensor = appendString(outTensor, 1, "sentence_embedding") // name
	outTensor = appendString(outTensor, 2, "FP32")               // datatype
	outTensor = protowire.AppendTag(outTensor, 3, protowire.BytesType)
	outTensor = protowire.AppendBytes(outTensor, shape) // shape, packed

	var param []byte
	param = protowire.AppendTag(param, 5, protowire.VarintType) // uint64_param
	param = protowire.AppendVarint(param, 7)
	var entry []byte
	entry = appendString(entry, 1, "triton_final_response")
	entry = protowire.AppendTag(entry, 2, protowire.BytesType)
	entry = protowire.AppendBytes(entry, param)

	var b []byte
	b = appendString(b, 1, "bge")    // model_name
	b = appendString(b, 2, "1")      // model_version
	b = appendString(b, 3, "req-42") // id
	b = protowire.AppendTag(b, 4, protowire.BytesType)
	b = protowire.AppendBytes(b, entry) // parameters
	b = protowire.AppendTag(b, 5, protowire.BytesType)
	b = protowire.AppendBytes(b, outTensor) // outputs
	b = protowire.AppendTag(b, 6, protowire.BytesType)
	b = protowire.AppendBytes(b, raw) // raw_output_contents

	var res tritonstubs.ModelInferResponse
	if err := proto.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if res.GetModelName() != "bge" || res.GetModelVersion() != "1" || res.GetId() != "req-42" {
		t.Errorf("header = %q %q %q, want bge 1 req-42", res.GetModelName(), res.GetModelVersion(), res.GetId())
	}
	if got := res.GetParameters()["triton_final_response"].GetUint64Param(); got != 7 {
		t.Errorf("parameters[triton_final_response].uint64_param = %d, want 7", got)
	}
	if len(res.GetOutputs()) != 1 {
		t.Fatalf("outputs = %d, want 1", len(res.GetOutputs()))
	}
	o := res.GetOutputs()[0]
	if o.GetName() != "sentence_embedding" || o.GetDatatype() != "FP32" || !slices.Equal(o.GetShape(), []int64{1, 2}) {
		t.Errorf("outputs[0] = %q %q %v, want sentence_embedding FP32 [1 2]", o.GetName(), o.GetDatatype(), o.GetShape())
	}
	if len(res.GetRawOutputContents()) != 1 || !bytes.Equal(res.GetRawOutputContents()[0], raw) {
		t.Errorf("raw_output_contents = %v, want [%v]", res.GetRawOutputContents(), raw)
	}
}

// TestStreamResponseWire: error_message=1, infer_response=2.
func TestStreamResponseWire(t *testing.T) {
	var inner []byte
	inner = appendString(inner, 3, "req-9")
	var b []byte
	b = appendString(b, 1, "[request id: req-9] Exceeds maximum queue size")
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendBytes(b, inner)
	var res tritonstubs.ModelStreamInferResponse
	if err := proto.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if res.GetErrorMessage() == "" || res.GetInferResponse().GetId() != "req-9" {
		t.Errorf("stream response = %v, want error_message set and infer_response.id req-9", &res)
	}
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

// TestRepositoryModelLoadWire: model_name=2, parameters=3 as map entries
// {key=1, value=2 ModelRepositoryParameter{string_param=3, bytes_param=4}},
// as Triton reads a load request with a config override.
func TestRepositoryModelLoadWire(t *testing.T) {
	req := &tritonstubs.RepositoryModelLoadRequest{
		ModelName: "e5",
		Parameters: map[string]*tritonstubs.ModelRepositoryParameter{
			"config": {ParameterChoice: &tritonstubs.ModelRepositoryParameter_StringParam{StringParam: "{}"}},
		},
	}
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	top := decode(t, b)
	wantString(t, top, 2, "e5")
	entry := decode(t, one(t, top, 3, protowire.BytesType).b)
	wantString(t, entry, 1, "config")
	wantString(t, decode(t, one(t, entry, 2, protowire.BytesType).b), 3, "{}")

	var file []byte
	file = protowire.AppendTag(file, 4, protowire.BytesType)
	file = protowire.AppendBytes(file, []byte{0, 1})
	var entry2 []byte
	entry2 = appendString(entry2, 1, "file:1/model.onnx")
	entry2 = protowire.AppendTag(entry2, 2, protowire.BytesType)
	entry2 = protowire.AppendBytes(entry2, file)
	var msg []byte
	msg = appendString(msg, 2, "e5")
	msg = protowire.AppendTag(msg, 3, protowire.BytesType)
	msg = protowire.AppendBytes(msg, entry2)
	var unload tritonstubs.RepositoryModelUnloadRequest
	if err := proto.Unmarshal(msg, &unload); err != nil {
		t.Fatal(err)
	}
	if got := unload.GetParameters()["file:1/model.onnx"].GetBytesParam(); unload.GetModelName() != "e5" || !bytes.Equal(got, []byte{0, 1}) {
		t.Errorf("unload request = %v, want model e5 with bytes_param [0 1]", &unload)
	}
}
