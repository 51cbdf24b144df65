package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/embedgate/embedgate/gateway/internal/redistest"
)

// TestDrainUnderLoad cancels run (what SIGTERM does) while requests are in
// flight: every accepted request is answered 200, later ones are refused or
// get 503, and run returns within the grace period.
func TestDrainUnderLoad(t *testing.T) {
	t.Parallel()
	srv, _ := startTriton(t)
	srv.SetDelay(300 * time.Millisecond) // hold requests in flight
	env := tritonEnv(t, srv)
	env["SHUTDOWN_GRACE"] = "10s"
	g := startGateway(t, env)

	const clients = 8
	var wg sync.WaitGroup
	statuses := make(chan int, clients)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodPost, g.url+"/embed", strings.NewReader(`{"inputs":"in flight"}`))
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Errorf("in-flight request lost: %v", err)
				return
			}
			resp.Body.Close()
			statuses <- resp.StatusCode
		}()
	}
	// Wait until all of them are admitted: the drain must finish them.
	waitFor(t, func() bool {
		return strings.Contains(string(g.get(t, "/metrics").body), "embedgate_requests_in_flight 8")
	}, "8 requests in flight")
	start := time.Now()
	stopped := make(chan bool, 1)
	go func() {
		returned, err := g.stop(15 * time.Second)
		if err != nil {
			t.Errorf("run() = %v", err)
		}
		stopped <- returned
	}()
	wg.Wait()
	close(statuses)
	for s := range statuses {
		if s != 200 {
			t.Errorf("in-flight request got %d, want 200", s)
		}
	}
	if !<-stopped {
		t.Fatal("run() did not return within the grace period")
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("drain took %v, longer than the grace period", took)
	}
	resp, err := http.Post(g.url+"/embed", "application/json", strings.NewReader(`{"inputs":"late"}`))
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != 503 {
			t.Errorf("request after shutdown: %d, want refused or 503", resp.StatusCode)
		}
	}
}

// TestAbandonedRequestsSkipInference: a client that gives up (its own
// deadline, x-request-timeout) while its input waits behind a slow batch is
// dropped before inference.
func TestAbandonedRequestsSkipInference(t *testing.T) {
	// Not parallel: it races a 100ms deadline against a 500ms stall.
	srv, _ := startTriton(t)
	env := tritonEnv(t, srv)
	env["TRITON_MAX_INFLIGHT"] = "1"
	g := startGateway(t, env)
	srv.SetDelay(500 * time.Millisecond)
	calibration := srv.InferCount() // the gateway measured Triton at start
	first := make(chan int, 1)
	go func() { first <- g.post(t, "/embed", `{"inputs":"slow"}`).status }()
	for srv.InferCount() == calibration {
		time.Sleep(5 * time.Millisecond)
	}
	before := srv.InferCount()
	r := g.post(t, "/embed", `{"inputs":"impatient"}`, "x-request-timeout", "100ms")
	if r.status != 504 {
		t.Errorf("abandoned request: %d %s, want 504", r.status, r.body)
	}
	if s := <-first; s != 200 {
		t.Errorf("slow request: %d", s)
	}
	srv.SetDelay(0)
	if r := g.post(t, "/embed", `{"inputs":"next"}`); r.status != 200 {
		t.Fatalf("next request: %d %s", r.status, r.body)
	}
	// The slow batch and "next" ran; "impatient" never reached Triton.
	if got := srv.InferCount() - before; got != 1 {
		t.Errorf("inferences after the slow one = %d, want 1 (the abandoned request must not run)", got)
	}
}

func TestTokenLimit(t *testing.T) {
	t.Parallel()
	env := baseEnv(t)
	env["RATE_LIMIT_TPM"] = "20"
	g := startGateway(t, env)
	ok := g.post(t, "/embed", `{"inputs":"one two three four five six seven eight nine ten"}`) // 12 tokens
	if ok.status != 200 || ok.header.Get("x-ratelimit-limit-tokens") != "20" || ok.header.Get("x-ratelimit-remaining-tokens") != "8" {
		t.Fatalf("first: %d limit %q remaining %q, want 200 20 8", ok.status, ok.header.Get("x-ratelimit-limit-tokens"), ok.header.Get("x-ratelimit-remaining-tokens"))
	}
	over := g.post(t, "/embed", `{"inputs":"one two three four five six seven eight nine ten"}`)
	if over.status != 429 || over.header.Get("x-ratelimit-remaining-tokens") == "" || over.header.Get("Retry-After") == "" {
		t.Errorf("over the budget: %d %s (headers %v), want 429 with token headers", over.status, over.body, over.header)
	}
	small := g.post(t, "/embed", `{"inputs":"hi"}`) // 3 tokens fit in the 8 left
	if small.status != 200 {
		t.Errorf("smaller request: %d %s, want 200", small.status, small.body)
	}
}

