package admit

import (
	"sync"
	"testing"
)

func TestGate(t *testing.T) {
	g := New(2)
	if !g.TryEnter() || !g.TryEnter() {
		t.Fatal("TryEnter failed below capacity")
	}
	if g.TryEnter() {
		t.Fatal("TryEnter succeeded at capacity")
	}
	g.Done()
	if !g.TryEnter() {
		t.Fatal("TryEnter failed after Done")
	}
	if g.InFlight() != 2 {
		t.Errorf("InFlight() = %d, want 2", g.InFlight())
	}
}

func TestGateConcurrent(t *testing.T) {
	g := New(5)
	var wg sync.WaitGroup
	var mu sync.Mutex
	admitted, peak := 0, 0
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 100; j++ {
				if !g.TryEnter() {
					continue
				}
				mu.Lock()
				admitted++
				peak = max(peak, g.InFlight())
				mu.Unlock()
				g.Done()
			}
		}()
	}
	wg.Wait()
	if peak > 5 {
		t.Errorf("peak in flight = %d, want <= 5", peak)
	}
	if admitted == 0 || g.InFlight() != 0 {
		t.Errorf("admitted %d, in flight at end %d; want > 0 and 0", admitted, g.InFlight())
	}
}
