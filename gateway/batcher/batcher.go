// Package batcher cuts length-sorted batches of tokenized inputs under a
// padded-token budget. Padding costs real compute (rows × longest is what the
// model runs), so each batch groups inputs of similar length; it is anchored
// on the oldest waiting input so that no input starves behind a stream of
// better-fitting ones.
package batcher

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/embedgate/embedgate/gateway"
	"github.com/prometheus/client_golang/prometheus"
)

// Item is one tokenized input waiting for inference.
type Item interface {
	// Tokens returns the input's ids and type ids (nil type ids mean zeros).
	Tokens() (ids, typeIDs []int32)
	// Context is the request's: once it is done the item is not run.
	Context() context.Context
}

// Options bound every batch.
type Options struct {
	MaxTokens int // rows × longest row
	MaxRows   int
	PadID     int32
	// CallTokens is what one backend call costs beyond its tokens,
	// counted in tokens (0 = 32, about the fixed cost of one small batch on
	// a MiniLM-size model on CPU). A row joins a batch only if the padding
	// it adds is at most its own length plus CallTokens: otherwise it runs
	// cheaper in a batch of its own size.
	CallTokens int
}

// Queue holds waiting items. Push never blocks: admission bounds the inflow.
type Queue[T Item] struct {
	opts  Options
	mu    sync.Mutex
	items []T
	ready chan struct{} // has a token while items is non-empty

	queued    prometheus.Gauge
	rows      prometheus.Histogram
	tokens    prometheus.Histogram
	padding   prometheus.Histogram
	cancelled prometheus.Counter
}

// New checks opts and builds the queue. Its metrics are registered by
// the caller (Collectors), which can then give them back when the queue
// goes away.
func New[T Item](opts Options) (*Queue[T], error) {
	if opts.MaxTokens < 1 || opts.MaxRows < 1 {
		return nil, errors.New("batcher: max tokens and max rows must be positive")
	}
	if opts.CallTokens <= 0 {
		opts.CallTokens = 32
	}
	return &Queue[T]{
		opts:  opts,
		ready: make(chan struct{}, 1),
		queued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "embedgate_queue_size", Help: "Inputs waiting for a batch.",
		}),
		rows: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "embedgate_batch_size", Help: "Rows per backend batch.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
		tokens: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "embedgate_batch_tokens", Help: "Padded tokens (rows × longest) per backend batch.",
			Buckets: prometheus.ExponentialBuckets(16, 2, 12),
		}),
		padding: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "embedgate_batch_padding_ratio", Help: "Share of a batch's tokens that are padding.",
			Buckets: prometheus.LinearBuckets(0, 0.1, 10),
		}),
		cancelled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "embedgate_queue_dropped_total", Help: "Inputs dropped before inference because their request was done.",
		}),
	}, nil
}

// Collectors are the queue's metrics, for the caller to register and,
// when the queue goes away (a model removed or reloaded), unregister.
func (q *Queue[T]) Collectors() []prometheus.Collector {
	return []prometheus.Collector{q.queued, q.rows, q.tokens, q.padding, q.cancelled}
}

// Push queues items.
func (q *Queue[T]) Push(items ...T) {
	q.mu.Lock()
	q.items = append(q.items, items...)
	q.queued.Set(float64(len(q.items)))
	q.mu.Unlock()
	q.signal()
}

// Len is the number of waiting items.
func (q *Queue[T]) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// Next waits for items and returns the next batch to run, plus the items
// dropped because their context ended while they waited (the caller answers
// them). It returns ctx's error once ctx is done.
func (q *Queue[T]) Next(ctx context.Context) (batch, dropped []T, err error) {
	return q.NextWithin(ctx, Budget{})
}

// Budget is what the caller knows of the backend when it asks for the
// next batch.
type Budget struct {
	// MaxTokens caps the batch's padded tokens below Options.MaxTokens (0
	// = no lower cap): a caller that knows how fast the backend goes can
	// keep a batch within the time a call may take. The oldest input is
	// taken even if it alone is longer.
	MaxTokens int
	// Rate is the real tokens the backend runs per second (0 = unknown)
	// and Ahead the tokens it has still to run before this batch (the
	// batches in flight). With a rate, an input joins a batch ahead of
	// older inputs only while those still start in time for their
	// deadlines (see overtaking).
	Rate  float64
	Ahead int
}

// NextWithin is Next under budget b.
func (q *Queue[T]) NextWithin(ctx context.Context, b Budget) (batch, dropped []T, err error) {
	if b.MaxTokens <= 0 || b.MaxTokens > q.opts.MaxTokens {
		b.MaxTokens = q.opts.MaxTokens
	}
	for {
		batch, dropped = q.cut(b)
		if len(batch) > 0 || len(dropped) > 0 {
			return batch, dropped, nil
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-q.ready:
		}
	}
}

// cut drops the items whose request is done and takes the next batch.
func (q *Queue[T]) cut(b Budget) (batch, dropped []T) {
	q.mu.Lock()
	defer q.mu.Unlock()
	dropped = q.dropDone()
	if len(q.items) == 0 {
		q.queued.Set(0)
		return nil, dropped
	}
	return q.take(q.pick(b, q.slack(b, time.Now()))), dropped
}

