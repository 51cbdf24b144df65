package redisconn

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/embedgate/embedgate/gateway/internal/testenv"
)

func TestNewClientBounded(t *testing.T) {
	c, err := NewClient("redis://user:pw@127.0.0.1:6380/2", 30*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	o := c.Options()
	// go-redis keeps "no retries" (-1) as 0 once the client is made; a
	// zero it was given would have become its default, 3.
	if o.MaxRetries != 0 || o.DialerRetries != 1 || !o.ContextTimeoutEnabled || !o.DisableIdentity {
		t.Errorf("retries %d, dial retries %d, context timeouts %v, identity disabled %v; want 0, 1, true, true",
			o.MaxRetries, o.DialerRetries, o.ContextTimeoutEnabled, o.DisableIdentity)
	}
	for name, d := range map[string]time.Duration{"dial": o.DialTimeout, "read": o.ReadTimeout, "write": o.WriteTimeout, "pool": o.PoolTimeout} {
		if d != 30*time.Millisecond {
			t.Errorf("%s timeout %v, want 30ms", name, d)
		}
	}
	if o.MaintNotificationsConfig == nil || o.MaintNotificationsConfig.Mode != maintnotifications.ModeDisabled {
		t.Errorf("maintenance notifications %+v, want disabled", o.MaintNotificationsConfig)
	}
	if o.Addr != "127.0.0.1:6380" || o.Username != "user" || o.Password != "pw" || o.DB != 2 {
		t.Errorf("addr %q user %q db %d: the URL was not read", o.Addr, o.Username, o.DB)
	}
}

func TestNewClientErrors(t *testing.T) {
	for _, url := range []string{"", "http://localhost:6379", "redis://:hunter2@local host:6379", "redis://:hunter2@localhost:6379/x"} {
		_, err := NewClient(url, time.Second, nil)
		if err == nil {
			t.Errorf("NewClient(%q) succeeded, want an error", url)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("NewClient(%q) error %q shows the password", url, err)
		}
	}
	if _, err := NewClient("redis://localhost:6379", 0, nil); err == nil {
		t.Error("NewClient with no timeout succeeded, want an error")
	}
}

type outageFixture struct {
	o    *Outage
	reg  *prometheus.Registry
	logs *testenv.LogBuffer
}

func newTestOutage(t *testing.T, failures int, probe time.Duration) outageFixture {
	t.Helper()
	f := outageFixture{reg: prometheus.NewRegistry(), logs: &testenv.LogBuffer{}}
	f.o = NewOutage(OutageOptions{
		Addr: "127.0.0.1:6379", ProbeInterval: probe, Failures: failures,
		DownMessage: "thing down", UpMessage: "thing back",
		Up:      prometheus.GaugeOpts{Name: "thing_up", Help: "h"},
		Changes: prometheus.CounterOpts{Name: "thing_changes_total", Help: "h"},
	}, slog.New(slog.NewTextHandler(f.logs, nil)))
	for _, c := range f.o.Collectors() {
		if err := f.reg.Register(c); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// An outage is one line down and one line up, whoever meets it, and the
// metrics follow.
func TestOutageLogsOnce(t *testing.T) {
	f := newTestOutage(t, 1, time.Hour)
	if f.o.Down() || f.o.Skip() || testenv.Metric(t, f.reg, "thing_up") != 1 {
		t.Fatal("a new tracker is not up")
	}
	for range 5 {
		f.o.MarkDown(errors.New("connection refused"))
	}
	if !f.o.Down() || testenv.Metric(t, f.reg, "thing_up") != 0 {
		t.Error("after failures: not down")
	}
	for range 5 {
		f.o.MarkUp(time.Now())
	}
	logs := f.logs.String()
	if strings.Count(logs, "thing down") != 1 || strings.Count(logs, "thing back") != 1 {
		t.Errorf("want one down and one up line:\n%s", logs)
	}
	if !strings.Contains(logs, "addr=127.0.0.1:6379") || !strings.Contains(logs, `err="connection refused"`) || !strings.Contains(logs, "down_for=") {
		t.Errorf("lines lack addr, err or down_for:\n%s", logs)
	}
	for state, want := range map[string]float64{"down": 1, "up": 1} {
		if n := testenv.Metric(t, f.reg, "thing_changes_total", "state", state); n != want {
			t.Errorf("changes{%s} = %v, want %v", state, n, want)
		}
	}
	if f.o.Down() || testenv.Metric(t, f.reg, "thing_up") != 1 {
		t.Error("after a success: still down")
	}
}

// Failures in a row open it; a success in between starts the count again.
func TestOutageFailuresInARow(t *testing.T) {
	f := newTestOutage(t, 3, time.Hour)
	err := errors.New("timeout")
	f.o.MarkDown(err)
	f.o.MarkDown(err)
	f.o.MarkUp(time.Now())
	f.o.MarkDown(err)
	f.o.MarkDown(err)
	if f.o.Down() {
		t.Fatal("down after 2 failures in a row, want 3")
	}
	f.o.MarkDown(err)
	if !f.o.Down() {
		t.Fatal("not down after 3 failures in a row")
	}
}

// While down, one call per ProbeInterval may try Redis.
func TestOutageOneProbePerInterval(t *testing.T) {
	f := newTestOutage(t, 1, time.Hour)
	f.o.MarkDown(errors.New("refused"))
	for i := range 3 {
		if !f.o.Skip() {
			t.Fatalf("call %d right after the outage began was let through; the first probe is an interval later", i)
		}
	}
	f.o.nextProbe.Store(time.Now().Add(-time.Millisecond).UnixNano()) // the interval has passed
	probes := 0
	for range 10 {
		if !f.o.Skip() {
			probes++
		}
	}
	if probes != 1 {
		t.Errorf("%d of 10 calls probed once the interval passed, want 1", probes)
	}
}

// A call that began before Redis went down and succeeds late says nothing
// of Redis now: it must not turn it up (a flap of two more log lines).
func TestOutageIgnoresCallsFromBefore(t *testing.T) {
	f := newTestOutage(t, 1, time.Hour)
	begun := time.Now()
	time.Sleep(time.Millisecond) // the clock must move past begun
	f.o.MarkDown(errors.New("connection refused"))
	f.o.MarkUp(begun)
	if !f.o.Down() {
		t.Fatal("a call begun before the outage turned Redis up")
	}
	f.o.MarkUp(time.Now())
	if f.o.Down() {
		t.Fatal("a call begun after the outage did not turn Redis up")
	}
	if logs := f.logs.String(); strings.Count(logs, "thing back") != 1 {
		t.Errorf("want one up line:\n%s", logs)
	}
}
