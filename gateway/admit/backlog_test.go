package admit

import (
	"sync"
	"testing"
	"time"
)

// clock is a manual time source for the rate measurements.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestBacklog(share float64, cold int) (*Backlog, *clock) {
	c := &clock{t: time.Unix(0, 0)}
	b := NewBacklog(share, cold)
	b.now = c.now
	return b, c
}

// measure runs one batch of tokens that takes d.
func measure(b *Backlog, c *clock, tokens int, d time.Duration) {
	done := b.Start(tokens)
	c.advance(d)
	done(tokens > 0)
}

func TestBacklogColdStartAdmitsABoundedBurst(t *testing.T) {
	b, _ := newTestBacklog(0.8, 100)
	if ok, _ := b.TryAdd(500, time.Second); !ok {
		t.Fatal("an empty queue refused work: with nothing ahead a retry cannot do better")
	}
	b.Remove(500)
	for i := 0; i < 10; i++ {
		if ok, _ := b.TryAdd(10, time.Second); !ok {
			t.Fatalf("refused the %dth 10 tokens of a 100-token cold limit", i+1)
		}
	}
	ok, retry := b.TryAdd(1, time.Hour)
	if ok || retry <= 0 {
		t.Errorf("beyond the cold limit with no rate known: ok=%v retry=%v, want a refusal with a retry time", ok, retry)
	}
	if got := b.Queued(); got != 100 {
		t.Errorf("queued %d, want 100 (a refusal queues nothing)", got)
	}
}

func TestBacklogAdmitsByExpectedWait(t *testing.T) {
	b, c := newTestBacklog(0.5, 1)
	measure(b, c, 1000, time.Second) // 1000 tokens/s
	if r := b.Rate(); r != 1000 {
		t.Fatalf("rate %v, want 1000", r)
	}
	if ok, _ := b.TryAdd(2000, 10*time.Second); !ok {
		t.Fatal("empty queue refused")
	}
	// 2000 queued + 500 = 2.5 s of work: fits half of 10 s, not half of 4 s.
	if ok, _ := b.TryAdd(500, 10*time.Second); !ok {
		t.Error("2.5s of work with 5s allowed was refused")
	}
	ok, retry := b.TryAdd(500, 4*time.Second)
	if ok {
		t.Fatal("3s of work with 2s allowed was admitted")
	}
	if want := time.Second; retry != want {
		t.Errorf("retry after %v, want %v (3s of work, 2s allowed)", retry, want)
	}
	// As batches take work out of the queue, the same request fits.
	b.Remove(1500)
	if ok, _ := b.TryAdd(500, 4*time.Second); !ok {
		t.Error("1.5s of work with 2s allowed was refused")
	}
	// No deadline: nothing to miss.
	if ok, _ := b.TryAdd(1_000_000, 0); !ok {
		t.Error("a request without a deadline was refused")
	}
}

func TestBacklogRateFollowsTheBackend(t *testing.T) {
	b, c := newTestBacklog(1, 1)
	measure(b, c, 1000, time.Second)
	for i := 0; i < 20; i++ {
		measure(b, c, 4000, time.Second)
	}
	if r := b.Rate(); r < 3900 || r > 4000 {
		t.Errorf("after 20 batches at 4000 tokens/s the rate is %v", r)
	}
	// A failed batch says nothing about the rate.
	measure(b, c, 0, time.Hour)
	if r := b.Rate(); r < 3900 {
		t.Errorf("a failed batch moved the rate to %v", r)
	}
}

// A run of quick batches of short inputs does not wash out a slow batch
// of long ones: the rate is the tokens done over the time taken, as the
// queue's mix will see it (one batch of 4000 tokens in 6 s, then ten of
// 400 in 0.13 s each: 8000 tokens in 7.3 s, about 1100 tokens/s).
// Faded by batch (×0.8 each), the rate read 1800.
func TestBacklogRateWeighsBatchesByTime(t *testing.T) {
	b, c := newTestBacklog(1, 1)
	measure(b, c, 4000, 6*time.Second)
	for i := 0; i < 10; i++ {
		measure(b, c, 400, 130*time.Millisecond)
	}
	if r := b.Rate(); r < 1000 || r > 1200 {
		t.Errorf("rate %v after a slow long batch and quick short ones, want about 1100 tokens/s", r)
	}
}

// Two batches side by side, each taking 2 s for 1000 tokens: the backend
// does 1000 tokens/s, not 500.
func TestBacklogRateWithBatchesInFlight(t *testing.T) {
	b, c := newTestBacklog(1, 1)
	d1, d2 := b.Start(1000), b.Start(1000)
	c.advance(2 * time.Second)
	d1(true)
	d2(true)
	if r := b.Rate(); r != 1000 {
		t.Errorf("rate %v with two batches in flight, want about 1000", r)
	}
}

func TestBacklogConcurrentUse(t *testing.T) {
	b, c := newTestBacklog(0.8, 1000)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				if ok, _ := b.TryAdd(10, time.Second); ok {
					b.Remove(10)
				}
				measure(b, c, 10, time.Millisecond)
			}
		}()
	}
	wg.Wait()
	if q := b.Queued(); q != 0 {
		t.Errorf("queued %d after every add was removed", q)
	}
}

func TestBacklogFull(t *testing.T) {
	b, c := newTestBacklog(0.5, 1)
	if full, _ := b.Full(time.Second); full {
		t.Error("an empty backlog is full")
	}
	measure(b, c, 100, time.Second) // 100 tokens/s
	b.TryAdd(100, 0)                // 1 s of work queued
	if full, _ := b.Full(4 * time.Second); full {
		t.Error("1s of work with 2s allowed: full")
	}
	full, retry := b.Full(time.Second)
	if !full || retry <= 0 {
		t.Errorf("1s of work with 0.5s allowed: full=%v retry=%v, want full with a retry time", full, retry)
	}
	if q := b.Queued(); q != 100 {
		t.Errorf("Full changed the queue to %d", q)
	}
}

// Work the backend is running delays what is queued after it.
func TestBacklogCountsTheBatchesRunning(t *testing.T) {
	b, c := newTestBacklog(0.5, 1)
	measure(b, c, 1000, time.Second) // 1000 tokens/s
	done := b.Start(3000)            // 3 s running, 1.5 s left on average
	b.TryAdd(100, 0)
	if ok, _ := b.TryAdd(100, 3*time.Second); ok {
		t.Error("1.7s of work (1.5s of it running) with 1.5s allowed was admitted")
	}
	done(true)
	if ok, _ := b.TryAdd(100, 3*time.Second); !ok {
		t.Error("0.2s of work with 1.5s allowed was refused once the batch was done")
	}
}

// Work too large to fit beside anything is told to come back when the
// queue is empty, not when it has drained "enough".
func TestBacklogRetryForWorkTooLargeToShare(t *testing.T) {
	b, c := newTestBacklog(0.5, 1)
	measure(b, c, 1000, time.Second) // 1000 tokens/s
	b.TryAdd(500, 0)                 // 0.5 s queued
	ok, retry := b.TryAdd(3000, 4*time.Second)
	if ok {
		t.Fatal("3s of work alone with 2s allowed was admitted beside a queue")
	}
	if retry != 500*time.Millisecond {
		t.Errorf("retry after %v, want 500ms (until the queue is empty)", retry)
	}
	b.Remove(500)
	if ok, _ := b.TryAdd(3000, 4*time.Second); !ok {
		t.Error("refused with an empty queue")
	}
}
