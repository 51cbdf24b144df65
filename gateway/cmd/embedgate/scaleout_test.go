package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/embedgate/embedgate/gateway/backend/triton/tritontest"
	"github.com/embedgate/embedgate/gateway/internal/dnstest"
	"github.com/embedgate/embedgate/gateway/internal/redistest"
)

// The scale-out rig's shape. Every request carries scaleRows inputs of one
// length and --max-batch-requests is scaleRows, so each batch is one
// request's rows whatever the number of stand-ins: a stand-in's throughput
// is then a fixed property of its simulated GPU, not of how the gateway
// happened to batch.
const (
	scaleRows    = 8
	scaleClients = 64 // closed-loop clients, half on each gateway
	// Batches each gateway keeps in flight per stand-in: with two gateways
	// a stand-in has up to 16, one on its GPU and 15 waiting (0.6 s of
	// work), so it does not idle while gateways starved of CPU by other
	// tests turn requests around.
	scaleInflight = "8"
	loadKey       = "sk-load"
	limitedKey    = "sk-limited"
	limitedBurst  = 5
	limitedRPS    = 0.01
)

// scaleGPU is one stand-in's simulated GPU, one batch at a time: about
// 40 ms for a full batch (8 rows of ~16 tokens), tens of times what the
// gateways spend on it even under -race, so one stand-in saturates long
// before two gateways do and 3 stand-ins give ~3× the tokens per second.
// The per-token part dominates, so a batch cut short costs in proportion.
var scaleGPU = tritontest.GPUTiming{PerBatch: 8 * time.Millisecond, PerToken: 250 * time.Microsecond, BestRows: scaleRows}

// scaleBody is one request: scaleRows copies of one short sentence (the
// cache is off, so each is run).
var scaleBody = func() string {
	in := make([]string, scaleRows)
	for i := range in {
		in[i] = "the quick brown fox jumps over the lazy dog"
	}
	b, _ := json.Marshal(map[string]any{"input": in})
	return string(b)
}()

// scaleEnv is a triton-backed gateway on url (a stand-in, a list or a
// dns: name) with the rig's batching and no cache.
func scaleEnv(t *testing.T, stand *tritontest.Server, url string) map[string]string {
	env := tritonEnv(t, stand)
	env["TRITON_URL"] = url
	env["TRITON_MAX_INFLIGHT"] = scaleInflight
	env["MAX_BATCH_REQUESTS"] = fmt.Sprint(scaleRows)
	env["CACHE"] = "false"
	return env
}

