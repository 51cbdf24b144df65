package tritonstubs_test

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/embedgate/embedgate/tritonstubs"
)

// protocol returns triton-protocol.md's field tables, transcribed a second time
// and independently of the .proto files: each field as name=number, then
// "rep" for repeated, then its type. Every message and field of our .proto
// files must be listed here and match, so a typo in either shows up.
func protocol() map[string]string {
	return map[string]string{
		// inference.proto
		"ServerLiveRequest":                            "",
		"ServerLiveResponse":                           "live=1 bool",
		"ServerReadyRequest":                           "",
		"ServerReadyResponse":                          "ready=1 bool",
		"ModelReadyRequest":                            "name=1 string, version=2 string",
		"ModelReadyResponse":                           "ready=1 bool",
		"ServerMetadataRequest":                        "",
		"ServerMetadataResponse":                       "name=1 string, version=2 string, extensions=3 rep string",
		"ModelMetadataRequest":                         "name=1 string, version=2 string",
		"ModelMetadataResponse":                        "name=1 string, versions=2 rep string, platform=3 string, inputs=4 rep message, outputs=5 rep message",
		"ModelMetadataResponse.TensorMetadata":         "name=1 string, datatype=2 string, shape=3 rep int64",
		"InferParameter":                               "bool_param=1 bool, int64_param=2 int64, string_param=3 string, double_param=4 double, uint64_param=5 uint64",
		"InferTensorContents":                          "bool_contents=1 rep bool, int_contents=2 rep int32, int64_contents=3 rep int64, uint_contents=4 rep uint32, uint64_contents=5 rep uint64, fp32_contents=6 rep float, fp64_contents=7 rep double, bytes_contents=8 rep bytes",
		"ModelInferRequest":                            "model_name=1 string, model_version=2 string, id=3 string, parameters=4 map<string,message>, inputs=5 rep message, outputs=6 rep message, raw_input_contents=7 rep bytes",
		"ModelInferRequest.InferInputTensor":           "name=1 string, datatype=2 string, shape=3 rep int64, parameters=4 map<string,message>, contents=5 message",
		"ModelInferRequest.InferRequestedOutputTensor": "name=1 string, parameters=2 map<string,message>",
		"ModelInferResponse":                           "model_name=1 string, model_version=2 string, id=3 string, parameters=4 map<string,message>, outputs=5 rep message, raw_output_contents=6 rep bytes",
		"ModelInferResponse.InferOutputTensor":         "name=1 string, datatype=2 string, shape=3 rep int64, parameters=4 map<string,message>, contents=5 message",
		"ModelStreamInferResponse":                     "error_message=1 string, infer_response=2 message",
		"ModelConfigRequest":                           "name=1 string, version=2 string",
		"ModelConfigResponse":                          "config=1 message",
		"ModelStatisticsRequest":                       "name=1 string, version=2 string",
		"StatisticDuration":                            "count=1 uint64, ns=2 uint64",
		"InferStatistics":                              "success=1 message, fail=2 message, queue=3 message, compute_input=4 message, compute_infer=5 message, compute_output=6 message, cache_hit=7 message, cache_miss=8 message",
		"InferResponseStatistics":                      "compute_infer=1 message, compute_output=2 message, success=3 message, fail=4 message, empty_response=5 message, cancel=6 message",
		"InferBatchStatistics":                         "batch_size=1 uint64, compute_input=2 message, compute_infer=3 message, compute_output=4 message",
		"MemoryUsage":                                  "type=1 string, id=2 int64, byte_size=3 uint64",
		"ModelStatistics":                              "name=1 string, version=2 string, last_inference=3 uint64, inference_count=4 uint64, execution_count=5 uint64, inference_stats=6 message, batch_stats=7 rep message, memory_usage=8 rep message, response_stats=9 map<string,message>",
		"ModelStatisticsResponse":                      "model_stats=1 rep message",
		"RepositoryIndexRequest":                       "repository_name=1 string, ready=2 bool",
		"RepositoryIndexResponse":                      "models=1 rep message",
		"RepositoryIndexResponse.ModelIndex":           "name=1 string, version=2 string, state=3 string, reason=4 string",
		"ModelRepositoryParameter":                     "bool_param=1 bool, int64_param=2 int64, string_param=3 string, bytes_param=4 bytes",
		"RepositoryModelLoadRequest":                   "repository_name=1 string, model_name=2 string, parameters=3 map<string,message>",
		"RepositoryModelLoadResponse":                  "",
		"RepositoryModelUnloadRequest":                 "repository_name=1 string, model_name=2 string, parameters=3 map<string,message>",
		"RepositoryModelUnloadResponse":                "",

		// model_config.proto
		"ModelConfig":                                               "name=1 string, platform=2 string, backend=17 string, runtime=25 string, version_policy=3 message, max_batch_size=4 int32, input=5 rep message, output=6 rep message, optimization=12 message, dynamic_batching=11 message, instance_group=7 rep message, default_model_filename=8 string, cc_model_filenames=9 map<string,string>, metric_tags=10 map<string,string>, parameters=14 map<string,message>, model_warmup=16 rep message, model_transaction_policy=19 message, response_cache=24 message",
		"ModelVersionPolicy":                                        "latest=1 message, all=2 message, specific=3 message",
		"ModelVersionPolicy.Latest":                                 "num_versions=1 uint32",
		"ModelVersionPolicy.All":                                    "",
		"ModelVersionPolicy.Specific":                               "versions=1 rep int64",
		"ModelTensorReshape":                                        "shape=1 rep int64",
		"ModelInput":                                                "name=1 string, data_type=2 enum, format=3 enum, dims=4 rep int64, reshape=5 message, is_shape_tensor=6 bool, allow_ragged_batch=7 bool, optional=8 bool, is_non_linear_format_io=9 bool",
		"ModelOutput":                                               "name=1 string, data_type=2 enum, dims=3 rep int64, reshape=5 message, label_filename=4 string, is_shape_tensor=6 bool, is_non_linear_format_io=7 bool",
		"ModelInstanceGroup":                                        "name=1 string, kind=4 enum, count=2 int32, gpus=3 rep int32, profile=5 rep string, passive=7 bool, host_policy=9 string",
		"ModelDynamicBatching":                                      "preferred_batch_size=1 rep int32, max_queue_delay_microseconds=2 uint64, preserve_ordering=3 bool, priority_levels=4 uint64, default_priority_level=5 uint64, default_queue_policy=6 message, priority_queue_policy=7 map<uint64,message>",
		"ModelQueuePolicy":                                          "timeout_action=1 enum, default_timeout_microseconds=2 uint64, allow_timeout_override=3 bool, max_queue_size=4 uint32",
		"ModelOptimizationPolicy":                                   "graph=1 message, priority=2 enum, cuda=3 message, execution_accelerators=4 message, input_pinned_memory=5 message, output_pinned_memory=6 message, gather_kernel_buffer_threshold=7 uint32, eager_batching=8 bool",
		"ModelOptimizationPolicy.Graph":                             "level=1 int32",
		"ModelOptimizationPolicy.Cuda":                              "graphs=1 bool, busy_wait_events=2 bool, graph_spec=3 rep message, output_copy_stream=4 bool",
		"ModelOptimizationPolicy.Cuda.GraphSpec":                    "batch_size=1 int32, input=2 map<string,message>, graph_lower_bound=3 message",
		"ModelOptimizationPolicy.Cuda.GraphSpec.Shape":              "dim=1 rep int64",
		"ModelOptimizationPolicy.Cuda.GraphSpec.LowerBound":         "batch_size=1 int32, input=2 map<string,message>",
		"ModelOptimizationPolicy.ExecutionAccelerators":             "gpu_execution_accelerator=1 rep message, cpu_execution_accelerator=2 rep message",
		"ModelOptimizationPolicy.ExecutionAccelerators.Accelerator": "name=1 string, parameters=2 map<string,string>",
		"ModelOptimizationPolicy.PinnedMemoryBuffer":                "enable=1 bool",
		"ModelParameter":                                            "string_value=1 string",
		"ModelWarmup":                                               "name=1 string, batch_size=2 uint32, inputs=3 map<string,message>, count=4 uint32",
		"ModelWarmup.Input":                                         "data_type=1 enum, dims=2 rep int64, zero_data=3 bool, random_data=4 bool, input_data_file=5 string",
		"ModelTransactionPolicy":                                    "decoupled=1 bool",
		"ModelResponseCache":                                        "enable=1 bool",
	}
}

