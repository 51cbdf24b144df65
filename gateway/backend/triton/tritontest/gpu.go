package tritontest

import (
	"context"
	"time"
)

// GPUTiming is a simulated GPU for tuning tests: each batch of rows ×
// length padded tokens costs PerBatch plus PerToken per token, and past
// BestRows rows the per-token cost grows with (rows/BestRows)², as a GPU's
// does once a batch no longer fits its caches. Batches run one at a time
// (one model instance), so extra in-flight batches only queue. The cost is
// a pure function of the shape: the optimum is known in advance.
type GPUTiming struct {
	PerBatch time.Duration
	PerToken time.Duration
	BestRows int // ≥ 1
}

// Cost is how long one batch of rows × length occupies the GPU.
func (g GPUTiming) Cost(rows, length int) time.Duration {
	perToken := float64(g.PerToken)
	if best := max(g.BestRows, 1); rows > best {
		r := float64(rows) / float64(best)
		perToken *= r * r
	}
	return g.PerBatch + time.Duration(perToken*float64(rows*length))
}

// WithGPUTiming makes every ModelInfer occupy a simulated GPU for
// g.Cost(rows, length) before the model runs.
func WithGPUTiming(g GPUTiming) Option { return func(c *config) { c.gpu = &g } }

// occupyGPU holds the server's one simulated GPU for the batch's cost, or
// until ctx ends.
func (s *Server) occupyGPU(ctx context.Context, rows, length int) error {
	g := s.cfg.gpu
	if g == nil {
		return nil
	}
	select {
	case s.gpu <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.gpu }()
	t := time.NewTimer(g.Cost(rows, length))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
