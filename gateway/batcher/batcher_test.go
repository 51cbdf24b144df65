package batcher

import (
	"context"
	"testing"
)

type item struct {
	ids []int32
	ctx context.Context
	tag int
}

func (it *item) Tokens() ([]int32, []int32) { return it.ids, nil }
func (it *item) Context() context.Context   { return it.ctx }

func mk(ctx context.Context, tag, n int) *item {
	ids := make([]int32, n)
	for i := range ids {
		ids[i] = int32(tag*100 + i + 1)
	}
	return &item{ids: ids, ctx: ctx, tag: tag}
}

func newQueue(t *testing.T, opts Options) *Queue[*item] {
	t.Helper()
	q, err := New[*item](opts)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func tags(items []*item) []int {
	var out []int
	for _, it := range items {
		out = append(out, it.tag)
	}
	return out
}

func TestCutGroupsByLengthUnderBudget(t *testing.T) {
	ctx := context.Background()
	q := newQueue(t, Options{MaxTokens: 40, MaxRows: 4})
	// arrival: long, short, long, short, short
	q.Push(mk(ctx, 0, 10), mk(ctx, 1, 2), mk(ctx, 2, 10), mk(ctx, 3, 2), mk(ctx, 4, 3))
	var seen []int
	for q.Len() > 0 {
		b, dropped, err := q.Next(ctx)
		if err != nil || len(dropped) > 0 {
			t.Fatalf("Next() = %v, %v, %v", tags(b), tags(dropped), err)
		}
		longest := 0
		for _, it := range b {
			longest = max(longest, len(it.ids))
		}
		if len(b)*longest > 40 || len(b) > 4 {
			t.Errorf("batch %v: %d rows × %d tokens exceeds the budget", tags(b), len(b), longest)
		}
		seen = append(seen, tags(b)...)
	}
	if len(seen) != 5 {
		t.Fatalf("items batched = %v, want all 5 once", seen)
	}
	// The oldest (a long one) anchors the first batch, which then takes the
	// other long one rather than padding short ones up to 10.
	if seen[0] != 0 || seen[1] != 2 {
		t.Errorf("first batch = %v, want the two long items first", seen[:2])
	}
}

func TestNextDropsDoneItems(t *testing.T) {
	ctx := context.Background()
	done, cancel := context.WithCancel(ctx)
	cancel()
	q := newQueue(t, Options{MaxTokens: 100, MaxRows: 8})
	q.Push(mk(done, 0, 3), mk(ctx, 1, 3))
	b, dropped, err := q.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := tags(dropped); len(got) != 1 || got[0] != 0 {
		t.Errorf("dropped = %v, want [0]", got)
	}
	if got := tags(b); len(got) != 1 || got[0] != 1 {
		t.Errorf("batch = %v, want [1]", got)
	}
}

func TestNextWaitsAndStops(t *testing.T) {
	q := newQueue(t, Options{MaxTokens: 100, MaxRows: 8})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, _, err := q.Next(ctx); errc <- err }()
	cancel()
	if err := <-errc; err != context.Canceled {
		t.Errorf("Next after cancel = %v, want context.Canceled", err)
	}
	got := make(chan []int, 1)
	go func() { b, _, _ := q.Next(context.Background()); got <- tags(b) }()
	q.Push(mk(context.Background(), 7, 1))
	if b := <-got; len(b) != 1 || b[0] != 7 {
		t.Errorf("Next after Push = %v, want [7]", b)
	}
}

func TestOversizedItemRunsAlone(t *testing.T) {
	ctx := context.Background()
	q := newQueue(t, Options{MaxTokens: 8, MaxRows: 4})
	q.Push(mk(ctx, 0, 20), mk(ctx, 1, 1))
	b, _, _ := q.Next(ctx)
	if got := tags(b); len(got) != 1 || got[0] != 0 {
		t.Errorf("batch = %v, want the oversized item alone", got)
	}
}

func TestPad(t *testing.T) {
	ctx := context.Background()
	q := newQueue(t, Options{MaxTokens: 100, MaxRows: 8, PadID: 9})
	b := q.Pad([]*item{mk(ctx, 0, 3), {ids: []int32{5}, ctx: ctx}})
	if b.Rows != 2 || b.Len != 3 {
		t.Fatalf("Pad shape = %d×%d, want 2×3", b.Rows, b.Len)
	}
	wantIDs := []int64{1, 2, 3, 5, 9, 9}
	wantMask := []int64{1, 1, 1, 1, 0, 0}
	for i := range wantIDs {
		if b.InputIDs[i] != wantIDs[i] || b.AttentionMask[i] != wantMask[i] {
			t.Fatalf("Pad ids %v mask %v, want %v %v", b.InputIDs, b.AttentionMask, wantIDs, wantMask)
		}
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	if _, err := New[*item](Options{MaxTokens: 0, MaxRows: 1}); err == nil {
		t.Error("New with MaxTokens 0 succeeded")
	}
}

func TestShortInputsAreNotPaddedToLongOnes(t *testing.T) {
	ctx := context.Background()
	q := newQueue(t, Options{MaxTokens: 16384, MaxRows: 32})
	q.Push(mk(ctx, 0, 512)) // the oldest: a long document
	for i := 1; i <= 10; i++ {
		q.Push(mk(ctx, i, 10)) // short queries
	}
	q.Push(mk(ctx, 11, 400)) // a passage close enough to share the long one's padding
	first, _, _ := q.Next(ctx)
	if got := tags(first); len(got) != 2 || got[0] != 0 || got[1] != 11 {
		t.Errorf("first batch = %v, want the document and the passage only", got)
	}
	second, _, _ := q.Next(ctx)
	if len(second) != 10 {
		t.Errorf("second batch = %v, want the ten short queries together", tags(second))
	}
}