// TestScaleOut runs the Kubernetes picture on loopback: two gateways, three
// Triton stand-ins with a GPU's timing, one redis-server. Not parallel: the
// throughput phase compares rates, so it runs while the package's parallel
// tests wait.
func TestScaleOut(t *testing.T) {
	rds := redistest.Start(t)
	keys := filepath.Join(t.TempDir(), "keys.yaml")
	keysYAML := fmt.Sprintf("keys:\n- name: load\n  key: %s\n  rps: 1000000\n  burst: 1000000\n- name: limited\n  key: %s\n  rps: %g\n  burst: %d\n",
		loadKey, limitedKey, limitedRPS, limitedBurst)
	if err := os.WriteFile(keys, []byte(keysYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	var stands []*tritontest.Server
	for range 3 {
		s, _ := startTriton(t, tritontest.WithGPUTiming(scaleGPU))
		stands = append(stands, s)
	}
	// API keys and Redis: a bulk key for the load, and a key whose limit
	// the rate-limit phase exhausts.
	env := func(url string) map[string]string {
		e := scaleEnv(t, stands[0], url)
		e["REDIS_URL"], e["API_KEYS_FILE"] = rds.URL(), keys
		return e
	}
	list := stands[0].Addr() + "," + stands[1].Addr() + "," + stands[2].Addr()
	gateways := []*instance{startGateway(t, env(list)), startGateway(t, env(list))}

	t.Run("throughput", func(t *testing.T) {
		// The same load at the same time on a pair of gateways with a
		// stand-in of its own: a moment the process is starved of CPU
		// slows both alike.
		alone, _ := startTriton(t, tritontest.WithGPUTiming(scaleGPU))
		single := []*instance{startGateway(t, env(alone.Addr())), startGateway(t, env(alone.Addr()))}
		rates := measureThroughput(t, rig{single, []*tritontest.Server{alone}}, rig{gateways, stands})
		one, three := rates[0], rates[1]
		ratio := three / one
		t.Logf("tokens/s: %.0f with 1 stand-in, %.0f with 3: %.2f×", one, three, ratio)
		if ratio < 2.7 {
			t.Errorf("3 stand-ins give %.2f× the tokens/s of 1 (%.0f vs %.0f), want ≥ 2.7×", ratio, three, one)
		}
	})

	t.Run("failover", func(t *testing.T) {
		victim := stands[1]
		l := startLoad(t, gateways, scaleClients, loadKey)
		l.waitFor(t, l.served()+2*len(stands))
		victim.Stop()
		for _, g := range gateways {
			waitFor(t, func() bool { return logged(g, "triton replica ejected", victim.Addr()) }, "the stopped stand-in's ejection")
		}
		down := l.served()
		l.waitFor(t, down+scaleClients) // the other two carry the load
		if err := victim.Restart(); err != nil {
			t.Fatal(err)
		}
		up := l.served()
		for _, g := range gateways {
			waitFor(t, func() bool { return logged(g, "triton replica ready again", victim.Addr()) }, "the restarted stand-in ready again")
		}
		n := victim.InferCount()
		waitFor(t, func() bool { return victim.InferCount() >= n+4 }, "batches on the restarted stand-in")
		l.stop()
		t.Logf("failover: %d requests, all 200; %d answered while a stand-in was down", l.served(), up-down)
		l.check(t)
	})

	t.Run("rate limit shared", func(t *testing.T) {
		// Alternating gateways, each request waits for its answer: with one
		// limit in Redis the key gets its burst plus what the rate refills
		// meanwhile (0.01/s: nothing in a test's time); with a limit per
		// gateway it would get twice the burst.
		const n = 4 * limitedBurst
		admitted := map[*instance]int{}
		limited := map[*instance]int{}
		start := time.Now()
		for i := range n {
			g := gateways[i%2]
			r := g.post(t, "/v1/embeddings", `{"input":"hi"}`, "Authorization", "Bearer "+limitedKey)
			switch r.status {
			case 200:
				admitted[g]++
			case 429:
				limited[g]++
			default:
				t.Fatalf("request %d: %d %s, want 200 or 429", i, r.status, r.body)
			}
		}
		elapsed := time.Since(start)
		total := admitted[gateways[0]] + admitted[gateways[1]]
		most := limitedBurst + int(limitedRPS*elapsed.Seconds()) + 1
		t.Logf("admitted %d of %d in %v across two gateways (burst %d, bound %d)", total, n, elapsed.Round(time.Millisecond), limitedBurst, most)
		if total < limitedBurst || total > most {
			t.Errorf("admitted %d across two gateways, want between the burst %d and %d", total, limitedBurst, most)
		}
		for i, g := range gateways {
			if admitted[g] == 0 || limited[g] == 0 {
				t.Errorf("gateway %d admitted %d and limited %d: want both on each", i, admitted[g], limited[g])
			}
		}
	})

	// The DNS part of the picture is TestScaleOutDNS.
}

// TestScaleOutDNS: two gateways on a dns: target (a Kubernetes headless
// Service) follow the DNS answer under load. Stand-ins listen on one port
// at 127.0.0.1, .2 and .3; the answer first lists two. The third, added,
// joins on both gateways within about the resolve interval and gets
// batches; the first, removed, gets none once both have let it go; no
// request fails meanwhile.
func TestScaleOutDNS(t *testing.T) {
	t.Parallel()
	first, _ := startTritonOn(t, "127.0.0.1:0", tritontest.WithGPUTiming(scaleGPU))
	_, port, err := net.SplitHostPort(first.Addr())
	if err != nil {
		t.Fatal(err)
	}
	second, _ := startTritonOn(t, "127.0.0.2:"+port, tritontest.WithGPUTiming(scaleGPU))
	third, _ := startTritonOn(t, "127.0.0.3:"+port, tritontest.WithGPUTiming(scaleGPU))
	dns := dnstest.Start(t)
	dns.Set("triton.test", "127.0.0.1", "127.0.0.2")
	env := func() map[string]string {
		e := scaleEnv(t, first, "dns://"+dns.Addr()+"/triton.test:"+port)
		e["TRITON_RESOLVE_INTERVAL"] = "200ms"
		return e
	}
	gateways := []*instance{startGateway(t, env()), startGateway(t, env())}
	const clients = scaleClients / 2
	l := startLoad(t, gateways, clients, "")
	l.waitFor(t, clients)
	if n := third.InferCount(); n != 0 {
		t.Fatalf("the stand-in outside the DNS answer ran %d batches", n)
	}
	if first.InferCount() == 0 || second.InferCount() == 0 {
		t.Fatalf("batches on the two in the answer: %d and %d, want both used", first.InferCount(), second.InferCount())
	}

	dns.Set("triton.test", "127.0.0.1", "127.0.0.2", "127.0.0.3")
	added := time.Now()
	for _, g := range gateways {
		waitFor(t, func() bool { return logged(g, "triton replica joined", third.Addr()) }, "the added stand-in to join")
	}
	waitFor(t, func() bool { return third.InferCount() > 0 }, "batches on the added stand-in")
	t.Logf("the added stand-in ran its first batch %v after the DNS change (resolve interval 200ms)", time.Since(added).Round(time.Millisecond))

	dns.Set("triton.test", "127.0.0.2", "127.0.0.3")
	for _, g := range gateways {
		waitFor(t, func() bool { return logged(g, "triton replica left the target", first.Addr()) }, "the removed stand-in to leave")
	}
	// Batches sent to it before it left have arrived once a round of
	// requests has been answered since; none after.
	l.waitFor(t, l.served()+clients)
	n := first.InferCount()
	l.waitFor(t, l.served()+clients)
	l.stop()
	l.check(t)
	if more := first.InferCount() - n; more != 0 {
		t.Errorf("the stand-in removed from the DNS answer ran %d more batches", more)
	}
	for _, g := range gateways {
		if r := g.get(t, "/ready"); r.status != 200 {
			t.Errorf("/ready %d after the DNS changes", r.status)
		}
	}
	t.Logf("dns: %d requests, all 200", l.served())
}

// rig is gateways and the stand-ins behind them.
type rig struct {
	gateways []*instance
	stands   []*tritontest.Server
}

// measureThroughput runs the closed-loop load on every rig at once and
// returns each one's tokens per second over one window: 40 batches of the
// first rig's, after every rig has answered its first requests.
func measureThroughput(t *testing.T, rigs ...rig) []float64 {
	t.Helper()
	loads := make([]*load, len(rigs))
	before := make([][]int64, len(rigs))
	for i, r := range rigs {
		for _, s := range r.stands {
			before[i] = append(before[i], s.InferCount())
		}
		loads[i] = startLoad(t, r.gateways, scaleClients, loadKey)
	}
	for i, l := range loads {
		l.waitFor(t, 2*len(rigs[i].stands))
	}
	from := time.Now()
	loads[0].waitFor(t, loads[0].served()+40)
	to := time.Now()
	rates := make([]float64, len(rigs))
	for i, l := range loads {
		l.abandon()
		l.check(t)
		ran := make([]int64, len(rigs[i].stands))
		for j, s := range rigs[i].stands {
			if ran[j] = s.InferCount() - before[i][j]; ran[j] == 0 {
				t.Errorf("stand-in %d of %d ran no batch", j, len(ran))
			}
		}
		rates[i] = l.rate(from, to)
		t.Logf("%d stand-in(s): %.0f tokens/s; batches per stand-in %v", len(ran), rates[i], ran)
	}
	return rates
}

// load is a closed loop of clients, each posting one request at a time to
// its gateway until stop, that records every answer.
type load struct {
	key      string // API key sent, if not ""
	tr       *http.Transport
	client   *http.Client
	ctx      context.Context // cancelled by abandon
	cancel   context.CancelFunc
	stopping atomic.Bool
	wg       sync.WaitGroup

	mu   sync.Mutex
	oks  []completion // 200s, in the order they were answered
	bad  []string     // anything else; a client stops at its first
	once sync.Once
}

type completion struct {
	at     time.Time
	tokens int
}

// startLoad starts clients spread over gateways, sending key if not "";
// the test's end abandons them if the test does not stop them.
func startLoad(t *testing.T, gateways []*instance, clients int, key string) *load {
	tr := &http.Transport{MaxIdleConnsPerHost: clients}
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{key: key, tr: tr, client: &http.Client{Transport: tr, Timeout: time.Minute}, ctx: ctx, cancel: cancel}
	for i := range clients {
		g := gateways[i%len(gateways)]
		l.wg.Go(func() {
			for !l.stopping.Load() && l.post(g) {
			}
		})
	}
	t.Cleanup(l.abandon)
	return l
}

// post sends one request and records its answer; false on a failure, or
// once abandoned.
func (l *load) post(g *instance) bool {
	fail := func(format string, args ...any) bool {
		if l.ctx.Err() != nil {
			return false // abandoned: not an answer
		}
		l.mu.Lock()
		l.bad = append(l.bad, g.url+": "+fmt.Sprintf(format, args...))
		l.mu.Unlock()
		return false
	}
	req, err := http.NewRequestWithContext(l.ctx, http.MethodPost, g.url+"/v1/embeddings", strings.NewReader(scaleBody))
	if err != nil {
		return fail("%v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if l.key != "" {
		req.Header.Set("Authorization", "Bearer "+l.key)
	}
	resp, err := l.client.Do(req)
	if err != nil {
		return fail("%v", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return fail("reading the answer: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fail("%d %s", resp.StatusCode, body)
	}
	var v struct {
		Usage struct {
			TotalTokens int `json:"total_tokens"`
		} `json:"usage"`
	}
	if err := json.Unmarshal(body, &v); err != nil || v.Usage.TotalTokens == 0 {
		return fail("no usage in %.200s (%v)", body, err)
	}
	l.mu.Lock()
	l.oks = append(l.oks, completion{time.Now(), v.Usage.TotalTokens})
	l.mu.Unlock()
	return true
}

// served is how many requests have been answered 200.
func (l *load) served() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.oks)
}

// waitFor waits, at most a minute, until n requests have been answered
// 200; a failed request ends the wait (and the test).
func (l *load) waitFor(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		l.mu.Lock()
		got, bad := len(l.oks), len(l.bad)
		l.mu.Unlock()
		switch {
		case got >= n:
			return
		case bad > 0:
			l.abandon()
			l.check(t)
			t.FailNow()
		case time.Now().After(deadline):
			t.Fatalf("%d requests answered in a minute, want %d", got, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop ends the loop once the clients have their answers to the requests
// they sent: every request sent is accounted for.
func (l *load) stop() {
	l.once.Do(func() {
		l.stopping.Store(true)
		l.wg.Wait()
		l.cancel()
		l.tr.CloseIdleConnections()
	})
}

// abandon ends the loop now: requests still waiting are cancelled, and
// not counted as answers.
func (l *load) abandon() {
	l.cancel()
	l.stop()
}

// check fails the test for every answer that was not a 200.
func (l *load) check(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, b := range l.bad {
		t.Errorf("request failed: %s", b)
	}
}

// rate is the tokens per second answered between the first and the last
// answers within [from, to]: between two answers, so the count is exact.
func (l *load) rate(from, to time.Time) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	first, last := -1, -1
	for i, c := range l.oks {
		if c.at.Before(from) || c.at.After(to) {
			continue
		}
		if first < 0 {
			first = i
		}
		last = i
	}
	if first < 0 || last == first {
		return 0
	}
	tokens := 0
	for _, c := range l.oks[first+1 : last+1] {
		tokens += c.tokens
	}
	return float64(tokens) / l.oks[last].at.Sub(l.oks[first].at).Seconds()
}

// logged reports whether one line of g's log holds every one of parts.
func logged(g *instance, parts ...string) bool {
	for line := range strings.SplitSeq(g.logs.String(), "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}