// dropDone removes the items whose request is done and returns them.
func (q *Queue[T]) dropDone() (dropped []T) {
	live := q.items[:0]
	for _, it := range q.items {
		if it.Context().Err() != nil {
			dropped = append(dropped, it)
			continue
		}
		live = append(live, it)
	}
	clear(q.items[len(live):])
	q.items = live
	q.cancelled.Add(float64(len(dropped)))
	return dropped
}

// pick chooses the next batch, as positions in q.items (not empty): the
// oldest item and its neighbours in length, added one at a time, the one
// that adds less padding first, while b.MaxTokens allows. A neighbour
// that would make an older item late (see overtaking) is left for a later
// batch and the next one is tried.
func (q *Queue[T]) pick(b Budget, pass *overtaking) []int {
	// order lists positions in q.items by length; stable, so equal lengths
	// keep arrival order.
	order := make([]int, len(q.items))
	for i := range order {
		order[i] = i
	}
	length := func(pos int) int { ids, _ := q.items[pos].Tokens(); return len(ids) }
	slices.SortStableFunc(order, func(a, b int) int { return length(a) - length(b) })

	anchor := slices.Index(order, 0) // the oldest item
	picked := []int{0}
	pass.join(q.items[0], 0, 0)
	lo, hi := anchor-1, anchor+1 // the next candidates, shorter and longer
	longest := length(0)
	for len(picked) < q.opts.MaxRows {
		shorter, longer := -1, -1
		if lo >= 0 {
			shorter = length(order[lo])
		}
		if hi < len(order) {
			longer = length(order[hi])
		}
		wasteLo, wasteHi := q.waste(b.MaxTokens, len(picked), longest, shorter, longer)
		var pos, cost, grown int
		switch {
		case wasteLo >= 0 && (wasteHi < 0 || wasteLo <= wasteHi):
			pos, cost, grown = order[lo], longest, longest
			lo--
		case wasteHi >= 0:
			pos, cost, grown = order[hi], longer+wasteHi, longer
			hi++
		default:
			return picked // nothing fits: stop
		}
		if !pass.allows(q.items[pos], pos, cost, (len(picked)+1)*grown) {
			continue
		}
		pass.join(q.items[pos], pos, cost)
		picked = append(picked, pos)
		longest = grown
	}
	return picked
}

// waste is the padding that the window's shorter and longer neighbours
// (their lengths, -1 for none) would each add to a batch of rows rows
// padded to longest, or -1 for a neighbour that does not fit the budget
// (maxTokens) or would run cheaper in a batch of its own size.
//
// The window grows towards the neighbour that adds the least padding: a
// shorter one pads itself up to longest, a longer one pads every row so
// far. Padding on CPU costs as much as real tokens: measured with
// embedbench, filling rows regardless padded 65-70% of a mixed load at low
// concurrency.
func (q *Queue[T]) waste(maxTokens, rows, longest, shorter, longer int) (wasteLo, wasteHi int) {
	wasteLo, wasteHi = -1, -1
	if shorter >= 0 && (rows+1)*longest <= maxTokens {
		if w := longest - shorter; w <= shorter+q.opts.CallTokens {
			wasteLo = w
		}
	}
	if longer >= 0 {
		if w := (longer - longest) * rows; (rows+1)*longer <= maxTokens && w <= longer+q.opts.CallTokens {
			wasteHi = w
		}
	}
	return wasteLo, wasteHi
}

// take removes the items at positions from the queue and returns them in
// arrival order; the rest keep theirs.
func (q *Queue[T]) take(positions []int) (batch []T) {
	picked := make([]bool, len(q.items))
	for _, pos := range positions {
		picked[pos] = true
	}
	rest := q.items[:0]
	for i, it := range q.items {
		if picked[i] {
			batch = append(batch, it)
		} else {
			rest = append(rest, it)
		}
	}
	clear(q.items[len(rest):])
	q.items = rest
	q.queued.Set(float64(len(rest)))
	if len(rest) > 0 {
		q.signal()
	}
	return batch
}

// signal wakes Next; the token stays while no one waits.
func (q *Queue[T]) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// Pad builds the padded [rows, longest] batch for items, right-padded with
// the queue's pad id, attention 0 and type id 0, and records its shape.
func (q *Queue[T]) Pad(items []T) *gateway.Batch {
	longest, real := 0, 0
	for _, it := range items {
		ids, _ := it.Tokens()
		longest = max(longest, len(ids))
		real += len(ids)
	}
	n := len(items) * longest
	b := &gateway.Batch{
		Rows:          len(items),
		Len:           longest,
		InputIDs:      make([]int64, n),
		AttentionMask: make([]int64, n),
		TokenTypeIDs:  make([]int64, n),
	}
	for r, it := range items {
		ids, types := it.Tokens()
		row := r * longest
		for i, id := range ids {
			b.InputIDs[row+i] = int64(id)
			b.AttentionMask[row+i] = 1
		}
		for i, t := range types {
			b.TokenTypeIDs[row+i] = int64(t)
		}
		for i := len(ids); i < longest; i++ {
			b.InputIDs[row+i] = int64(q.opts.PadID)
		}
	}
	q.rows.Observe(float64(len(items)))
	q.tokens.Observe(float64(n))
	if n > 0 {
		q.padding.Observe(float64(n-real) / float64(n))
	}
	return b
}
