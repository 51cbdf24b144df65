package triton

import (
	"math/bits"
	"sync"
	"sync/atomic"
)

// floatPool keeps the FP32 buffers that responses are decoded into, so
// that a [B,L,H] output of tens of megabytes is reused from batch to batch
// rather than left to the garbage collector, which would let the heap grow
// to twice such a peak before collecting it.
//
// It is a small free list under a mutex, not a sync.Pool: sync.Pool drops
// its contents at every other GC cycle, which buffers this size bring about
// often, and it cannot bound what it holds. Here at most maxIdle buffers
// of at most maxBytes in all wait for reuse; when a returned buffer would
// exceed either, the smallest idle ones go to the collector. get takes the
// smallest idle buffer that fits, so a pooled [B,H] output does not tie up
// a [B,L,H] one. A buffer is in the list or handed out, never both: get
// removes it under the lock, and Release returns it at most once.
type floatPool struct {
	maxIdle  int
	maxBytes int64

	mu        sync.Mutex
	free      [][]float32 // idle buffers, full capacity, any order
	idleBytes int64
}

func newFloatPool(maxIdle int, maxBytes int64) *floatPool {
	return &floatPool{maxIdle: maxIdle, maxBytes: maxBytes}
}

// get returns n values of undefined content.
func (p *floatPool) get(n int) []float32 {
	if n == 0 {
		return []float32{}
	}
	p.mu.Lock()
	best := -1
	for i, f := range p.free {
		if cap(f) >= n && (best < 0 || cap(f) < cap(p.free[best])) {
			best = i
		}
	}
	if best >= 0 {
		f := p.free[best]
		p.remove(best)
		p.mu.Unlock()
		return f[:n]
	}
	p.mu.Unlock()
	return make([]float32, n, sizeClass(n))
}

// put makes f available to get; the caller no longer uses it.
func (p *floatPool) put(f []float32) {
	size := 4 * int64(cap(f))
	if size == 0 || size > p.maxBytes || p.maxIdle <= 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.free = append(p.free, f[:cap(f)])
	p.idleBytes += size
	for len(p.free) > p.maxIdle || p.idleBytes > p.maxBytes {
		smallest := 0
		for i, g := range p.free {
			if cap(g) < cap(p.free[smallest]) {
				smallest = i
			}
		}
		p.remove(smallest)
	}
}

// remove drops free[i] from the list; p.mu is held.
func (p *floatPool) remove(i int) {
	p.idleBytes -= 4 * int64(cap(p.free[i]))
	last := len(p.free) - 1
	p.free[i] = p.free[last]
	p.free[last] = nil // no reference left behind for the collector
	p.free = p.free[:last]
}

// idle reports the buffers waiting for reuse, for tests.
func (p *floatPool) idle() (n int, bytes int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.free), p.idleBytes
}

// releaser returns a function that puts f back into p the first time it
// is called and does nothing after, so that a second Release cannot hand
// one buffer to two batches.
func (p *floatPool) releaser(f []float32) func() {
	var done atomic.Bool
	return func() {
		if done.CompareAndSwap(false, true) {
			p.put(f)
		}
	}
}

// sizeClass rounds a new buffer's capacity up to one of 8 sizes per
// doubling (at most 1/8 more), so that batches of nearby shapes can reuse
// each other's buffers.
func sizeClass(n int) int {
	const minClass = 1 << 10
	if n <= minClass {
		return n // too small to be worth reusing across shapes
	}
	shift := bits.Len(uint(n-1)) - 4
	return ((n-1)>>shift + 1) << shift
}
