package tritontest

import (
	"testing"
	"time"
)

// TestGPUTimingOptimum: padded tokens per unit of cost peak at BestRows,
// the optimum the tuning tests expect.
func TestGPUTimingOptimum(t *testing.T) {
	g := GPUTiming{PerBatch: 4 * time.Millisecond, PerToken: 4 * time.Microsecond, BestRows: 16}
	best, bestRate := 0, 0.0
	for rows := 1; rows <= 128; rows *= 2 {
		if rate := float64(rows*64) / float64(g.Cost(rows, 64)); rate > bestRate {
			best, bestRate = rows, rate
		}
	}
	if best != 16 {
		t.Errorf("best rows %d, want 16", best)
	}
	if got := g.Cost(32, 10); got != 4*time.Millisecond+32*10*4*4*time.Microsecond {
		t.Errorf("Cost(32, 10) = %v", got)
	}
}
