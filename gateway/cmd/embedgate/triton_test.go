package main

import (
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/embedgate/embedgate/gateway/backend/onnx"
	"github.com/embedgate/embedgate/gateway/backend/triton/tritontest"
	"github.com/embedgate/embedgate/gateway/internal/testenv"
)

// startTriton serves the tiny model through the in-process Triton
// stand-in, which runs it on ONNX Runtime as Triton's onnxruntime backend
// would.
func startTriton(t *testing.T, opts ...tritontest.Option) (*tritontest.Server, string) {
	t.Helper()
	return startTritonOn(t, "127.0.0.1:0", opts...)
}

// startTritonOn is startTriton listening on addr, e.g. 127.0.0.2:PORT: a
// replica behind a DNS name, on that name's port.
func startTritonOn(t *testing.T, addr string, opts ...tritontest.Option) (*tritontest.Server, string) {
	t.Helper()
	dir := testenv.TinyModel(t)
	be, err := onnx.Open(onnx.Options{LibraryPath: testenv.ORTLib(t), ModelPath: filepath.Join(dir, "onnx", "model.onnx"), IntraOpThreads: 1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = be.Close() })
	return tritontest.StartOn(t, addr, be, opts...), dir
}

func tritonEnv(t *testing.T, srv *tritontest.Server) map[string]string {
	env := baseEnv(t)
	env["BACKEND"], env["TRITON_URL"], env["TRITON_MODEL"] = "triton", srv.Addr(), srv.Name()
	return env
}

func TestTritonMatchesONNX(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts []tritontest.Option
	}{{"int64", nil}, {"int32 tensorrt-style", []tritontest.Option{tritontest.WithInt32Inputs()}}} {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := startTriton(t, tc.opts...)
			viaTriton := startGateway(t, tritonEnv(t, srv))
			viaONNX := startGateway(t, baseEnv(t))
			calibration := srv.InferCount() // the gateway measured Triton at start
			body := `{"inputs":["The quick brown fox","short","` + strings.Repeat("a longer passage ", 30) + `"]}`
			a := decode[[][]float32](t, viaTriton.post(t, "/embed", body))
			b := decode[[][]float32](t, viaONNX.post(t, "/embed", body))
			for i := range b {
				assertClose(t, "triton vs onnx", a[i], b[i], 1e-6)
			}
			if srv.InferCount() == calibration {
				t.Error("the Triton stand-in saw no inference")
			}
			// One plain address is a plain backend, as before replica
			// lists: no balancer, no per-replica series.
			if metrics := string(viaTriton.get(t, "/metrics").body); strings.Contains(metrics, "embedgate_triton_replica") {
				t.Errorf("a single Triton address has per-replica series:\n%s", grepLines(metrics, "embedgate_triton_replica"))
			}
		})
	}
}

func TestTritonFaults(t *testing.T) {
	// Not parallel: a healthy request must finish within its 400ms deadline.
	srv, _ := startTriton(t)
	env := tritonEnv(t, srv)
	env["REQUEST_TIMEOUT"] = "400ms"
	g := startGateway(t, env)
	// no-store: every request must reach the backend, which a cached
	// vector would spare it.
	embed := func() response { return g.post(t, "/embed", `{"inputs":"hello"}`, "Cache-Control", "no-store") }
	tests := []struct {
		name      string
		fault     tritontest.Fault
		status    int
		errorType string
	}{
		{"queue full", tritontest.QueueFull, 429, "Overloaded"},
		{"invalid argument", tritontest.InvalidArgument, 500, "Backend"},
		{"internal", tritontest.InternalError, 500, "Backend"},
		{"not ready", tritontest.NotReady, 503, "Unhealthy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv.SetFault(tt.fault)
			defer srv.SetFault(tritontest.NoFault)
			r := embed()
			if r.status != tt.status || decode[teiError](t, r).ErrorType != tt.errorType {
				t.Errorf("status %d %s, want %d %s", r.status, r.body, tt.status, tt.errorType)
			}
			if tt.status == 429 && r.header.Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
		})
	}
	waitStatus(t, g, "/ready", 200)
	if r := embed(); r.status != 200 {
		t.Fatalf("after faults: %d %s", r.status, r.body)
	}

	t.Run("stall", func(t *testing.T) {
		srv.SetDelay(5 * time.Second)
		start := time.Now()
		r := embed()
		if r.status != 504 {
			t.Errorf("stalled backend: %d %s, want 504", r.status, r.body)
		}
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("504 took %v, want about the 400ms deadline", took)
		}
		waitStatus(t, g, "/ready", 503)
		srv.SetDelay(0)
		waitStatus(t, g, "/ready", 200)
		if r := embed(); r.status != 200 {
			t.Errorf("after the stall: %d %s", r.status, r.body)
		}
	})
	t.Run("restart", func(t *testing.T) {
		srv.Stop()
		if r := embed(); r.status != 503 {
			t.Errorf("Triton down: %d %s, want 503", r.status, r.body)
		}
		waitStatus(t, g, "/health", 503)
		if err := srv.Restart(); err != nil {
			t.Fatal(err)
		}
		waitStatus(t, g, "/ready", 200)
		waitStatus(t, g, "/health", 200)
		if r := embed(); r.status != 200 {
			t.Errorf("after restart: %d %s", r.status, r.body)
		}
	})
}

