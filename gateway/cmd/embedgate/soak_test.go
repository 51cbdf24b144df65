package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestSoak drives one gateway with a mix of good, malformed, over-long,
// over-limit and abandoned requests, then checks that goroutines, file
// descriptors and heap come back to where they were. make test runs it for
// a few seconds, enough for every kind of request and the checks; slow leaks
// need the long run: scripts/soak sets SOAK_DURATION (30m by default).
func TestSoak(t *testing.T) {
	// Not parallel: it counts the whole process's goroutines and files.
	duration := 5 * time.Second
	if v := os.Getenv("SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("SOAK_DURATION: %v", err)
		}
		duration = d
	}
	env := baseEnv(t)
	env["MAX_CONCURRENT_REQUESTS"] = "4" // so the mix includes 429s
	env["MAX_CLIENT_BATCH_SIZE"] = "16"
	g := startGateway(t, env)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}

	bodies := []struct {
		path, body string
		header     [2]string
	}{
		{"/api/v1/embed", `{"inputs":["a short query","a somewhat longer passage about embeddings and batching"]}`, [2]string{}},
		{"/v1/embeddings", `{"input":["hello","world","again"],"encoding_format":"base64"}`, [2]string{}},
		{"/embed", `{"inputs":[[101,7592,2088,999,102]]}`, [2]string{}},
		{"/embed", `{"inputs":"` + strings.Repeat("long text ", 300) + `","truncate":true}`, [2]string{}},
		{"/embed", `{"inputs":"` + strings.Repeat("long text ", 300) + `","truncate":false}`, [2]string{}},
		{"/embed", `{"inputs":`, [2]string{}},
		{"/tokenize", `{"inputs":"Hello world!"}`, [2]string{}},
		{"/embed", `{"inputs":"abandoned at once"}`, [2]string{"x-request-timeout", "1us"}},
	}
	send := func(i int) (int, error) {
		b := bodies[i]
		req, _ := http.NewRequest(http.MethodPost, g.url+b.path, strings.NewReader(b.body))
		req.Header.Set("Content-Type", "application/json")
		if b.header[0] != "" {
			req.Header.Set(b.header[0], b.header[1])
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		_, err = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, err
	}
	for i := range bodies { // warm every path before the baseline
		if _, err := send(i); err != nil {
			t.Fatal(err)
		}
	}
	client.CloseIdleConnections()
	base := sample(t)

	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	var mu sync.Mutex
	statuses := map[int]int{}
	var total atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 1))
			for ctx.Err() == nil {
				status, err := send(rng.IntN(len(bodies)))
				if err != nil {
					t.Errorf("request failed: %v", err)
					return
				}
				total.Add(1)
				mu.Lock()
				statuses[status]++
				mu.Unlock()
			}
		}(uint64(w))
	}
	wg.Wait()
	client.CloseIdleConnections()
	t.Logf("soak: %d requests in %v, statuses %v", total.Load(), duration, statuses)
	for s := range statuses {
		switch s {
		case 200, 400, 422, 429, 504:
		default:
			t.Errorf("unexpected status %d (%d times)", s, statuses[s])
		}
	}
	if statuses[200] == 0 || statuses[429] == 0 {
		t.Errorf("the mix lacked successes or overloads: %v", statuses)
	}

	// Requests finishing and connections closing take a moment to settle.
	deadline := time.Now().Add(20 * time.Second)
	var now resources
	for {
		now = sample(t)
		if now.goroutines <= base.goroutines+2 && now.fds <= base.fds+2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the soak: %v, before: %v", now, base)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if now.heap > base.heap+32<<20 {
		t.Errorf("heap grew from %d to %d bytes", base.heap, now.heap)
	}
	t.Logf("resources before %v, after %v", base, now)
}

type resources struct {
	goroutines, fds int
	heap            uint64
}

func (r resources) String() string {
	return fmt.Sprintf("%d goroutines, %d fds, %d MiB heap", r.goroutines, r.fds, r.heap>>20)
}

func sample(t *testing.T) resources {
	t.Helper()
	// Twice: sync.Pool contents survive one collection.
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return resources{goroutines: liveGoroutines(), fds: len(fds), heap: ms.HeapInuse}
}

// liveGoroutines counts the process's goroutines but fasthttp's idle workers:
// fasthttp parks a worker per recent connection for 10 to 20 seconds after
// the connection goes, a bounded pool of its own rather than a leak, and
// waiting that out would make the soak that much longer. A worker inside a
// handler is counted: its stack does not start at the parked receive.
func liveGoroutines() int {
	buf := allStacks()
	count := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		header, stack, _ := strings.Cut(g, "\n")
		if strings.Contains(header, "[chan receive") && strings.HasPrefix(stack, "github.com/valyala/fasthttp.(*workerPool).workerFunc(") {
			continue
		}
		count++
	}
	return count
}
