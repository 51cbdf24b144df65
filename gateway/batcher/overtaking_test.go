package batcher

import (
	"context"
	"slices"
	"testing"
	"time"
)

// The queue of the tests below, in arrival order: a short input (the
// oldest), a long one whose request has deadline left, then three short
// ones. The long one cannot share the short ones' batch (2 × 30 > 40), so
// every short one batched with the oldest passes it. The backend runs 100
// tokens/s: the long input's slack is what half its time left runs (50
// tokens a second) less the oldest (10) and twice its length (60).
func overtakingQueue(t *testing.T, left time.Duration) *Queue[*item] {
	t.Helper()
	ctx := context.Background()
	long, cancel := context.WithTimeout(ctx, left)
	t.Cleanup(cancel)
	q := newQueue(t, Options{MaxTokens: 40, MaxRows: 4})
	q.Push(mk(ctx, 0, 10), mk(long, 1, 30), mk(ctx, 2, 10), mk(ctx, 3, 10), mk(ctx, 4, 10))
	return q
}

func nextTags(t *testing.T, q *Queue[*item], b Budget) []int {
	t.Helper()
	batch, _, err := q.NextWithin(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	return tags(batch)
}

// Newer inputs pass an older one only within its slack: with 1.5 s left,
// the long input has 5 tokens of slack, not enough for one short input
// (10); with 2.2 s it has 40, enough for all three.
func TestNewerInputsPassOnlyWithinTheSlack(t *testing.T) {
	b := Budget{Rate: 100}
	q := overtakingQueue(t, 1500*time.Millisecond)
	for _, want := range [][]int{{0}, {1}, {2, 3, 4}} {
		if got := nextTags(t, q, b); !slices.Equal(got, want) {
			t.Fatalf("batch %v, want %v: the short inputs must not pass the long one", got, want)
		}
	}
	q = overtakingQueue(t, 2200*time.Millisecond)
	if got := nextTags(t, q, b); !slices.Equal(got, []int{0, 2, 3, 4}) {
		t.Errorf("batch %v, want [0 2 3 4]: the long input has slack for them", got)
	}
}

// Work still in the backend counts ahead of every queued input.
func TestWorkInFlightTakesSlack(t *testing.T) {
	q := overtakingQueue(t, 2200*time.Millisecond)
	if got := nextTags(t, q, Budget{Rate: 100, Ahead: 35}); !slices.Equal(got, []int{0}) {
		t.Errorf("batch %v with 0.35 s of work in flight, want [0] alone", got)
	}
}

// A batch holds no more than half its most urgent member's time left
// runs: 0.5 s left at 100 tokens/s is room for 25 tokens, two rows of 10.
func TestBatchFitsItsMembersDeadlines(t *testing.T) {
	ctx := context.Background()
	urgent, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	q := newQueue(t, Options{MaxTokens: 40, MaxRows: 4})
	q.Push(mk(urgent, 0, 10), mk(ctx, 1, 10), mk(ctx, 2, 10), mk(ctx, 3, 10))
	if got := nextTags(t, q, Budget{Rate: 100}); !slices.Equal(got, []int{0, 1}) {
		t.Errorf("batch %v, want [0 1]", got)
	}
}

// An input behind its share (1.2 s left: 60 tokens for the 70 before it)
// lets nothing newer pass; one too late even with all its time (0.5 s: 50
// tokens for 70) does not hold the others back; without a rate nothing
// is held back.
func TestLateOrUnmeasuredInputsDoNotHoldBatches(t *testing.T) {
	q := overtakingQueue(t, 1200*time.Millisecond)
	if got := nextTags(t, q, Budget{Rate: 100}); !slices.Equal(got, []int{0}) {
		t.Errorf("batch %v, want [0] alone: the long input is behind its share", got)
	}
	q = overtakingQueue(t, 500*time.Millisecond)
	if got := nextTags(t, q, Budget{Rate: 100}); !slices.Equal(got, []int{0, 2, 3, 4}) {
		t.Errorf("batch %v, want [0 2 3 4]: the long input is late whatever happens", got)
	}
	q = overtakingQueue(t, 1500*time.Millisecond)
	if got := nextTags(t, q, Budget{}); !slices.Equal(got, []int{0, 2, 3, 4}) {
		t.Errorf("batch %v with no rate, want [0 2 3 4]", got)
	}
}

func TestNextWithinCapsTheBatch(t *testing.T) {
	ctx := context.Background()
	q := newQueue(t, Options{MaxTokens: 40, MaxRows: 4})
	q.Push(mk(ctx, 0, 10), mk(ctx, 1, 10), mk(ctx, 2, 10), mk(ctx, 3, 30))
	if got := nextTags(t, q, Budget{MaxTokens: 20}); !slices.Equal(got, []int{0, 1}) {
		t.Errorf("batch %v under 20 tokens, want [0 1]", got)
	}
	// Alone, an input longer than the cap still runs.
	q = newQueue(t, Options{MaxTokens: 40, MaxRows: 4})
	q.Push(mk(ctx, 5, 30), mk(ctx, 6, 10))
	if got := nextTags(t, q, Budget{MaxTokens: 20}); !slices.Equal(got, []int{5}) {
		t.Errorf("batch %v, want the long input alone", got)
	}
}
