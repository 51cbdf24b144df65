package admit

import (
	"math"
	"sync"
	"time"
)

// Backlog admits work by the time it would wait, not by count. It knows
// the tokens queued for the backend and the rate at which the backend has
// been getting through them, so it can tell a request that would wait
// past its deadline before the request waits at all.
//
// Why: a count limit cannot know what the backend will manage. At 256
// clients on two cores the gateway admitted every request (the limit is
// 512), the queue grew to a minute of work, and nearly every request
// ended 504 after thirty seconds of waiting — work done for nobody. Told
// 429 at once instead, a client can back off or go to another replica,
// and the requests admitted finish in time.
type Backlog struct {
	// Share is the part of a request's time left that its wait in the
	// queue may take (0 < Share ≤ 1): the rest absorbs the batch in
	// flight ahead of it and the estimate's error.
	share float64
	// cold bounds the tokens queued while the rate is still unknown, so
	// the first burst after a start cannot be admitted blind.
	cold int64
	now  func() time.Time

	mu      sync.Mutex
	queued  int64   // tokens admitted and not yet in a batch
	inBatch int64   // tokens of the batches the backend is running
	running int     // batches the backend is running now
	area    float64 // running batches integrated over time (batch-seconds)
	last    time.Time
	sampled time.Time // when the last batch was counted in the rate
	tokens  float64   // decayed sum of tokens done, each batch's × its concurrency
	seconds float64   // decayed sum of those batches' durations
}

// rateMemory is how fast old batches fade from the rate: each sample
// counts by its duration, and the older ones by e^(-age/rateMemory), so
// the rate is the backend's over about the last rateMemory of work and
// follows a change of load or of input lengths within that.
//
// The fading is by time, not by batch. Faded by a factor per batch (0.8),
// a run of quick batches of short inputs (3000 tokens/s) washed out the
// slow batches of long ones (600 tokens/s) that hold most of the queue's
// tokens, and the rate read far above what the backend managed on the
// queued mix: measured with embedbench at 64 clients through the Triton
// stand-in, requests admitted at the cap, with little work overtaking
// them, waited up to 1.5× their estimate.
const rateMemory = 10 * time.Second

// NewBacklog returns a Backlog that lets a request's queue wait take share
// of its time left and, until the first batch has measured the backend,
// admits at most cold tokens into the queue.
func NewBacklog(share float64, cold int) *Backlog {
	if share <= 0 || share > 1 {
		share = 1
	}
	return &Backlog{share: share, cold: int64(max(cold, 1)), now: time.Now}
}

// TryAdd queues tokens if the work ahead of them, done at the backend's
// measured rate, leaves them time to finish within left (no deadline:
// left ≤ 0). If not, it queues nothing and says how long until the queue
// will have drained enough (for work too large to fit beside anything,
// until it is empty). With nothing queued ahead, work is always admitted: a
// retry could not do better.
func (b *Backlog) TryAdd(tokens int, left time.Duration) (ok bool, retryAfter time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ok, retryAfter = b.fitsLocked(int64(tokens), left)
	if ok {
		b.queued += int64(tokens)
	}
	return ok, retryAfter
}

// Full reports whether even the smallest request, with left to go, would
// be refused now: it lets a caller refuse before paying for the work that
// would tell it how many tokens a request has.
func (b *Backlog) Full(left time.Duration) (full bool, retryAfter time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ok, retryAfter := b.fitsLocked(1, left)
	return !ok, retryAfter
}

func (b *Backlog) fitsLocked(n int64, left time.Duration) (ok bool, retryAfter time.Duration) {
	if b.queued == 0 || left <= 0 {
		return true, 0
	}
	rate := b.rateLocked()
	if rate == 0 {
		if b.queued+n <= b.cold {
			return true, 0
		}
		// No measure yet: a batch is about to say; ask again shortly.
		return false, time.Second
	}
	// An input queued now also waits for the batches running: with
	// several in flight (Triton) they can hold many seconds of work. On
	// average they are half done.
	wait := seconds((float64(b.inBatch)/2 + float64(b.queued+n)) / rate)
	allowed := time.Duration(b.share * float64(left))
	if wait <= allowed {
		return true, 0
	}
	if alone := seconds(float64(n) / rate); alone > allowed {
		// Only an empty queue admits it: say when that will be.
		return false, wait - alone
	}
	return false, wait - allowed
}

// Remove takes tokens out of the queue: they went into a batch, or their
// request gave up.
func (b *Backlog) Remove(tokens int) {
	b.mu.Lock()
	b.queued -= int64(tokens)
	b.mu.Unlock()
}

// Start notes a batch of tokens handed to the backend; done, called once
// when it returns, says whether it succeeded (a failed batch says nothing
// of the rate).
func (b *Backlog) Start(tokens int) (done func(ok bool)) {
	b.mu.Lock()
	b.advanceLocked()
	b.running++
	b.inBatch += int64(tokens)
	began, area := b.last, b.area
	b.mu.Unlock()
	return func(ok bool) {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.advanceLocked()
		took := b.last.Sub(began).Seconds()
		// With batches running side by side (Triton's instances), one
		// batch's tokens per second is the backend's divided by how many
		// ran with it, on average over the batch.
		shared := 1.0
		if took > 0 {
			shared = (b.area - area) / took
		}
		b.running--
		b.inBatch -= int64(tokens)
		if !ok || tokens <= 0 || took <= 0 {
			return
		}
		fade := 0.0
		if !b.sampled.IsZero() {
			fade = math.Exp(-b.last.Sub(b.sampled).Seconds() / rateMemory.Seconds())
		}
		b.sampled = b.last
		b.tokens = fade*b.tokens + float64(tokens)*shared
		b.seconds = fade*b.seconds + took
	}
}

// advanceLocked brings the integral of running batches over time to now.
func (b *Backlog) advanceLocked() {
	now := b.now()
	if !b.last.IsZero() {
		b.area += float64(b.running) * now.Sub(b.last).Seconds()
	}
	b.last = now
}

// Queued is the number of tokens waiting for a batch.
func (b *Backlog) Queued() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return int(b.queued)
}

// Rate is the backend's measured tokens per second; 0 until a batch has
// finished.
func (b *Backlog) Rate() float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.rateLocked()
}

func (b *Backlog) rateLocked() float64 {
	if b.seconds == 0 {
		return 0
	}
	return b.tokens / b.seconds
}

func seconds(s float64) time.Duration {
	if s > math.MaxInt64/float64(time.Second) {
		return math.MaxInt64
	}
	return time.Duration(s * float64(time.Second))
}
