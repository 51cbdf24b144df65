// Package tune sweeps a backend over batch shapes and concurrency and
// turns the measurements into settings: it runs batches of rows × padded
// length with a number of batches in flight for a slice of a time budget
// each, measures tokens/s and latency percentiles per point, finds the
// knee of the curve (the smallest configuration within a tolerance of the
// best throughput) and derives the gateway's batch limits and Triton's
// config.pbtxt values from it, and the suggested config.pbtxt as a diff
// (config.go). It knows no Triton client and no tokenizer: the caller's
// RunFunc sends one batch, cut from a Mix of token ids. It imports
// gateway (the batch), tritonstubs and protobuf (the config).
package tune

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// RunFunc sends one batch of rows × length padded tokens and returns the
// real (unpadded) tokens it carried.
type RunFunc func(ctx context.Context, rows, length int) (tokens int, err error)

// Grid is the sweep's axes; every value must be ≥ 1.
type Grid struct {
	Rows     []int `json:"rows"`
	Lens     []int `json:"lengths"`
	Inflight []int `json:"inflight"`
}

// Size is the number of points.
func (g Grid) Size() int { return len(g.Rows) * len(g.Lens) * len(g.Inflight) }

// Check refuses an empty axis or a value below 1.
func (g Grid) Check() error {
	for name, axis := range map[string][]int{"rows": g.Rows, "lengths": g.Lens, "inflight": g.Inflight} {
		if len(axis) == 0 {
			return fmt.Errorf("tune: grid has no %s", name)
		}
		for _, v := range axis {
			if v < 1 {
				return fmt.Errorf("tune: grid %s value %d is below 1", name, v)
			}
		}
	}
	return nil
}

// Point is one configuration and what it measured.
type Point struct {
	Rows         int           `json:"rows"`
	Len          int           `json:"length"`
	Inflight     int           `json:"inflight"`
	Batches      int           `json:"batches"`
	Tokens       int64         `json:"tokens"`
	TokensPerSec float64       `json:"tokens_per_sec"`
	P50          time.Duration `json:"p50_ns"`
	P99          time.Duration `json:"p99_ns"`
	// Unfinished: no batch finished within the point's slot.
	Unfinished bool `json:"unfinished,omitempty"`
}

// Options configure Sweep.
type Options struct {
	Grid   Grid
	Budget time.Duration // the whole sweep; each point gets Budget / Grid.Size()
	Run    RunFunc
}

// Result is a sweep's measurements and its accounting.
type Result struct {
	Points []Point       `json:"points"`
	Budget time.Duration `json:"budget_ns"`
	// Slot is the time each point was given; Spent is the sum of the
	// points' measuring windows, which never exceeds Budget.
	Slot  time.Duration `json:"slot_ns"`
	Spent time.Duration `json:"spent_ns"`
}

// minSlot is the least time a point is worth measuring for.
const minSlot = 50 * time.Millisecond

// Sweep measures every point of the grid, one after another, each for
// its slot of the budget. Batches still in flight when a slot ends are
// cancelled and not counted. The first error from Run that is not the
// slot's own end stops the sweep: a backend failing mid-sweep is an
// error, not a point with no throughput.
func Sweep(ctx context.Context, opts Options) (*Result, error) {
	if err := opts.Grid.Check(); err != nil {
		return nil, err
	}
	if opts.Run == nil {
		return nil, errors.New("tune: no RunFunc")
	}
	slot := opts.Budget / time.Duration(opts.Grid.Size())
	if slot < minSlot {
		return nil, fmt.Errorf("tune: budget %v is too short for %d points (at least %v each)", opts.Budget, opts.Grid.Size(), minSlot)
	}
	res := &Result{Budget: opts.Budget, Slot: slot}
	for _, rows := range opts.Grid.Rows {
		for _, length := range opts.Grid.Lens {
			for _, inflight := range opts.Grid.Inflight {
				p, spent, err := measure(ctx, slot, Point{Rows: rows, Len: length, Inflight: inflight}, opts.Run)
				res.Spent += spent
				if err != nil {
					return res, fmt.Errorf("tune: rows %d, length %d, in flight %d: %w", rows, length, inflight, err)
				}
				res.Points = append(res.Points, p)
			}
		}
	}
	return res, nil
}

// measure runs p.Inflight workers sending batches until slot ends.
func measure(ctx context.Context, slot time.Duration, p Point, run RunFunc) (Point, time.Duration, error) {
	start := time.Now()
	end := start.Add(slot)
	pctx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	var (
		mu        sync.Mutex
		latencies []time.Duration
		tokens    int64
		firstErr  error
		wg        sync.WaitGroup
	)
	for range p.Inflight {
		wg.Go(func() {
			for pctx.Err() == nil {
				t0 := time.Now()
				n, err := run(pctx, p.Rows, p.Len)
				d := time.Since(t0)
				mu.Lock()
				switch {
				case err == nil:
					latencies = append(latencies, d)
					tokens += int64(n)
				// A backend that bounds its call by the slot's deadline
				// may time out a moment before pctx says so: both are
				// the slot's end, not a failure.
				case ctx.Err() != nil || (pctx.Err() == nil && time.Now().Before(end)):
					if firstErr == nil {
						firstErr = err
					}
					cancel()
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	// The window is the slot, or less when a failure cut it short.
	window := min(time.Since(start), slot)
	if firstErr != nil {
		return p, window, firstErr
	}
	if err := ctx.Err(); err != nil {
		return p, window, err
	}
	if len(latencies) == 0 {
		// A batch slower than the whole slot: a measurement too (this
		// shape is far past the knee), with no throughput.
		p.Unfinished = true
		return p, window, nil
	}
	slices.Sort(latencies)
	p.Batches, p.Tokens = len(latencies), tokens
	p.TokensPerSec = float64(tokens) / window.Seconds()
	p.P50, p.P99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
	return p, window, nil
}

// percentile of sorted, nearest rank.
func percentile(sorted []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