// enums returns the complete enums of kept fields: config.pbtxt writes enum
// values by name, so a missing one fails parsing.
func enums() map[string]string {
	return map[string]string{
		"DataType":                              "TYPE_INVALID=0 TYPE_BOOL=1 TYPE_UINT8=2 TYPE_UINT16=3 TYPE_UINT32=4 TYPE_UINT64=5 TYPE_INT8=6 TYPE_INT16=7 TYPE_INT32=8 TYPE_INT64=9 TYPE_FP16=10 TYPE_FP32=11 TYPE_FP64=12 TYPE_STRING=13 TYPE_BF16=14",
		"ModelInput.Format":                     "FORMAT_NONE=0 FORMAT_NHWC=1 FORMAT_NCHW=2",
		"ModelInstanceGroup.Kind":               "KIND_AUTO=0 KIND_GPU=1 KIND_CPU=2 KIND_MODEL=3",
		"ModelQueuePolicy.TimeoutAction":        "REJECT=0 DELAY=1",
		"ModelOptimizationPolicy.ModelPriority": "PRIORITY_DEFAULT=0 PRIORITY_MAX=1 PRIORITY_MIN=2",
	}
}

// describe renders a field the way the protocol table writes it.
func describe(fd protoreflect.FieldDescriptor) string {
	kind := func(fd protoreflect.FieldDescriptor) string {
		switch fd.Kind() {
		case protoreflect.MessageKind, protoreflect.GroupKind:
			return "message"
		case protoreflect.EnumKind:
			return "enum"
		default:
			return fd.Kind().String()
		}
	}
	s := fmt.Sprintf("%s=%d ", fd.Name(), fd.Number())
	switch {
	case fd.IsMap():
		return s + fmt.Sprintf("map<%s,%s>", kind(fd.MapKey()), kind(fd.MapValue()))
	case fd.IsList():
		return s + "rep " + kind(fd)
	default:
		return s + kind(fd)
	}
}