// waitStatus polls path until it answers status, for up to 15s.
func waitStatus(t *testing.T, g *instance, path string, status int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	last := 0
	for time.Now().Before(deadline) {
		if last = g.get(t, path).status; last == status {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s stayed %d, want %d", path, last, status)
}

// A --triton-url list: batches reach every replica; one stopped, requests
// still succeed on the other and /ready stays up; restarted, it serves again.
func TestTritonReplicas(t *testing.T) {
	a, _ := startTriton(t)
	b, _ := startTriton(t)
	env := tritonEnv(t, a)
	env["TRITON_URL"] = a.Addr() + "," + b.Addr()
	g := startGateway(t, env)
	embed := func() response { return g.post(t, "/embed", `{"inputs":"hello"}`, "Cache-Control", "no-store") }
	a0, b0 := a.InferCount(), b.InferCount()
	for range 6 {
		if r := embed(); r.status != 200 {
			t.Fatalf("embed: %d %s", r.status, r.body)
		}
	}
	if a.InferCount() == a0 || b.InferCount() == b0 {
		t.Errorf("batches on a %d, on b %d: want both replicas used", a.InferCount()-a0, b.InferCount()-b0)
	}
	// Each replica's series, labelled by model and task as well.
	// series is whether metrics has name's series of replica addr, with
	// value if not "".
	series := func(metrics, name, addr, value string) bool {
		for l := range strings.SplitSeq(metrics, "\n") {
			if strings.HasPrefix(l, name+"{") && strings.Contains(l, `replica="`+addr+`",task="embed"}`) && (value == "" || strings.HasSuffix(l, " "+value)) {
				return true
			}
		}
		return false
	}
	metrics := string(g.get(t, "/metrics").body)
	for _, srv := range []*tritontest.Server{a, b} {
		if !series(metrics, "embedgate_triton_replica_batches_total", srv.Addr(), "") ||
			!series(metrics, "embedgate_triton_replica_ejected", srv.Addr(), "0") {
			t.Errorf("/metrics lacks the series of replica %s:\n%s", srv.Addr(), grepLines(metrics, "embedgate_triton_replica"))
		}
	}
	a.Stop()
	for range 6 {
		if r := embed(); r.status != 200 {
			t.Fatalf("embed with one replica down: %d %s", r.status, r.body)
		}
	}
	waitStatus(t, g, "/ready", 200)
	if metrics := string(g.get(t, "/metrics").body); !series(metrics, "embedgate_triton_replica_ejected", a.Addr(), "1") {
		t.Errorf("/metrics does not show replica %s ejected:\n%s", a.Addr(), grepLines(metrics, "embedgate_triton_replica"))
	}
	if err := a.Restart(); err != nil {
		t.Fatal(err)
	}
	n := a.InferCount()
	deadline := time.Now().Add(15 * time.Second)
	for a.InferCount() == n {
		if time.Now().After(deadline) {
			t.Fatal("the restarted replica got no traffic")
		}
		if r := embed(); r.status != 200 {
			t.Fatalf("embed after restart: %d %s", r.status, r.body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// grepLines are the lines of text that contain sub.
func grepLines(text, sub string) string {
	var lines []string
	for l := range strings.SplitSeq(text, "\n") {
		if strings.Contains(l, sub) {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

// TestTritonReplicasReload: a reload that adds a replica to a model's list
// opens the model anew beside the old pipeline; the new one registers its
// per-replica series (the old gave them back) and serves on all three.
func TestTritonReplicasReload(t *testing.T) {
	// Not parallel: it signals.
	a, dir := startTriton(t)
	b, _ := startTriton(t)
	c, _ := startTriton(t)
	file := filepath.Join(t.TempDir(), "models.yaml")
	entry := func(srvs ...*tritontest.Server) string {
		addrs := make([]string, len(srvs))
		for i, s := range srvs {
			addrs[i] = s.Addr()
		}
		return fmt.Sprintf("models:\n  - {name: m, model_id: %s, backend: triton, triton_model: %s, triton_url: %q}\n", dir, a.Name(), strings.Join(addrs, ","))
	}
	writeFile(t, file, entry(a, b))
	env := catalogueEnv(t)
	env["MODELS_FILE"] = file
	g := startGateway(t, env)
	replicaSeries := func(srv *tritontest.Server) bool {
		return strings.Contains(string(g.get(t, "/metrics").body), `replica="`+srv.Addr()+`"`)
	}
	if !replicaSeries(a) || !replicaSeries(b) || replicaSeries(c) {
		t.Fatalf("per-replica series before the reload:\n%s", grepLines(string(g.get(t, "/metrics").body), "embedgate_triton_replica_batches"))
	}
	writeFile(t, file, entry(a, b, c))
	g.signal(t, syscall.SIGHUP)
	waitFor(t, func() bool { return replicaSeries(c) }, "c's series after the reload")
	if !replicaSeries(a) || !replicaSeries(b) {
		t.Errorf("a's or b's series lost in the reload:\n%s", grepLines(string(g.get(t, "/metrics").body), "embedgate_triton_replica_batches"))
	}
	n := c.InferCount()
	for i := 0; c.InferCount() == n; i++ {
		if i == 100 {
			t.Fatal("100 requests after the reload, none on c")
		}
		if r := g.post(t, "/embed", `{"inputs":"hello","model":"m"}`, "Cache-Control", "no-store"); r.status != 200 {
			t.Fatalf("embed after the reload: %d %s", r.status, r.body)
		}
	}
	if logs := g.logs.String(); strings.Contains(logs, "register metrics") {
		t.Errorf("the reload failed to register metrics:\n%s", grepLines(logs, "register"))
	}
}
