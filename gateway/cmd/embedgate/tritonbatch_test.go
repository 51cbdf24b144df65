package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/embedgate/embedgate/gateway/backend/triton/tritontest"
	"github.com/embedgate/embedgate/gateway/hfmodel"
)

// TestTritonWorstBatchAndKey: at start the gateway logs, per Triton model,
// the most padded tokens one batch Triton merges from equal-shaped gateway
// batches can hold (max_batch_size x max input length), next to its own
// --max-batch-tokens; and it sends --triton-restricted-key with its calls
// as Triton's restricted-protocol header.
func TestTritonWorstBatchAndKey(t *testing.T) {
	t.Parallel()
	srv, dir := startTriton(t, tritontest.WithMaxBatchSize(8))
	env := tritonEnv(t, srv)
	env["TRITON_RESTRICTED_KEY"] = "admin-key=s3cret"
	g := startGateway(t, env)

	m, err := hfmodel.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("max_batch_size=8 max_input_length=%d worst_batch_tokens=%d max_batch_tokens=16384", m.MaxInputLength, 8*m.MaxInputLength)
	var lines []string
	for line := range strings.SplitSeq(g.logs.String(), "\n") {
		if strings.Contains(line, `msg="triton worst-case batch"`) {
			lines = append(lines, line)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], want) {
		t.Errorf("worst-case batch log lines = %q, want one with %q", lines, want)
	}

	if r := g.post(t, "/embed", `{"inputs":"hello"}`, "Cache-Control", "no-store"); r.status != 200 {
		t.Fatalf("/embed = %d %s", r.status, r.body)
	}
	_, md := srv.LastInfer()
	if got := md.Get("triton-grpc-protocol-admin-key"); !slices.Equal(got, []string{"s3cret"}) {
		t.Errorf("Triton received triton-grpc-protocol-admin-key = %q, want [s3cret]", got)
	}
}
