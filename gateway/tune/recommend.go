package tune

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Tolerance is how far below the best throughput the knee may be: past
// it, a larger batch or more batches in flight buy too little to be worth
// their latency and memory.
const Tolerance = 0.05

// Knee returns the best point and the knee: the smallest point (fewest
// padded tokens per batch, then fewest in flight, then lowest p99) whose
// throughput is within tol of the best.
func Knee(points []Point, tol float64) (knee, best Point, err error) {
	if len(points) == 0 {
		return Point{}, Point{}, errors.New("tune: no points measured")
	}
	best = points[0]
	for _, p := range points[1:] {
		if p.TokensPerSec > best.TokensPerSec {
			best = p
		}
	}
	if best.TokensPerSec <= 0 {
		return Point{}, Point{}, errors.New("tune: no batch finished at any point: give the sweep a longer budget")
	}
	floor := best.TokensPerSec * (1 - tol)
	first := true
	for _, p := range points {
		if p.TokensPerSec < floor {
			continue
		}
		if first || smaller(p, knee) {
			knee, first = p, false
		}
	}
	return knee, best, nil
}

func smaller(a, b Point) bool {
	if at, bt := a.Rows*a.Len, b.Rows*b.Len; at != bt {
		return at < bt
	}
	if a.Inflight != b.Inflight {
		return a.Inflight < b.Inflight
	}
	return a.P99 < b.P99
}

// Setting is one recommended value and the measurement behind it.
type Setting struct {
	Name  string `json:"name"`
	Value int64  `json:"value"`
	Why   string `json:"why"`
}

// Recommendation is what a sweep suggests for one model.
type Recommendation struct {
	Knee Point `json:"knee"`
	Best Point `json:"best"`
	// Gateway holds --max-batch-tokens, --max-batch-requests and
	// --triton-max-inflight; Triton holds max_batch_size,
	// max_queue_delay_microseconds and instance_group count.
	Gateway []Setting `json:"gateway"`
	Triton  []Setting `json:"triton"`
}

// Value returns the setting named name, and whether there is one.
func (r Recommendation) Value(name string) (int64, bool) {
	for _, s := range append(append([]Setting(nil), r.Gateway...), r.Triton...) {
		if s.Name == name {
			return s.Value, true
		}
	}
	return 0, false
}

// The names of the settings, as the flags and config.pbtxt spell them.
const (
	MaxBatchTokens    = "max-batch-tokens"
	MaxBatchRequests  = "max-batch-requests"
	TritonMaxInflight = "triton-max-inflight"
	MaxBatchSize      = "max_batch_size"
	MaxQueueDelay     = "max_queue_delay_microseconds"
	InstanceCount     = "instance_group.count"
)

// Recommend derives the settings from a sweep's points.
func Recommend(points []Point) (Recommendation, error) {
	knee, best, err := Knee(points, Tolerance)
	if err != nil {
		return Recommendation{}, err
	}
	r := Recommendation{Knee: knee, Best: best}
	r.Gateway = []Setting{
		{MaxBatchTokens, int64(knee.Rows * knee.Len), fmt.Sprintf("the knee's %d rows × %d tokens ran %.0f tokens/s (p50 %v, p99 %v), within %.0f%% of the best %.0f tokens/s (%d × %d, %d in flight)",
			knee.Rows, knee.Len, knee.TokensPerSec, round(knee.P50), round(knee.P99), Tolerance*100, best.TokensPerSec, best.Rows, best.Len, best.Inflight)},
		{MaxBatchRequests, int64(knee.Rows), fmt.Sprintf("%d rows per batch at the knee; more rows per batch did not raise tokens/s by %.0f%%", knee.Rows, Tolerance*100)},
		{TritonMaxInflight, int64(knee.Inflight), fmt.Sprintf("%d batches in flight reached %.0f tokens/s; more only queued in Triton (p99 %v)", knee.Inflight, knee.TokensPerSec, round(knee.P99))},
	}
	overlap := overlapOf(points, knee)
	r.Triton = []Setting{
		{MaxBatchSize, int64(knee.Rows), fmt.Sprintf("the gateway sends up to %d rows per batch (--max-batch-requests); Triton must accept them", knee.Rows)},
		{MaxQueueDelay, 0, fmt.Sprintf("the gateway sends batches already cut to the knee's %d × %d; Triton waiting for more would only add to its p50 of %v (it still merges equal shapes that are queued)",
			knee.Rows, knee.Len, round(knee.P50))},
		{InstanceCount, int64(max(1, math.Round(overlap))), instanceWhy(knee, overlap)},
	}
	return r, nil
}

func instanceWhy(knee Point, overlap float64) string {
	if knee.Inflight == 1 {
		return fmt.Sprintf("one batch in flight already reached the knee's %.0f tokens/s: nothing measured shows the server running two at once", knee.TokensPerSec)
	}
	return fmt.Sprintf("%d in flight ran %.2f× the tokens/s of 1 in flight at %d × %d: the batches the server actually ran at once",
		knee.Inflight, overlap, knee.Rows, knee.Len)
}

// overlapOf is how many batches' worth of work the server did at once at
// the knee: its throughput over that of the same shape with one batch in
// flight (1 when that was not measured).
func overlapOf(points []Point, knee Point) float64 {
	for _, p := range points {
		if p.Rows == knee.Rows && p.Len == knee.Len && p.Inflight == 1 && p.TokensPerSec > 0 {
			return knee.TokensPerSec / p.TokensPerSec
		}
	}
	return 1
}

func round(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }
