// Package admit bounds how many requests are in the pipeline at once.
// Unlike a semaphore it never waits: a full gateway answers 429 at once, so
// clients retry elsewhere instead of piling up behind a slow backend.
package admit

import "sync/atomic"

// Gate admits up to its capacity; TryEnter never blocks.
type Gate struct {
	capacity int64
	inFlight atomic.Int64
}

// New returns a Gate that admits up to capacity requests (at least 1).
func New(capacity int) *Gate {
	if capacity < 1 {
		capacity = 1
	}
	return &Gate{capacity: int64(capacity)}
}

// TryEnter takes a place if one is free. Every true must be paired with Done.
func (g *Gate) TryEnter() bool {
	for {
		n := g.inFlight.Load()
		if n >= g.capacity {
			return false
		}
		if g.inFlight.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// Done frees a place taken by TryEnter.
func (g *Gate) Done() { g.inFlight.Add(-1) }

// InFlight is the number of admitted requests not yet done.
func (g *Gate) InFlight() int { return int(g.inFlight.Load()) }

// Capacity is the most requests the gate admits at once.
func (g *Gate) Capacity() int { return int(g.capacity) }
