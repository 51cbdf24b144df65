package triton

import (
	"context"
	"maps"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// RestrictedProtocolPrefix is what Triton's gRPC frontend puts before the
// key of --grpc-restricted-protocol=<protocols>:<key>=<value>: a call of a
// restricted protocol must carry the header "triton-grpc-protocol-<key>"
// with <value>, or it fails UNAVAILABLE "This protocol is restricted,
// expecting header 'triton-grpc-protocol-<key>'" (server r25.06,
// src/grpc/grpc_server.h kRestrictedProtocolHeaderTemplate;
// src/grpc/grpc_server.cc CommonCallData::ExecutePrecondition). Of the calls
// the gateway makes, RepositoryIndex (discovery) is in the
// model-repository protocol, ModelConfig in model-config, ModelMetadata in
// metadata, ServerReady, ModelReady and the health check in health, and
// ModelInfer in inference.
const RestrictedProtocolPrefix = "triton-grpc-protocol-"

// metadataOptions is the dial option that adds md (ClientOptions.Metadata)
// to every call the client makes, all of them unary; none without md.
func metadataOptions(md map[string]string) []grpc.DialOption {
	if len(md) == 0 {
		return nil
	}
	kv := make([]string, 0, 2*len(md))
	for _, k := range slices.Sorted(maps.Keys(md)) {
		kv = append(kv, k, md[k])
	}
	add := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoke grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		return invoke(metadata.AppendToOutgoingContext(ctx, kv...), method, req, reply, cc, opts...)
	}
	return []grpc.DialOption{grpc.WithChainUnaryInterceptor(add)}
}