func TestFieldNumbersMatchProtocol(t *testing.T) {
	protocol := protocol()
	seen := map[string]bool{}
	files := []protoreflect.FileDescriptor{
		tritonstubs.File_inference_proto,
		tritonstubs.File_model_config_proto,
	}
	var walk func(protoreflect.MessageDescriptors)
	walk = func(msgs protoreflect.MessageDescriptors) {
		for i := range msgs.Len() {
			md := msgs.Get(i)
			if md.IsMapEntry() {
				continue
			}
			name := strings.TrimPrefix(string(md.FullName()), "inference.")
			seen[name] = true
			spec, ok := protocol[name]
			if !ok {
				t.Errorf("message %s is not in the protocol table", name)
				continue
			}
			var got []string
			for j := range md.Fields().Len() {
				got = append(got, describe(md.Fields().Get(j)))
			}
			var want []string
			if spec != "" {
				want = strings.Split(spec, ", ")
			}
			sort.Strings(got)
			sort.Strings(want)
			if strings.Join(got, ", ") != strings.Join(want, ", ") {
				t.Errorf("%s fields =\n  %s\nwant\n  %s", name, strings.Join(got, ", "), strings.Join(want, ", "))
			}
			walk(md.Messages())
		}
	}
	for _, fd := range files {
		if fd.Package() != "inference" {
			t.Errorf("%s: package %q, want inference", fd.Path(), fd.Package())
		}
		walk(fd.Messages())
	}
	for name := range protocol {
		if !seen[name] {
			t.Errorf("protocol message %s is missing from the .proto files", name)
		}
	}
}

