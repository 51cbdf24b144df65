package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/embedgate/embedgate/gateway/backend/triton/tritontest"
	"github.com/embedgate/embedgate/gateway/internal/testenv"
)

// TestTritonWorstBatchAndKey: a discovered model's max_input_length
// parameter caps its inputs; at start the gateway logs, per Triton model,
// the most padded tokens one batch Triton merges from equal-shaped gateway
// batches can hold (max_batch_size x max input length), next to its own
// --max-batch-tokens; and it sends --triton-restricted-key with its calls
// as Triton's restricted-protocol header.
func TestTritonWorstBatchAndKey(t *testing.T) {
	t.Parallel()
	dir := testenv.TinyModel(t)
	srv := tritontest.StartMulti(t, tritontest.WithModel("m", runner(t, dir), tritontest.ModelMaxBatchSize(8),
		tritontest.ModelParameters(map[string]string{"hf_model_id": dir, "max_input_length": "64"})))
	env := catalogueEnv(t)
	env["TRITON_DISCOVER"], env["TRITON_URL"] = "true", srv.Addr()
	env["TRITON_RESTRICTED_KEY"] = "admin-key=s3cret"
	g := startGateway(t, env)

	const want = "model=m max_batch_size=8 max_input_length=64 worst_batch_tokens=512 max_batch_tokens=16384"
	var lines []string
	for line := range strings.SplitSeq(g.logs.String(), "\n") {
		if strings.Contains(line, `msg="triton worst-case batch"`) {
			lines = append(lines, line)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], want) {
		t.Errorf("worst-case batch log lines = %q, want one with %q", lines, want)
	}

	// The cap holds: 100 words are cut to 64 tokens, or refused.
	if r := g.post(t, "/embed", `{"inputs":"`+strings.Repeat("word ", 100)+`","truncate":false}`); r.status != 413 && r.status != 422 {
		t.Errorf("an input over max_input_length = %d %s, want it refused", r.status, r.body)
	}
	if r := g.post(t, "/embed", `{"inputs":"hello"}`, "Cache-Control", "no-store"); r.status != 200 {
		t.Fatalf("/embed = %d %s", r.status, r.body)
	}
	_, md := srv.LastInfer()
	if got := md.Get("triton-grpc-protocol-admin-key"); !slices.Equal(got, []string{"s3cret"}) {
		t.Errorf("Triton received triton-grpc-protocol-admin-key = %q, want [s3cret]", got)
	}
}
