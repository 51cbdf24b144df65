package infer

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// A call entering while the tracker starts draining is either refused or
// waited for: once drain's channel is closed, no call that entered is
// still inside, and none enters any more.
func TestTrackerNeverMissesACall(t *testing.T) {
	for round := 0; round < 200; round++ {
		tr := newTracker()
		var inside atomic.Int64
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				for i := 0; i < 1000 && tr.enter(); i++ { // bounded: a broken tracker fails, not hangs
					inside.Add(1)
					runtime.Gosched()
					inside.Add(-1)
					tr.leave()
				}
			}()
		}
		close(start)
		if round%2 == 0 {
			runtime.Gosched() // some rounds drain before any call, some among them
		}
		<-tr.drain()
		if n := inside.Load(); n != 0 {
			t.Fatalf("round %d: drained with %d calls inside", round, n)
		}
		if tr.enter() {
			t.Fatalf("round %d: a call entered after draining", round)
		}
		wg.Wait()
		<-tr.drain() // again: the same, closed channel
	}
}
