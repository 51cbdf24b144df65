//go:build cgo

package triton_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/embedgate/embedgate/gateway/backend/triton"
)

// sentMetadata records the outgoing metadata of each call, by method, as
// the client hands it to gRPC (after its own interceptors).
type sentMetadata struct {
	mu       sync.Mutex
	byMethod map[string]metadata.MD
}

func (s *sentMetadata) option() grpc.DialOption {
	return grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoke grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		md, _ := metadata.FromOutgoingContext(ctx)
		s.mu.Lock()
		s.byMethod[method] = md
		s.mu.Unlock()
		return invoke(ctx, method, req, reply, cc, opts...)
	})
}

func (s *sentMetadata) get(method string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byMethod["/inference.GRPCInferenceService/"+method].Get(triton.RestrictedProtocolPrefix + "admin-key")
}

// TestMetadata: ClientOptions.Metadata goes with every call, among them
// discovery's RepositoryIndex, which Triton's
// --grpc-restricted-protocol=model-repository,...:admin-key=... refuses
// without it; a client without Metadata sends no such header.
func TestMetadata(t *testing.T) {
	t.Parallel()
	srv := twoModels(t)
	for _, tt := range []struct {
		name string
		md   map[string]string
		want []string
	}{
		{"with", map[string]string{triton.RestrictedProtocolPrefix + "admin-key": "s3cret"}, []string{"s3cret"}},
		{"without", nil, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sent := &sentMetadata{byMethod: map[string]metadata.MD{}}
			c := dial(t, srv, triton.ClientOptions{Metadata: tt.md, DialOptions: []grpc.DialOption{sent.option()}})
			if _, err := c.Index(context.Background()); err != nil {
				t.Fatalf("Index() = %v", err)
			}
			b := openOn(t, c, "sum")
			if _, err := b.Embed(context.Background(), sumBatch(3)); err != nil {
				t.Fatalf("Embed: %v", err)
			}
			for _, method := range []string{"RepositoryIndex", "ModelConfig", "ModelMetadata", "ModelReady", "ModelInfer"} {
				if got := sent.get(method); !slices.Equal(got, tt.want) {
					t.Errorf("%s sent %s = %q, want %q", method, triton.RestrictedProtocolPrefix+"admin-key", got, tt.want)
				}
			}
			// And Triton's side receives it.
			_, md := srv.LastInfer()
			if got := md.Get(triton.RestrictedProtocolPrefix + "admin-key"); !slices.Equal(got, tt.want) {
				t.Errorf("the stand-in received %q, want %q", got, tt.want)
			}
		})
	}
}
