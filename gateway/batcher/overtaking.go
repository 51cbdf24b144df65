package batcher

import (
	"math"
	"time"
)

// waitShare is the part of an input's time left that the work run before
// it may take, at the rate measured: the rest is for its own batch, with
// as much again for the rate's error. It is admission's share (see
// infer's queueShare), renewed as time passes: an input admitted within
// it stays within it while the queue runs in order at that rate.
const waitShare = 0.5

// overtaking keeps the inputs a batch passes over, and those it takes, in
// time for their deadlines. Anchored on the oldest, batches otherwise
// fill with inputs of similar length whatever their age, and an input can
// wait for far more work than was queued ahead of it: measured with
// embedbench at 64 clients through the Triton stand-in, a request admitted
// behind 3 s of queued work waited 23 s of its 30, behind 17,000 tokens of
// inputs that came after it: each of its inputs of another length
// anchored a batch of newer ones. Admission counts only the work queued
// ahead; what passes a request later must fit in what its deadline leaves.
//
// Every waiting input has a slack: the tokens of newer work that may still
// run before it while the work before it (Ahead, the older inputs, and
// twice its own length, for a batch of its own) takes at most waitShare
// of its time left. An input joins the batch only if every older input
// left waiting has slack for what it adds (its padded tokens), which is
// then taken from theirs. An input behind its share (the rate fell since
// it was admitted) has none: nothing newer passes it. Only an input that
// would be late even with all its time left does not hold the others
// back: batching around it keeps the backend's rate for those that can
// still be served.
//
// And a batch holds no more than it can run, after Ahead, in waitShare of
// the time its most urgent member has left, so that an input that starts
// in time ends in time: on a slow backend a batch of --max-batch-tokens
// alone can take longer than half a deadline.
type overtaking struct {
	rate, ahead float64
	now         time.Time
	// slack by position in q.items, less what the batch took so far
	// (below 0 for an input behind its share); +Inf for inputs in the
	// batch, those without deadline and those late whatever happens.
	slack []float64
	// least[p] is the least slack of the positions before p.
	least []float64
	// room is the most padded tokens the batch may hold for its members.
	room float64
}

// slack measures the slack of every queued input at now, or returns nil
// (no limit) when b has no rate.
func (q *Queue[T]) slack(b Budget, now time.Time) *overtaking {
	if b.Rate <= 0 {
		return nil
	}
	o := &overtaking{rate: b.Rate, ahead: float64(b.Ahead), now: now, room: math.Inf(1),
		slack: make([]float64, len(q.items)), least: make([]float64, len(q.items)+1)}
	ahead := o.ahead
	for pos, it := range q.items {
		ids, _ := it.Tokens()
		before := ahead + 2*float64(len(ids))
		o.slack[pos] = math.Inf(1)
		if share := o.share(it); share/waitShare >= before { // else late even in order
			o.slack[pos] = share - before
		}
		ahead += float64(len(ids))
	}
	o.index()
	return o
}

// share is the tokens that the backend runs in waitShare of its time
// left; +Inf without deadline.
func (o *overtaking) share(it Item) float64 {
	d, ok := it.Context().Deadline()
	if !ok {
		return math.Inf(1)
	}
	return d.Sub(o.now).Seconds() * waitShare * o.rate
}

// index recomputes least from slack.
func (o *overtaking) index() {
	o.least[0] = math.Inf(1)
	for p, s := range o.slack {
		o.least[p+1] = min(o.least[p], s)
	}
}

// allows says whether the input at pos may join the batch at a cost of
// cost tokens, the batch then holding padded tokens: every older input
// left waiting has slack for it, and every member time for the batch.
func (o *overtaking) allows(it Item, pos, cost, padded int) bool {
	if o == nil {
		return true
	}
	return o.least[pos] >= float64(cost) && o.ahead+float64(padded) <= min(o.room, o.share(it))
}

// join puts the input at pos in the batch and takes cost from the slack
// of the older inputs left waiting.
func (o *overtaking) join(it Item, pos, cost int) {
	if o == nil {
		return
	}
	for p := range pos {
		o.slack[p] -= float64(cost) // +Inf stays
	}
	o.slack[pos] = math.Inf(1)
	o.index()
	o.room = min(o.room, o.share(it))
}
