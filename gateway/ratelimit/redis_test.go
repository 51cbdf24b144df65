package ratelimit

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/embedgate/embedgate/gateway/internal/redistest"
	"github.com/embedgate/embedgate/gateway/internal/testenv"
)

type redisFixture struct {
	lim  *Redis
	logs *testenv.LogBuffer
	reg  *prometheus.Registry
}

func newTestRedis(t *testing.T, url string, opts RedisOptions) redisFixture {
	t.Helper()
	logs := &testenv.LogBuffer{}
	reg := prometheus.NewRegistry()
	lim, err := NewRedis(url, opts, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), reg)
	if err != nil {
		t.Fatalf("NewRedis: %v", err)
	}
	t.Cleanup(func() { _ = lim.Close() })
	return redisFixture{lim: lim, logs: logs, reg: reg}
}

func TestRedisSharedAcrossInstances(t *testing.T) {
	srv := redistest.Start(t)
	a := newTestRedis(t, srv.URL(), RedisOptions{}).lim
	b := newTestRedis(t, srv.URL(), RedisOptions{}).lim
	ctx := context.Background()
	l := Limit{RPS: 20, Burst: 5}

	// Both replicas hammer one key for about a second; together they must
	// admit what one limiter would: the burst plus the rate over the time.
	admitted := 0
	start := time.Now()
	var last time.Time
	for i := 0; time.Since(start) < time.Second; i++ {
		lim := a
		if i%2 == 1 {
			lim = b
		}
		last = time.Now()
		res, err := lim.AllowRequest(ctx, "key:shared", l)
		if err != nil || res.StoreDown {
			t.Fatalf("AllowRequest = %+v, %v", res, err)
		}
		if res.Allowed {
			admitted++
		}
	}
	want := float64(l.Burst) + l.RPS*last.Sub(start).Seconds()
	if d := float64(admitted) - want; d < -1 || d > 1 {
		t.Errorf("admitted %d across two limiters in %v, want %.1f ± 1", admitted, last.Sub(start), want)
	}

	// Another key is unaffected.
	res, err := b.AllowRequest(ctx, "key:other", l)
	if err != nil || !res.Allowed || res.Remaining != l.Burst-1 || res.Limit != l.Burst {
		t.Errorf("other key: AllowRequest = %+v, %v; want allowed, limit %d, remaining %d", res, err, l.Burst, l.Burst-1)
	}
}

// TestRedisMatchesMemory runs the same quick sequence against both
// limiters: the same GCRA must give the same answers.
func TestRedisMatchesMemory(t *testing.T) {
	srv := redistest.Start(t)
	r := newTestRedis(t, srv.URL(), RedisOptions{}).lim
	m := NewMemory(MemoryOptions{})
	seq := []struct {
		l      Limit
		tokens int
	}{
		{Limit{RPS: 1, Burst: 3}, 0}, {Limit{RPS: 1, Burst: 3}, 0}, {Limit{RPS: 1, Burst: 3}, 0},
		{Limit{RPS: 1, Burst: 3}, 0}, {Limit{RPS: 1, Burst: 3}, 0},
		{Limit{TPM: 1000}, 600}, {Limit{TPM: 1000}, 500}, {Limit{TPM: 1000}, 400},
		{Limit{TPM: 1000}, 1}, {Limit{TPM: 50}, 51},
	}
	for i, s := range seq {
		key := "k" + string(rune('a'+i/5)) // requests on one key, tokens on another
		got := charge1(t, r, key, s.l, s.tokens)
		want := charge1(t, m, key, s.l, s.tokens)
		// Time passes between Redis calls; allow a little drift.
		if got.Allowed != want.Allowed || got.Limit != want.Limit || got.Remaining != want.Remaining ||
			(got.Reset-want.Reset).Abs() > 50*time.Millisecond || (got.RetryAfter-want.RetryAfter).Abs() > 50*time.Millisecond {
			t.Errorf("step %d: Redis %+v, Memory %+v", i, got, want)
		}
	}
}

