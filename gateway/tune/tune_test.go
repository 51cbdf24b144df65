package tune

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestKnee(t *testing.T) {
	points := []Point{
		{Rows: 8, Len: 64, Inflight: 1, TokensPerSec: 50},
		{Rows: 16, Len: 64, Inflight: 1, TokensPerSec: 96},  // within 5% of the best, and smaller
		{Rows: 16, Len: 64, Inflight: 2, TokensPerSec: 99},  // as large, more in flight
		{Rows: 32, Len: 64, Inflight: 2, TokensPerSec: 100}, // the best
		{Rows: 64, Len: 64, Inflight: 1, Unfinished: true},
	}
	knee, best, err := Knee(points, Tolerance)
	if err != nil {
		t.Fatal(err)
	}
	if knee != points[1] || best != points[3] {
		t.Errorf("knee %+v best %+v", knee, best)
	}
	if _, _, err := Knee(nil, Tolerance); err == nil {
		t.Error("no points: no error")
	}
	if _, _, err := Knee([]Point{{Rows: 1, Len: 1, Inflight: 1, Unfinished: true}}, Tolerance); err == nil {
		t.Error("only unfinished points: no error")
	}
}

func TestRecommend(t *testing.T) {
	points := []Point{
		{Rows: 16, Len: 128, Inflight: 1, TokensPerSec: 50, P50: 10 * time.Millisecond},
		{Rows: 16, Len: 128, Inflight: 2, TokensPerSec: 100, P50: 20 * time.Millisecond},
	}
	r, err := Recommend(points)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{MaxBatchTokens: 2048, MaxBatchRequests: 16, TritonMaxInflight: 2, MaxBatchSize: 16,
		MaxQueueDelay: 0, InstanceCount: 2}
	for name, v := range want {
		if got, ok := r.Value(name); !ok || got != v {
			t.Errorf("%s = %d (%v), want %d", name, got, ok, v)
		}
	}
	for _, s := range append(r.Gateway, r.Triton...) {
		if s.Why == "" {
			t.Errorf("%s has no reason", s.Name)
		}
	}
}

// TestSweepAccounting: every point runs for its slot at most, the sum
// never exceeds the budget, and a failing run stops the sweep with an
// error naming the point.
func TestSweepAccounting(t *testing.T) {
	grid := Grid{Rows: []int{1, 2}, Lens: []int{8, 16}, Inflight: []int{1, 2}}
	run := func(ctx context.Context, rows, length int) (int, error) {
		select { // a batch takes 5ms, or until the slot ends
		case <-time.After(5 * time.Millisecond):
			return rows * length, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	res, err := Sweep(context.Background(), Options{Grid: grid, Budget: 800 * time.Millisecond, Run: run})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Points) != grid.Size() || res.Slot != 100*time.Millisecond || res.Spent > res.Budget {
		t.Errorf("%d points, slot %v, spent %v of %v", len(res.Points), res.Slot, res.Spent, res.Budget)
	}
	for _, p := range res.Points {
		if p.Batches == 0 || p.Tokens != int64(p.Batches*p.Rows*p.Len) || p.P99 < p.P50 {
			t.Errorf("point %+v", p)
		}
	}

	var calls atomic.Int64
	failing := func(ctx context.Context, rows, length int) (int, error) {
		if calls.Add(1) > 3 {
			return 0, errors.New("backend down")
		}
		return run(ctx, rows, length)
	}
	res, err = Sweep(context.Background(), Options{Grid: grid, Budget: 800 * time.Millisecond, Run: failing})
	if err == nil || !strings.Contains(err.Error(), "backend down") || !strings.Contains(err.Error(), "rows 1, length 8") {
		t.Errorf("err = %v", err)
	}
	if res == nil || res.Spent > res.Budget {
		t.Errorf("after the failure: %+v", res)
	}

	for _, bad := range []Options{
		{Grid: Grid{Rows: []int{1}, Lens: []int{8}}, Budget: time.Second, Run: run},
		{Grid: Grid{Rows: []int{0}, Lens: []int{8}, Inflight: []int{1}}, Budget: time.Second, Run: run},
		{Grid: grid, Budget: time.Millisecond, Run: run},
		{Grid: grid, Budget: time.Second},
	} {
		if _, err := Sweep(context.Background(), bad); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}

func TestMix(t *testing.T) {
	seq := func(n int) []int32 {
		s := make([]int32, n)
		for i := range s {
			s[i] = int32(n)
		}
		return s
	}
	m, err := NewMix([][]int32{seq(3), seq(10), seq(12), seq(40), nil})
	if err != nil {
		t.Fatal(err)
	}
	// Length 16 takes the inputs of 9..16 tokens: 10 and 12, in turn.
	b, tokens := m.Batch(3, 16)
	if b.Rows != 3 || b.Len != 16 || len(b.InputIDs) != 48 || tokens != 10+12+10 {
		t.Fatalf("batch %d×%d, %d ids, %d tokens", b.Rows, b.Len, len(b.InputIDs), tokens)
	}
	if b.InputIDs[0] != 10 || b.AttentionMask[9] != 1 || b.AttentionMask[10] != 0 || b.InputIDs[16] != 12 {
		t.Errorf("row 0 %v, mask %v", b.InputIDs[:16], b.AttentionMask[:16])
	}
	// Length 32 has none of 17..32: the longer input, cut to 32.
	if _, tokens := m.Batch(2, 32); tokens != 64 {
		t.Errorf("length 32: %d tokens, want 64", tokens)
	}
	// Length 4 has 3.
	if _, tokens := m.Batch(2, 4); tokens != 6 {
		t.Errorf("length 4: %d tokens, want 6", tokens)
	}
	if _, err := NewMix([][]int32{nil}); err == nil {
		t.Error("a mix without tokens: no error")
	}
}

func TestReadTexts(t *testing.T) {
	texts, err := ReadTexts(strings.NewReader(`{"text":"a"}` + "\n\n" + `{"text":"b","id":1}` + "\n"))
	if err != nil || len(texts) != 2 || texts[1] != "b" {
		t.Errorf("%q, %v", texts, err)
	}
	for in, want := range map[string]string{
		"":                        "no texts",
		`{"text":"a"}` + "\nnope": "line 2",
		`{"txt":"a"}`:             "line 1",
		`{"text":""}`:             "non-empty",
	} {
		if _, err := ReadTexts(strings.NewReader(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", in, err, want)
		}
	}
	if len(BuiltinTexts()) == 0 {
		t.Error("no built-in texts")
	}
}
