package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/embedgate/embedgate/gateway/backend/triton/tritontest"
	"github.com/embedgate/embedgate/gateway/tune"
)

// simulatedGPU's best batch is 16 rows: below it the fixed cost per batch
// dominates, above it the per-token cost rises steeply.
var simulatedGPU = tritontest.GPUTiming{PerBatch: 4 * time.Millisecond, PerToken: 4 * time.Microsecond, BestRows: 16}

// runTuneCmd runs `embedgate tune args...` against srv; it returns stdout
// and the error.
func runTuneCmd(t *testing.T, srv *tritontest.Server, args ...string) (string, error) {
	t.Helper()
	env := tritonEnv(t, srv)
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), append([]string{"embedgate", "tune"}, args...), func(k string) string { return env[k] }, nil, &stdout, &stderr, nil)
	if err != nil {
		t.Logf("stderr: %s", stderr.String())
	}
	return stdout.String(), err
}

// TestTuneFindsTheOptimum: against the stand-in's simulated GPU, the
// recommended batch rows land within one step of its best batch size,
// the sweep stays within its budget by its own accounting, and --json
// decodes into the same recommendation the text shows.
func TestTuneFindsTheOptimum(t *testing.T) {
	t.Parallel()
	srv, _ := startTriton(t, tritontest.WithMaxBatchSize(64), tritontest.WithGPUTiming(simulatedGPU))
	const budget = 4 * time.Second
	out, err := runTuneCmd(t, srv, "--json", "--budget", budget.String(), "--rows=4,8,16,32,64", "--lengths", "32,64", "--inflight=1,2")
	if err != nil {
		t.Fatal(err)
	}
	var reports []tuneReport
	if err := json.Unmarshal([]byte(out), &reports); err != nil {
		t.Fatalf("--json output does not decode: %v\n%s", err, out)
	}
	if len(reports) != 1 {
		t.Fatalf("%d reports, want 1", len(reports))
	}
	r := reports[0]
	if n := len(r.Sweep.Points); n != 5*2*2 {
		t.Errorf("%d points measured, want 20", n)
	}
	if r.Sweep.Spent > budget || r.Sweep.Spent <= 0 {
		t.Errorf("the sweep spent %v of a %v budget", r.Sweep.Spent, budget)
	}
	rows, _ := r.Recommendation.Value(tune.MaxBatchRequests)
	if !slices.Contains([]int64{8, 16, 32}, rows) {
		t.Errorf("--max-batch-requests=%d, want within one step of the best 16; points %+v", rows, r.Sweep.Points)
	}
	if mbs, _ := r.Recommendation.Value(tune.MaxBatchSize); mbs != rows {
		t.Errorf("max_batch_size %d, want the gateway's rows %d", mbs, rows)
	}
	tokens, _ := r.Recommendation.Value(tune.MaxBatchTokens)
	if k := r.Recommendation.Knee; tokens != int64(k.Rows*k.Len) || k.TokensPerSec <= 0 || k.P50 <= 0 {
		t.Errorf("--max-batch-tokens=%d for knee %+v", tokens, k)
	}
	for _, name := range []string{tune.TritonMaxInflight, tune.MaxQueueDelay, tune.InstanceCount} {
		if _, ok := r.Recommendation.Value(name); !ok {
			t.Errorf("no %s recommended", name)
		}
	}
}

// TestTuneText: the text report names the knee and every setting with the
// figures behind it; a --texts file is the mix.
func TestTuneText(t *testing.T) {
	t.Parallel()
	srv, _ := startTriton(t, tritontest.WithGPUTiming(simulatedGPU))
	texts := filepath.Join(t.TempDir(), "texts.jsonl")
	if err := os.WriteFile(texts, []byte(`{"text":"a short query"}`+"\n\n"+`{"text":"`+strings.Repeat("a longer passage ", 10)+`"}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	repo := t.TempDir()
	if err := os.Mkdir(filepath.Join(repo, srv.Name()), 0o700); err != nil {
		t.Fatal(err)
	}
	pbtxt := `name: "` + srv.Name() + `"` + "\nmax_batch_size: 32\ndynamic_batching { max_queue_delay_microseconds: 100 }\ninstance_group [{ count: 3, kind: KIND_GPU }]\n"
	if err := os.WriteFile(filepath.Join(repo, srv.Name(), "config.pbtxt"), []byte(pbtxt), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runTuneCmd(t, srv, "--texts", texts, "--budget=1s", "--rows=2,4", "--lengths=16", "--inflight=1", "--model-repository", repo)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"knee: ", "--max-batch-tokens=", "--max-batch-requests=", "--triton-max-inflight=", "max_batch_size: ",
		"max_queue_delay_microseconds: ", "instance_group.count: ", "tokens/s", "TOKENS/S",
		"suggested " + filepath.Join(repo, srv.Name(), "config.pbtxt"), "- max_batch_size: 32", "-   max_queue_delay_microseconds: 100", "-   count: 3", "+   count: 1"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestTuneTritonFailsMidSweep: a Triton that starts failing ends the
// command with an error that says where, not a hang or a recommendation.
func TestTuneTritonFailsMidSweep(t *testing.T) {
	t.Parallel()
	srv, _ := startTriton(t, tritontest.WithGPUTiming(simulatedGPU))
	done := make(chan struct{})
	faulted := make(chan struct{})
	go func() { // the fault after the sweep's fifth batch
		defer close(faulted)
		for srv.InferCount() < 5 {
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
		srv.SetFault(tritontest.InternalError)
	}()
	defer func() { close(done); <-faulted }()
	out, err := runTuneCmd(t, srv, "--budget=2s", "--rows=1,2", "--lengths=16", "--inflight=1")
	if err == nil || !strings.Contains(err.Error(), "rows ") || !strings.Contains(err.Error(), "tune model") {
		t.Errorf("err = %v, want a failure naming the model and the point", err)
	}
	if out != "" {
		t.Errorf("printed a report despite the failure:\n%s", out)
	}
}

// TestTuneBadFlags: each bad flag is refused, by name, before any sweep.
func TestTuneBadFlags(t *testing.T) {
	t.Parallel()
	srv, _ := startTriton(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--rows=4,x"}, "--rows"},
		{[]string{"--lengths=0"}, "--lengths"},
		{[]string{"--inflight="}, "--inflight"},
		{[]string{"--budget=-1s"}, "--budget"},
		{[]string{"--budget=10ms"}, "too short"},
		{[]string{"--texts=/nonexistent/texts.jsonl"}, "--texts"},
		{[]string{"--no-such-flag"}, "no-such-flag"},
		{[]string{"--model-repository=/nonexistent"}, "--model-repository"},
	} {
		_, err := runTuneCmd(t, srv, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want one mentioning %q", tc.args, err, tc.want)
		}
	}
	if _, err := runTuneCmd(t, srv, "--help"); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help: err = %v", err)
	}
	if n := srv.InferCount(); n > 0 {
		t.Errorf("bad flags still sent %d batches", n)
	}
}
