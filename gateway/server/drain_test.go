package server

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/embedgate/embedgate/gateway"
)

// TestWaitIdle holds one request in the engine across a drain: WaitIdle
// waits for it (requests refused meanwhile do not end the wait early nor
// hold it), and returns ctx's error if ctx ends first.
func TestWaitIdle(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	eng, plain := newFake(), newFake()
	eng.embed = func(ctx context.Context, req *gateway.EmbedRequest) (*gateway.EmbedResult, error) {
		close(entered)
		<-release
		return plain.Embed(ctx, req)
	}
	s := newTestServer(t, eng, nil, nil)
	if err := s.WaitIdle(context.Background()); err != nil {
		t.Fatalf("WaitIdle with nothing in flight = %v, want nil", err)
	}

	send := func() int {
		req := httptest.NewRequest(http.MethodPost, "/embed", strings.NewReader(`{"inputs":"hi"}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := s.App().Test(req, -1)
		if err != nil {
			t.Errorf("POST /embed: %v", err)
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	held := make(chan int, 1)
	go func() { held <- send() }()
	<-entered
	s.Drain()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := s.WaitIdle(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitIdle with a request held = %v, want %v", err, context.DeadlineExceeded)
	}

	waited := make(chan error, 1)
	go func() { waited <- s.WaitIdle(context.Background()) }()
	var wg sync.WaitGroup
	for range 8 { // arrive while draining: refused, counted while handled
		wg.Add(1)
		go func() {
			defer wg.Done()
			if got := send(); got != http.StatusServiceUnavailable {
				t.Errorf("POST /embed while draining = %d, want 503", got)
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-waited:
		t.Fatalf("WaitIdle returned %v while a request was held", err)
	default:
	}
	close(release)
	if err := <-waited; err != nil {
		t.Errorf("WaitIdle = %v, want nil", err)
	}
	if got := <-held; got != http.StatusOK {
		t.Errorf("held request = %d, want 200", got)
	}
}

// TestRequestsConcurrent runs waits against requests entering from zero,
// which a sync.WaitGroup would not allow; -race checks it.
func TestRequestsConcurrent(t *testing.T) {
	var r requests
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range 1000 {
				r.enter()
				r.leave()
			}
		}()
		go func() {
			defer wg.Done()
			for range 100 {
				if err := r.wait(context.Background()); err != nil {
					t.Errorf("wait = %v", err)
				}
			}
		}()
	}
	wg.Wait()
	if err := r.wait(context.Background()); err != nil || r.n != 0 {
		t.Errorf("after all left: wait = %v, n = %d; want nil, 0", err, r.n)
	}
}
