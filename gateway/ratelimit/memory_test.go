package ratelimit

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// fakeClock is a Memory clock moved by hand.
type fakeClock struct{ t time.Time }

func (f *fakeClock) now() time.Time          { return f.t }
func (f *fakeClock) advance(d time.Duration) { f.t = f.t.Add(d) }

func newTestMemory(opts MemoryOptions) (*Memory, *fakeClock) {
	m := NewMemory(opts)
	clk := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	m.now = clk.now
	return m, clk
}

// step is one call in a semantics table: wait, then charge.
type step struct {
	wait      time.Duration
	tokens    int // 0: a request; > 0: a token charge
	allowed   bool
	remaining int
	reset     time.Duration
	retry     time.Duration // checked when !allowed
}

func TestMemorySemantics(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name  string
		limit Limit
		steps []step
	}{
		{
			name:  "burst then rate",
			limit: Limit{RPS: 10, Burst: 3},
			steps: []step{
				{allowed: true, remaining: 2, reset: 100 * ms},
				{allowed: true, remaining: 1, reset: 200 * ms},
				{allowed: true, remaining: 0, reset: 300 * ms},
				{allowed: false, remaining: 0, reset: 300 * ms, retry: 100 * ms},
				{wait: 50 * ms, allowed: false, remaining: 0, reset: 250 * ms, retry: 50 * ms},
				{wait: 50 * ms, allowed: true, remaining: 0, reset: 300 * ms},
				{wait: 300 * ms, allowed: true, remaining: 2, reset: 100 * ms},
			},
		},
		{
			name:  "fractional rate",
			limit: Limit{RPS: 0.5, Burst: 1},
			steps: []step{
				{allowed: true, remaining: 0, reset: 2 * time.Second},
				{wait: time.Second, allowed: false, remaining: 0, reset: time.Second, retry: time.Second},
				{wait: time.Second, allowed: true, remaining: 0, reset: 2 * time.Second},
			},
		},
		{
			name:  "burst below one counts as one",
			limit: Limit{RPS: 1},
			steps: []step{
				{allowed: true, remaining: 0, reset: time.Second},
				{allowed: false, remaining: 0, reset: time.Second, retry: time.Second},
			},
		},
		{
			name:  "tokens: over remaining charges nothing, smaller passes",
			limit: Limit{TPM: 1000}, // 60ms per token, 1000 at once
			steps: []step{
				{tokens: 600, allowed: true, remaining: 400, reset: 36 * time.Second},
				{tokens: 500, allowed: false, remaining: 400, reset: 36 * time.Second, retry: 6 * time.Second},
				{tokens: 400, allowed: true, remaining: 0, reset: 60 * time.Second},
				{wait: 6 * time.Second, tokens: 100, allowed: true, remaining: 0, reset: 60 * time.Second},
			},
		},
		{
			name:  "tokens: more than a minute's worth never passes",
			limit: Limit{TPM: 100},
			steps: []step{
				{tokens: 101, allowed: false, remaining: 100, reset: 0, retry: 600 * ms},
				{tokens: 100, allowed: true, remaining: 0, reset: time.Minute},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, clk := newTestMemory(MemoryOptions{})
			for i, s := range tt.steps {
				clk.advance(s.wait)
				got := charge1(t, m, "k", tt.limit, s.tokens)
				want := Result{Allowed: s.allowed, Limit: got.Limit, Remaining: s.remaining, Reset: s.reset}
				if !s.allowed {
					want.RetryAfter = s.retry
				}
				if !closeResult(got, want) {
					t.Errorf("step %d: got %+v, want %+v", i, got, want)
				}
			}
		})
	}
}

// limiter is what the server needs of Memory and Redis (server.Limiter):
// the tests hold both to it.
type limiter interface {
	AllowRequest(ctx context.Context, key string, l Limit) (Result, error)
	AllowTokens(ctx context.Context, key string, l Limit, tokens int) (Result, error)
}

var _, _ limiter = (*Memory)(nil), (*Redis)(nil)

// charge1 is one request (tokens == 0) or token charge.
func charge1(t *testing.T, lim limiter, key string, l Limit, tokens int) Result {
	t.Helper()
	var res Result
	var err error
	if tokens == 0 {
		res, err = lim.AllowRequest(context.Background(), key, l)
	} else {
		res, err = lim.AllowTokens(context.Background(), key, l, tokens)
	}
	if err != nil {
		t.Fatalf("allow: %v", err)
	}
	return res
}

