package infer

import (
	"context"
	"math"
	"sync"

	"github.com/embedgate/embedgate/gateway/batcher"
)

// inflight is the work handed to the backend and not yet returned: how
// many batches and their padded tokens.
type inflight struct {
	mu      sync.Mutex
	batches int
	tokens  int
	freed   chan struct{} // has a token after a batch returned
}

func newInflight() *inflight { return &inflight{freed: make(chan struct{}, 1)} }

func (f *inflight) add(tokens int) {
	f.mu.Lock()
	f.batches++
	f.tokens += tokens
	f.mu.Unlock()
}

func (f *inflight) done(tokens int) {
	f.mu.Lock()
	f.batches--
	f.tokens -= tokens
	f.mu.Unlock()
	select {
	case f.freed <- struct{}{}:
	default:
	}
}

func (f *inflight) load() (batches, tokens int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.batches, f.tokens
}

// room waits until the backend can take another batch and says what it
// may hold (see batcher.Budget): how many padded tokens, and the rate and
// work in flight by which the batcher keeps the inputs it passes over in
// time for their deadlines. A batch may start while fewer than
// MaxInflight run and, when the backend bounds each call in time
// (CallTimeout), while the work in flight and a full batch would be done
// within half of that time at the measured rate; a batch also holds no
// more than that (but always room for one input of the max length).
//
// Why: batches in flight to Triton wait in its queue, and that wait is on
// the call's clock. With 4 batches in flight to a model running one at a
// time, the last one waited for the three before it, and a call of long
// inputs passed the 10 s timeout: its requests ended 504 (and the gateway
// unready) though the backend never stalled (measured with embedbench at
// 64 clients through the Triton stand-in).
func (e *Engine) room(ctx context.Context) (batcher.Budget, error) {
	for {
		if err := ctx.Err(); err != nil {
			return batcher.Budget{}, err
		}
		rate := e.backlog.Rate()
		full, budget := e.batchBudget(rate)
		batches, tokens := e.flight.load()
		if batches == 0 || (batches < e.inflightLimit() && tokens+full <= budget) {
			return batcher.Budget{MaxTokens: full, Rate: rate, Ahead: tokens}, nil
		}
		select {
		case <-e.flight.freed:
		case <-ctx.Done():
			return batcher.Budget{}, ctx.Err()
		}
	}
}

// inflightLimit is how many batches may run at once: an elastic
// backend's count now, else MaxInflight.
func (e *Engine) inflightLimit() int {
	if b, ok := e.backend.(elasticBackend); ok {
		return max(b.MaxInflight(), 1)
	}
	return e.opts.MaxInflight
}

// callShare is the part of a backend call's timeout that the work in
// flight may fill at the measured rate: the rest absorbs a slower moment
// and the rate's error.
const callShare = 0.5

// batchBudget is the most padded tokens one batch may hold (full) and
// the most the batches in flight may hold together (budget): the work the
// backend does, at its measured rate, in half of a call's timeout. With no
// timeout or no rate yet, only MaxBatchTokens bounds a batch.
func (e *Engine) batchBudget(rate float64) (full, budget int) {
	if e.opts.CallTimeout <= 0 || rate <= 0 {
		return e.opts.MaxBatchTokens, math.MaxInt
	}
	budget = int(min(rate*callShare*e.opts.CallTimeout.Seconds(), math.MaxInt32))
	full = min(e.opts.MaxBatchTokens, max(budget, e.opts.MaxInputLength))
	return full, max(budget, full)
}