func TestRedisOutage(t *testing.T) {
	// Not parallel: each request must finish within 2s while Redis is down.
	for _, failOpen := range []bool{true, false} {
		name := map[bool]string{true: "fail open", false: "fail closed"}[failOpen]
		t.Run(name, func(t *testing.T) {
			rds := redistest.Start(t)
			env := baseEnv(t)
			env["REDIS_URL"] = rds.URL()
			env["RATE_LIMIT_FAIL_OPEN"] = map[bool]string{true: "true", false: "false"}[failOpen]
			env["RATE_LIMIT_RPS"], env["RATE_LIMIT_BURST"] = "0.001", "3"
			// Each phase is a different client (limits are per client IP),
			// so the load below never drains the bucket a phase checks.
			env["TRUST_PROXY_HEADERS"] = "true"
			g := startGateway(t, env)
			statuses := func(client string, n int) map[int]int {
				got := map[int]int{}
				for i := 0; i < n; i++ {
					start := time.Now()
					got[g.post(t, "/embed", `{"inputs":"hi"}`, "X-Forwarded-For", client).status]++
					if took := time.Since(start); took > 2*time.Second {
						t.Errorf("request took %v with Redis down", took)
					}
				}
				return got
			}
			if got := statuses("192.0.2.1", 5); got[200] != 3 || got[429] != 2 {
				t.Fatalf("Redis up: %v, want 3×200 and 2×429", got)
			}

			// Load from another client runs through the outage and the
			// restart: every answer must be 200 or 429, never an error.
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var unexpected atomic.Int64
			for w := 0; w < 4; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						if s := g.post(t, "/embed", `{"inputs":"load"}`, "X-Forwarded-For", "192.0.2.99").status; s != 200 && s != 429 {
							unexpected.Add(1)
						}
					}
				}()
			}
			defer func() {
				close(stop)
				wg.Wait()
				if n := unexpected.Load(); n > 0 {
					t.Errorf("%d requests under load got neither 200 nor 429", n)
				}
			}()

			rds.Kill()
			down := statuses("192.0.2.2", 4)
			if failOpen && down[200] != 4 {
				t.Errorf("Redis down, fail open: %v, want all 200", down)
			}
			if !failOpen && down[429] != 4 {
				t.Errorf("Redis down, fail closed: %v, want all 429", down)
			}

			// Limits apply again without restarting the gateway: once the
			// limiter sees Redis back, a new client gets its burst of 3.
			rds.Restart()
			deadline := time.Now().Add(10 * time.Second)
			for attempt := 3; ; attempt++ {
				got := statuses(fmt.Sprintf("192.0.2.%d", attempt), 4)
				if got[200] == 3 && got[429] == 1 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("after Redis restart: %v, want the limit back (3×200, 1×429)", got)
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
}

func TestKeysReloadOnSIGHUP(t *testing.T) {
	// Not parallel: SIGHUP reaches every gateway in the process.
	path := filepath.Join(t.TempDir(), "keys.json")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"keys":[{"name":"old","key":"sk-old"}]}`)
	env := baseEnv(t)
	env["API_KEYS_FILE"] = path
	g := startGateway(t, env)
	status := func(key string) int {
		return g.post(t, "/embed", `{"inputs":"hi"}`, "Authorization", "Bearer "+key).status
	}
	if status("sk-old") != 200 || status("sk-new") != 401 {
		t.Fatal("before reload: want old key accepted, new key refused")
	}
	hup := func() { g.signal(t, syscall.SIGHUP) }
	write(`{"keys":[{"name":"new","key":"sk-new"}]}`)
	hup()
	waitFor(t, func() bool { return status("sk-new") == 200 && status("sk-old") == 401 }, "new key after SIGHUP")

	write(`{"keys":[ this is not json`)
	hup()
	waitFor(t, func() bool {
		return strings.Contains(g.logs.String(), "keys") && strings.Contains(strings.ToLower(g.logs.String()), "reload")
	}, "a logged reload error")
	if status("sk-new") != 200 {
		t.Error("a malformed keys file dropped the old keys")
	}
	if strings.Contains(g.logs.String(), "sk-new") || strings.Contains(g.logs.String(), "sk-old") {
		t.Error("a key appears in the logs")
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestShutdownWithUnusedConnection: a connection that was opened and never
// sent a request (clients and load balancers keep spares) must not hold
// shutdown until the grace period ends.
func TestShutdownWithUnusedConnection(t *testing.T) {
	t.Parallel()
	env := baseEnv(t)
	env["SHUTDOWN_GRACE"] = "20s"
	g := startGateway(t, env)
	conn, err := net.Dial("tcp", strings.TrimPrefix(g.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	returned, err := g.stop(15 * time.Second)
	if !returned {
		t.Fatal("run() waited for a connection that never sent a request")
	}
	if err != nil {
		t.Errorf("run() = %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("shutdown took %v with an unused connection open", took)
	}
}

// TestDrainShortGrace: when the grace period is shorter than the work in
// flight, every admitted request is still answered (503, closing the
// connection) before the gateway stops, and the stop comes within the
// grace period, not after it.
func TestDrainShortGrace(t *testing.T) {
	srv, _ := startTriton(t)
	env := tritonEnv(t, srv)
	env["SHUTDOWN_GRACE"] = "1s"
	g := startGateway(t, env)
	srv.SetDelay(5 * time.Second) // once calibrated: longer than the grace

	const clients = 4
	type answer struct {
		status int
		closed bool
		err    error
	}
	answers := make(chan answer, clients)
	for range clients {
		go func() {
			req, _ := http.NewRequest(http.MethodPost, g.url+"/embed", strings.NewReader(`{"inputs":"in flight"}`))
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				answers <- answer{err: err}
				return
			}
			resp.Body.Close()
			answers <- answer{status: resp.StatusCode, closed: resp.Close}
		}()
	}
	waitFor(t, func() bool {
		return strings.Contains(string(g.get(t, "/metrics").body), "embedgate_requests_in_flight 4")
	}, "4 requests in flight")
	start := time.Now()
	returned, err := g.stop(5 * time.Second)
	if !returned || err != nil {
		t.Fatalf("run() returned %v with %v, want it to return in time", returned, err)
	}
	if took := time.Since(start); took > 1800*time.Millisecond {
		t.Errorf("stop took %v with a 1s grace", took)
	}
	for range clients {
		a := <-answers
		if a.err != nil || a.status != 503 || !a.closed {
			t.Errorf("in-flight request: status %d, Connection: close %v, error %v; want 503 closing the connection", a.status, a.closed, a.err)
		}
	}
}