func TestRedisTokens(t *testing.T) {
	srv := redistest.Start(t)
	r := newTestRedis(t, srv.URL(), RedisOptions{}).lim
	l := Limit{RPS: 100, Burst: 100, TPM: 6000} // 10ms per token

	res := charge1(t, r, "key:t", l, 5000)
	if !res.Allowed || res.Remaining != 1000 || res.Limit != 6000 {
		t.Fatalf("5000 tokens = %+v, want allowed, limit 6000, remaining 1000", res)
	}
	res = charge1(t, r, "key:t", l, 2000)
	if res.Allowed || res.Remaining < 1000 || res.Remaining > 1010 {
		t.Fatalf("2000 more tokens = %+v, want refused with about 1000 remaining", res)
	}
	if res.Limit != 6000 || res.RetryAfter <= 9*time.Second || res.RetryAfter > 10*time.Second || res.Reset <= 0 {
		t.Errorf("refusal = %+v, want limit 6000, a retry within (9s, 10s] and a reset", res)
	}
	// Nothing was charged: a smaller request still passes.
	if res = charge1(t, r, "key:t", l, 900); !res.Allowed {
		t.Errorf("900 tokens after a refusal = %+v, want allowed", res)
	}
}

func TestRedisDown(t *testing.T) {
	for _, failClosed := range []bool{false, true} {
		name := "fail open"
		if failClosed {
			name = "fail closed"
		}
		t.Run(name, func(t *testing.T) {
			srv := redistest.Start(t)
			opts := RedisOptions{Timeout: 50 * time.Millisecond, FailClosed: failClosed, ProbeInterval: 100 * time.Millisecond}
			f := newTestRedis(t, srv.URL(), opts)
			l := Limit{RPS: 1, Burst: 2}
			if res := charge1(t, f.lim, "key:d", l, 0); !res.Allowed || res.StoreDown {
				t.Fatalf("with Redis up: %+v, want allowed", res)
			}

			srv.Kill()
			for i := range 20 {
				start := time.Now()
				res := charge1(t, f.lim, "key:d", l, 0)
				// A generous bound: the point is "not go-redis' 5s defaults".
				if d := time.Since(start); d > time.Second {
					t.Errorf("call %d with Redis dead took %v", i, d)
				}
				if !res.StoreDown || res.Allowed == failClosed {
					t.Fatalf("call %d with Redis dead = %+v, want StoreDown, allowed=%v", i, res, !failClosed)
				}
				if failClosed && res.RetryAfter <= 0 {
					t.Errorf("fail-closed refusal has RetryAfter %v, want > 0", res.RetryAfter)
				}
			}
			if n := strings.Count(f.logs.String(), "unreachable"); n != 1 {
				t.Errorf("logged the outage %d times, want once:\n%s", n, f.logs)
			}
			if up := testenv.Metric(t, f.reg, "embedgate_ratelimit_redis_up"); up != 0 {
				t.Errorf("redis_up = %v while down, want 0", up)
			}
			if n := testenv.Metric(t, f.reg, "embedgate_ratelimit_redis_state_changes_total", "state", "down"); n != 1 {
				t.Errorf("state_changes{down} = %v, want 1", n)
			}
			decision := "allowed"
			if failClosed {
				decision = "refused"
			}
			if n := testenv.Metric(t, f.reg, "embedgate_ratelimit_redis_unavailable_decisions_total", "decision", decision); n < 20 {
				t.Errorf("unavailable_decisions{%s} = %v, want >= 20", decision, n)
			}

			// Same limiter, Redis back: limits apply again by themselves.
			srv.Restart()
			waitEnforced(t, f.lim, "key:d", l)
			if res := charge1(t, f.lim, "key:d", l, 0); !res.Allowed || res.Remaining != 0 {
				t.Errorf("second request after recovery (burst 2) = %+v, want allowed, 0 remaining", res)
			}
			if res := charge1(t, f.lim, "key:d", l, 0); res.Allowed {
				t.Errorf("third request after recovery (burst 2) = %+v, want refused", res)
			}
			if n := strings.Count(f.logs.String(), "reachable again"); n != 1 {
				t.Errorf("logged the recovery %d times, want once:\n%s", n, f.logs)
			}
			if up := testenv.Metric(t, f.reg, "embedgate_ratelimit_redis_up"); up != 1 {
				t.Errorf("redis_up = %v after recovery, want 1", up)
			}
		})
	}
}

// waitEnforced polls until Redis answers again (go-redis redials about
// once a second), returning after the first enforced, allowed request.
func waitEnforced(t *testing.T, lim limiter, key string, l Limit) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		res := charge1(t, lim, key, l, 0)
		if !res.StoreDown {
			if !res.Allowed {
				t.Fatalf("first request after recovery = %+v, want allowed (Redis restarted empty)", res)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("limits not enforced 10s after Redis came back: %+v", res)
		}
		<-tick.C
	}
}