// closeResult compares results, durations to within 1ms (float rounding in
// the GCRA arithmetic; Redis' script rounds through strings).
func closeResult(got, want Result) bool {
	near := func(a, b time.Duration) bool { return (a - b).Abs() <= time.Millisecond }
	return got.Allowed == want.Allowed && got.Limit == want.Limit && got.Remaining == want.Remaining &&
		got.StoreDown == want.StoreDown && near(got.Reset, want.Reset) && near(got.RetryAfter, want.RetryAfter)
}

func TestMemoryNoLimit(t *testing.T) {
	m := NewMemory(MemoryOptions{})
	for range 1000 {
		if res := charge1(t, m, "k", Limit{}, 0); !res.Allowed || res.Limit != 0 {
			t.Fatalf("AllowRequest without a limit = %+v, want allowed with Limit 0", res)
		}
		if res := charge1(t, m, "k", Limit{RPS: 1}, 1_000_000); !res.Allowed || res.Limit != 0 {
			t.Fatalf("AllowTokens without TPM = %+v, want allowed with Limit 0", res)
		}
	}
	if m.Len() != 0 {
		t.Errorf("Len() = %d after unlimited calls, want 0", m.Len())
	}
}

func TestMemoryKeysIndependent(t *testing.T) {
	m, _ := newTestMemory(MemoryOptions{})
	l := Limit{RPS: 1, Burst: 2, TPM: 10}
	for range 2 {
		charge1(t, m, "a", l, 0)
	}
	if res := charge1(t, m, "a", l, 0); res.Allowed {
		t.Fatalf("third request of a = %+v, want refused", res)
	}
	if res := charge1(t, m, "b", l, 0); !res.Allowed || res.Remaining != 1 {
		t.Errorf("first request of b = %+v, want allowed with 1 remaining", res)
	}
	// a's request bucket is empty; its token bucket is its own.
	if res := charge1(t, m, "a", l, 10); !res.Allowed || res.Remaining != 0 {
		t.Errorf("10 tokens for a = %+v, want allowed with 0 remaining", res)
	}
}

func TestMemoryEviction(t *testing.T) {
	m, clk := newTestMemory(MemoryOptions{})
	l := Limit{RPS: 10, Burst: 5} // refills fully in 500ms
	for i := range 50 {
		charge1(t, m, fmt.Sprint("k", i), l, 0)
	}
	if m.Len() != 50 {
		t.Fatalf("Len() = %d, want 50", m.Len())
	}
	// A full bucket answers like no bucket, so it may go: the next call
	// after sweepEvery drops all of them.
	clk.advance(sweepEvery)
	charge1(t, m, "fresh", l, 0)
	if m.Len() != 1 {
		t.Errorf("Len() after sweep = %d, want 1 (only the fresh key)", m.Len())
	}
	// A bucket still refilling is kept, and its state survives the sweep.
	for range 5 {
		charge1(t, m, "busy", Limit{RPS: 0.01, Burst: 5}, 0)
	}
	clk.advance(sweepEvery)
	charge1(t, m, "other", l, 0)
	if res := charge1(t, m, "busy", Limit{RPS: 0.01, Burst: 5}, 0); res.Allowed {
		t.Errorf("busy key after a sweep = %+v, want still refused", res)
	}
}

func TestMemoryBounded(t *testing.T) {
	m, clk := newTestMemory(MemoryOptions{MaxKeys: 10})
	slow := Limit{RPS: 0.001, Burst: 1} // buckets stay busy for 1000s
	for i := range 100 {
		clk.advance(time.Millisecond)
		if res := charge1(t, m, fmt.Sprint("k", i), slow, 0); !res.Allowed {
			t.Fatalf("first request of k%d = %+v, want allowed", i, res)
		}
		if m.Len() > 10 {
			t.Fatalf("Len() = %d after %d keys, want <= 10", m.Len(), i+1)
		}
	}
}

func BenchmarkMemoryAllow(b *testing.B) {
	m := NewMemory(MemoryOptions{})
	l := Limit{RPS: 1e9, Burst: 1e6}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.AllowRequest(ctx, "bench", l); err != nil {
			b.Fatal(err)
		}
	}
}

func TestLimitOr(t *testing.T) {
	d := Limit{RPS: 80, Burst: 50, TPM: 1000}
	if got := (Limit{RPS: 5}).Or(d); got != (Limit{RPS: 5, Burst: 50, TPM: 1000}) {
		t.Errorf("Limit{RPS: 5}.Or(%+v) = %+v", d, got)
	}
	if got := (Limit{}).Or(d); got != d {
		t.Errorf("Limit{}.Or(%+v) = %+v, want the defaults", d, got)
	}
}
