package batcher

import (
	"math"
	"time"
)

// overtaking keeps the inputs that a batch passes over in time for their
// deadlines. Anchored on the oldest, batches otherwise fill with inputs of
// similar length whatever their age, and an input can wait for far more
// work than was queued ahead of it: measured with embedbench at 64
// clients through the Triton stand-in, a request admitted behind 3 s of
// queued work waited 23 s of its 30, behind 17,000 tokens of inputs that
// came after it: each of its inputs of another length anchored a batch
// of newer ones.
// Admission counts only the work queued ahead; what passes a request
// later must fit in what its deadline leaves.
//
// Every waiting input has a slack: the tokens of newer work that may still
// run before it and let it start in time for its own batch (one of the
// budget's size, at rate) to end before its deadline, the work queued
// ahead of it (Ahead and the older inputs) run first. An input joins the
// batch only if every older input left waiting keeps, after what the
// newcomer adds (its padded tokens), as much slack again as its own batch
// takes, for the rate's error. An input whose slack is already gone does
// not hold the others back: it would start too late even with nothing
// passing it, and batching around it keeps the backend's rate for those
// that can still be served.
type overtaking struct {
	// slack by position in q.items, less the margin and what the batch
	// took so far; +Inf for inputs in the batch, those without deadline
	// and those already late.
	slack []float64
	// least[p] is the least slack of the positions before p.
	least []float64
}

// slack measures the slack of every queued input at now, or returns nil
// (no limit) when b has no rate.
func (q *Queue[T]) slack(b Budget, now time.Time) *overtaking {
	if b.Rate <= 0 {
		return nil
	}
	batch := float64(b.MaxTokens) // one batch's work: its own, and the margin
	o := &overtaking{slack: make([]float64, len(q.items)), least: make([]float64, len(q.items)+1)}
	ahead := float64(b.Ahead)
	for pos, it := range q.items {
		o.slack[pos] = math.Inf(1)
		if d, ok := it.Context().Deadline(); ok {
			if s := d.Sub(now).Seconds()*b.Rate - batch - ahead; s >= 0 {
				o.slack[pos] = s - batch
			}
		}
		ids, _ := it.Tokens()
		ahead += float64(len(ids))
	}
	o.index()
	return o
}

// index recomputes least from slack.
func (o *overtaking) index() {
	o.least[0] = math.Inf(1)
	for p, s := range o.slack {
		o.least[p+1] = min(o.least[p], s)
	}
}

// allows says whether the input at pos may join the batch at a cost of
// cost tokens: every older input left waiting has slack for it.
func (o *overtaking) allows(pos, cost int) bool {
	return o == nil || o.least[pos] >= float64(cost)
}

// join puts the input at pos in the batch and takes cost from the slack
// of the older inputs left waiting.
func (o *overtaking) join(pos, cost int) {
	if o == nil {
		return
	}
	for p := range pos {
		o.slack[p] -= float64(cost) // +Inf stays
	}
	o.slack[pos] = math.Inf(1)
	o.index()
}