func TestEnumsAreComplete(t *testing.T) {
	for name, spec := range enums() {
		d, err := findEnum("inference." + name)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		var got []string
		for i := range d.Values().Len() {
			v := d.Values().Get(i)
			got = append(got, string(v.Name())+"="+strconv.Itoa(int(v.Number())))
		}
		if g := strings.Join(got, " "); g != spec {
			t.Errorf("enum %s = %s, want %s", name, g, spec)
		}
	}
}

func findEnum(full string) (protoreflect.EnumDescriptor, error) {
	for _, fd := range []protoreflect.FileDescriptor{tritonstubs.File_inference_proto, tritonstubs.File_model_config_proto} {
		var search func(protoreflect.EnumDescriptors, protoreflect.MessageDescriptors) protoreflect.EnumDescriptor
		search = func(es protoreflect.EnumDescriptors, ms protoreflect.MessageDescriptors) protoreflect.EnumDescriptor {
			if e := es.ByName(protoreflect.FullName(full).Name()); e != nil && string(e.FullName()) == full {
				return e
			}
			for i := range ms.Len() {
				if e := search(ms.Get(i).Enums(), ms.Get(i).Messages()); e != nil {
					return e
				}
			}
			return nil
		}
		if e := search(fd.Enums(), fd.Messages()); e != nil {
			return e, nil
		}
	}
	return nil, fmt.Errorf("enum %s not found", full)
}

// TestService checks the names Triton routes on: /inference.GRPCInferenceService/<Method>,
// with ModelStreamInfer a bidirectional stream.
func TestService(t *testing.T) {
	sd := tritonstubs.GRPCInferenceService_ServiceDesc
	if sd.ServiceName != "inference.GRPCInferenceService" {
		t.Errorf("ServiceName = %q, want inference.GRPCInferenceService", sd.ServiceName)
	}
	var unary []string
	for _, m := range sd.Methods {
		unary = append(unary, m.MethodName)
	}
	sort.Strings(unary)
	want := "ModelConfig ModelInfer ModelMetadata ModelReady ModelStatistics RepositoryIndex RepositoryModelLoad RepositoryModelUnload ServerLive ServerMetadata ServerReady"
	if got := strings.Join(unary, " "); got != want {
		t.Errorf("unary methods = %s, want %s", got, want)
	}
	if len(sd.Streams) != 1 || sd.Streams[0].StreamName != "ModelStreamInfer" ||
		!sd.Streams[0].ClientStreams || !sd.Streams[0].ServerStreams {
		t.Errorf("streams = %+v, want one bidi ModelStreamInfer", sd.Streams)
	}
	if tritonstubs.GRPCInferenceService_ModelInfer_FullMethodName != "/inference.GRPCInferenceService/ModelInfer" {
		t.Errorf("ModelInfer full name = %q", tritonstubs.GRPCInferenceService_ModelInfer_FullMethodName)
	}
	svc := tritonstubs.File_inference_proto.Services().ByName("GRPCInferenceService")
	for _, m := range []struct{ method, in, out string }{
		{"ModelInfer", "ModelInferRequest", "ModelInferResponse"},
		{"ModelStreamInfer", "ModelInferRequest", "ModelStreamInferResponse"},
		{"ModelConfig", "ModelConfigRequest", "ModelConfigResponse"},
		{"ModelMetadata", "ModelMetadataRequest", "ModelMetadataResponse"},
		{"RepositoryIndex", "RepositoryIndexRequest", "RepositoryIndexResponse"},
		{"RepositoryModelLoad", "RepositoryModelLoadRequest", "RepositoryModelLoadResponse"},
		{"RepositoryModelUnload", "RepositoryModelUnloadRequest", "RepositoryModelUnloadResponse"},
	} {
		md := svc.Methods().ByName(protoreflect.Name(m.method))
		if md == nil {
			t.Errorf("method %s missing", m.method)
			continue
		}
		if string(md.Input().Name()) != m.in || string(md.Output().Name()) != m.out {
			t.Errorf("%s: %s → %s, want %s → %s", m.method, md.Input().Name(), md.Output().Name(), m.in, m.out)
		}
	}
}
