package triton

import (
	"sync"
	"testing"
	"unsafe"
)

func base(f []float32) *float32 { return unsafe.SliceData(f[:cap(f)]) }

func TestPoolReuse(t *testing.T) {
	p := newFloatPool(3, 1<<20)
	a := p.get(5000)
	if len(a) != 5000 || cap(a) < 5000 {
		t.Fatalf("get(5000) = len %d cap %d", len(a), cap(a))
	}
	release := p.releaser(a)
	release()
	release() // a second Release must not put a twice
	if n, _ := p.idle(); n != 1 {
		t.Fatalf("idle buffers after a double Release = %d, want 1", n)
	}
	b := p.get(4000)
	c := p.get(4000)
	if base(b) != base(a) {
		t.Errorf("get after Release allocated anew; want the released buffer back")
	}
	if base(c) == base(b) {
		t.Fatalf("one buffer handed out twice")
	}
}

func TestPoolBestFit(t *testing.T) {
	p := newFloatPool(4, 1<<20)
	small, large := p.get(2000), p.get(60000)
	p.put(large)
	p.put(small)
	if got := p.get(1500); base(got) != base(small) {
		t.Errorf("get(1500) took the large buffer, want the smallest that fits")
	}
	if got := p.get(50000); base(got) != base(large) {
		t.Errorf("get(50000) did not reuse the large buffer")
	}
	if got := p.get(100); cap(got) != 100 {
		t.Errorf("get(100) with nothing idle has cap %d, want 100: small buffers are not rounded up", cap(got))
	}
	if got := p.get(0); got == nil || len(got) != 0 {
		t.Errorf("get(0) = %v, want an empty non-nil slice", got)
	}
}

func TestPoolBounds(t *testing.T) {
	t.Run("Count", func(t *testing.T) {
		p := newFloatPool(2, 1<<30)
		bufs := [][]float32{p.get(2000), p.get(8000), p.get(4000)}
		for _, f := range bufs {
			p.put(f)
		}
		n, bytes := p.idle()
		if want := 4 * int64(cap(bufs[1])+cap(bufs[2])); n != 2 || bytes != want {
			t.Errorf("idle = %d buffers, %d bytes; want the 2 largest, %d bytes", n, bytes, want)
		}
	})
	t.Run("Bytes", func(t *testing.T) {
		p := newFloatPool(10, 4*10000)
		p.put(p.get(6000))
		p.put(p.get(5000)) // 6000+5000 floats exceed the budget: the smaller goes
		n, bytes := p.idle()
		if n != 1 || bytes > 4*10000 {
			t.Errorf("idle = %d buffers, %d bytes; want 1 within %d bytes", n, bytes, 4*10000)
		}
		p.put(make([]float32, 20000)) // larger than the whole bound: not kept
		if n2, _ := p.idle(); n2 != 1 {
			t.Errorf("idle = %d after putting an oversized buffer, want 1", n2)
		}
	})
}

// TestPoolConcurrent checks under -race that no buffer is handed to two
// users at once: each user writes its own mark over the whole buffer and
// reads it back before returning it.
func TestPoolConcurrent(t *testing.T) {
	p := newFloatPool(3, 1<<22)
	var mu sync.Mutex
	inUse := map[*float32]bool{}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				f := p.get(1000 + (g*37+i*101)%5000)
				mu.Lock()
				if inUse[base(f)] {
					mu.Unlock()
					t.Errorf("buffer %p handed out while in use", base(f))
					return
				}
				inUse[base(f)] = true
				mu.Unlock()
				mark := float32(g*1000 + i)
				for j := range f {
					f[j] = mark
				}
				for j := range f {
					if f[j] != mark {
						t.Errorf("buffer overwritten by another user")
						return
					}
				}
				mu.Lock()
				delete(inUse, base(f))
				mu.Unlock()
				p.releaser(f)()
			}
		})
	}
	wg.Wait()
}

func TestSizeClass(t *testing.T) {
	prev := 0
	for n := 1; n < 1<<22; n += 1 + n/37 {
		c := sizeClass(n)
		if c < n || (n > 1024 && float64(c) > 1.125*float64(n)) || c < prev {
			t.Fatalf("sizeClass(%d) = %d, want in [n, 1.125n] and not below sizeClass of smaller n (%d)", n, c, prev)
		}
		prev = c
	}
}