// TestRedisHung covers a Redis that accepts but never answers: the call
// timeout, not the OS, bounds the wait.
func TestRedisHung(t *testing.T) {
	srv := redistest.Start(t)
	f := newTestRedis(t, srv.URL(), RedisOptions{Timeout: 50 * time.Millisecond, ProbeInterval: 50 * time.Millisecond})
	l := Limit{RPS: 100, Burst: 100}
	charge1(t, f.lim, "key:h", l, 0) // opens a pooled connection

	srv.Pause()
	start := time.Now()
	res := charge1(t, f.lim, "key:h", l, 0)
	if d := time.Since(start); d > time.Second {
		t.Errorf("call to a hung Redis took %v with a 50ms timeout", d)
	}
	if !res.StoreDown || !res.Allowed {
		t.Errorf("call to a hung Redis = %+v, want StoreDown and allowed (fail open)", res)
	}
	srv.Resume()
	waitEnforced(t, f.lim, "key:h", l)
}

func TestRedisPasswordTLS(t *testing.T) {
	srv := redistest.StartTLS(t, "--requirepass", "s3cret-pw")
	url := strings.Replace(srv.URL(), "rediss://", "rediss://:s3cret-pw@", 1)
	f := newTestRedis(t, url, RedisOptions{TLS: srv.TLSConfig()})
	if res := charge1(t, f.lim, "key:tls", Limit{RPS: 1, Burst: 1}, 0); !res.Allowed || res.StoreDown || res.Limit != 1 {
		t.Fatalf("over TLS with password = %+v, want allowed and enforced", res)
	}
	if res := charge1(t, f.lim, "key:tls", Limit{RPS: 1, Burst: 1}, 0); res.Allowed {
		t.Errorf("second request (burst 1) over TLS = %+v, want refused", res)
	}

	wrong := strings.Replace(srv.URL(), "rediss://", "rediss://:wrong-pw@", 1)
	g := newTestRedis(t, wrong, RedisOptions{TLS: srv.TLSConfig()})
	if res := charge1(t, g.lim, "key:tls", Limit{RPS: 1, Burst: 1}, 0); !res.StoreDown {
		t.Errorf("with a wrong password = %+v, want StoreDown", res)
	}
	if strings.Contains(g.logs.String(), "wrong-pw") {
		t.Errorf("log shows the password:\n%s", g.logs)
	}
}

func TestNewRedisURLErrors(t *testing.T) {
	for _, url := range []string{"", "http://localhost:6379", "redis://:hunter2@local host:6379", "redis://:hunter2@localhost:6379/x"} {
		_, err := NewRedis(url, RedisOptions{}, slog.New(slog.DiscardHandler), nil)
		if err == nil {
			t.Errorf("NewRedis(%q) succeeded, want an error", url)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("NewRedis(%q) error %q shows the password", url, err)
		}
	}
}

func TestRedisMetricsRegistered(t *testing.T) {
	f := newTestRedis(t, "redis://127.0.0.1:1", RedisOptions{})
	for _, name := range []string{
		"embedgate_ratelimit_redis_up", "embedgate_ratelimit_redis_errors_total",
		"embedgate_ratelimit_redis_state_changes_total", "embedgate_ratelimit_redis_unavailable_decisions_total",
	} {
		if testenv.Metric(t, f.reg, name) < 0 {
			t.Errorf("%s not exported before any traffic", name)
		}
	}
	// A second limiter on the same registry is an error, not a panic.
	if _, err := NewRedis("redis://127.0.0.1:1", RedisOptions{}, slog.New(slog.DiscardHandler), f.reg); err == nil {
		t.Error("second NewRedis on one registry succeeded, want a registration error")
	}
}

// BenchmarkRedisAllow measures one AllowRequest against a local Redis and
// reports the per-call latency distribution.
func BenchmarkRedisAllow(b *testing.B) {
	srv := redistest.Start(b)
	lim, err := NewRedis(srv.URL(), RedisOptions{}, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = lim.Close() })
	ctx := context.Background()
	l := Limit{RPS: 1e6, Burst: 1e6}
	if _, err := lim.AllowRequest(ctx, "key:bench", l); err != nil { // connect and load the script
		b.Fatal(err)
	}
	durs := make([]time.Duration, 0, 1024)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		res, err := lim.AllowRequest(ctx, "key:bench", l)
		durs = append(durs, time.Since(start))
		if err != nil || res.StoreDown {
			b.Fatalf("AllowRequest = %+v, %v", res, err)
		}
	}
	slices.Sort(durs)
	pct := func(p float64) float64 { return float64(durs[int(p*float64(len(durs)-1))].Microseconds()) }
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
}
