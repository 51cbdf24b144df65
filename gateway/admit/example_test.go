package admit_test

import (
	"fmt"
	"time"

	"github.com/embedgate/embedgate/gateway/admit"
)

// A Gate is a count limit that never waits: the request that finds every
// place taken is refused at once (429), so its client can back off or go
// to another replica instead of queueing behind a slow backend.
func ExampleGate() {
	gate := admit.New(2) // --max-concurrent-requests=2

	for _, req := range []string{"a", "b", "c"} {
		fmt.Printf("%s admitted: %v\n", req, gate.TryEnter())
	}
	fmt.Printf("in flight: %d of %d\n", gate.InFlight(), gate.Capacity())

	// A request done frees its place: each true from TryEnter is paired
	// with one Done, usually deferred by the handler.
	gate.Done()
	fmt.Println("c retried, admitted:", gate.TryEnter())
	// Output:
	// a admitted: true
	// b admitted: true
	// c admitted: false
	// in flight: 2 of 2
	// c retried, admitted: true
}

// A Backlog admits by time rather than by count: it refuses the work that
// would wait in the queue past its share of the request's deadline, and
// says when to retry.
func ExampleBacklog() {
	// A queue wait may take half of a request's time left; until a batch
	// has measured the backend, at most 4096 tokens may queue blind.
	b := admit.NewBacklog(0.5, 4096)

	// An empty queue admits anything: a retry could not do better.
	ok, _ := b.TryAdd(3000, 10*time.Second)
	fmt.Println("3000 tokens, queue empty, admitted:", ok)

	// The rate is still unknown and 3000+2000 tokens would pass the cold
	// bound: refused, with a short retry, since a batch is about to
	// measure the backend.
	ok, retryAfter := b.TryAdd(2000, 10*time.Second)
	fmt.Println("2000 more before any batch, admitted:", ok, "retry after", retryAfter)

	// The batch loop takes the 3000 tokens out of the queue into a batch
	// and reports how long the backend took: the Backlog's rate comes
	// from such batches. (The sleep stands in for inference; it makes the
	// rate at most 3000 tokens / 50 ms = 60,000 tokens per second.)
	b.Remove(3000)
	done := b.Start(3000)
	time.Sleep(50 * time.Millisecond)
	done(true)
	fmt.Println("rate measured:", b.Rate() > 0)

	// A large request arrives while the queue is empty: admitted.
	ok, _ = b.TryAdd(60_000, 10*time.Second)
	fmt.Println("60,000 tokens, queue empty, admitted:", ok)

	// 60,000 tokens ahead take at least a second at the measured rate:
	// a request with one second left may wait only half a second, so it
	// is refused at once rather than answered 504 later. One with a
	// minute left has the time.
	ok, retryAfter = b.TryAdd(100, time.Second)
	fmt.Println("100 tokens with 1s left, admitted:", ok, "retry later:", retryAfter > 0)
	ok, _ = b.TryAdd(100, time.Minute)
	fmt.Println("100 tokens with 1m left, admitted:", ok)
	fmt.Println("tokens queued:", b.Queued())
	// Output:
	// 3000 tokens, queue empty, admitted: true
	// 2000 more before any batch, admitted: false retry after 1s
	// rate measured: true
	// 60,000 tokens, queue empty, admitted: true
	// 100 tokens with 1s left, admitted: false retry later: true
	// 100 tokens with 1m left, admitted: true
	// tokens queued: 60100
}
