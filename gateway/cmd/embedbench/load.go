package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// levelOptions describe one load level.
type levelOptions struct {
	Name    string
	Clients int
	Warmup  time.Duration // requests sent before it are left out of latencies and statuses
	Window  time.Duration // the measured part
	Timings bool          // read "timings" from native bodies (overhead runs)
	// BackendHere says the model runs in this process (the Triton
	// stand-in): its CPU then counts as the backend's.
	BackendHere bool
	Profile     string // if set, save CPU and heap profiles of the gateway's window to Profile+".{cpu,heap}.pprof"
	// RetryAt0 makes clients send again at once after a 429; by default
	// they wait what its retry-after-ms (or Retry-After) says first, as
	// OpenAI's SDKs do.
	RetryAt0 bool
	// Midway, if set, runs once half way through the window (Warmup +
	// Window/2 after the start), e.g. to kill Redis; what it returns
	// describes what it did, for the report.
	Midway func() string
}

// Level is what one load level measured (see runLevel for which requests
// each figure covers).
type Level struct {
	Name      string
	Clients   int
	Window    time.Duration
	Makespan  time.Duration // first request to last answer
	Requests  float64       // per second
	Embedding float64       // per second
	Tokens    float64       // per second
	Latency   quantiles
	Status    map[int]int // 0 = transport error (no HTTP status)
	Max429    time.Duration
	Max200    time.Duration
	Overhead  quantiles      // e2e minus the gateway's own inference time (Timings runs)
	Errors    []string       // distinct transport errors, at most a few
	Cache     map[string]int // x-embedgate-cache of the 200s counted in Status ("" = absent: no cache)
	// Event says what Midway did and when; AfterEvent are the latencies of
	// the requests sent after it was due.
	Event      string
	AfterEvent quantiles
	// ProfileErr says why the requested CPU profile could not be saved; a
	// missing profile does not spoil the measurements.
	ProfileErr string

	GatewayCPU float64 // cores busy in the gateway process over the makespan
	LoaderCPU  float64 // cores busy in this process (load generator, in-process Triton)
	TokPerCPU  float64 // tokens per CPU-second of gateway + backend: robust to other processes' load
	// SteadyTokens and SteadyTokPerCPU are the backend's real tokens per
	// second (and per CPU-second) over the last two thirds of the sending
	// time, estimated from /metrics (see steadyRate).
	SteadyTokens, SteadyTokPerCPU float64
	RSSMax                        int64 // highest gateway RSS sampled during the level
	HWM                           int64 // the gateway's peak RSS at the end of the level

	Padding     float64 // mean embedgate_batch_padding_ratio over the level's batches
	PaddingTok  float64 // 1 - real tokens / padded tokens over the window
	BatchRows   float64 // mean rows per batch
	BackendBusy float64 // inference seconds per second (can exceed 1 with Triton in flight)
	Batches     float64
}

type quantiles struct {
	N                  int
	P50, P90, P99, Max time.Duration
}

func quantilesOf(d []time.Duration) quantiles {
	if len(d) == 0 {
		return quantiles{}
	}
	slices.Sort(d)
	q := func(p float64) time.Duration {
		return d[min(len(d)-1, int(math.Ceil(p*float64(len(d))))-1)]
	}
	return quantiles{N: len(d), P50: q(0.50), P90: q(0.90), P99: q(0.99), Max: d[len(d)-1]}
}

// snapshot is the gateway's state at a window edge.
type snapshot struct {
	gw, self procStat
	metrics  map[string]float64
	err      error
}

func takeSnapshot(ctx context.Context, g *child) snapshot {
	var s snapshot
	var err1, err2, err3 error
	s.gw, err1 = readProc(strconv.Itoa(g.pid()))
	s.self, err2 = readProc("self")
	s.metrics, err3 = scrape(ctx, g.url)
	s.err = errors.Join(err1, err2, err3)
	return s
}

// runLevel drives g with opts.Clients concurrent clients, each sending its
// next request as soon as the last one is answered (vegeta with rate 0 and
// a fixed worker count), for Warmup+Window; then it waits for the
// requests still in flight, so that no abandoned work spills into the next
// level (fasthttp cannot notice a client that left).
//
// Throughput, CPU and the /metrics deltas cover the whole level, from the
// first request to the last answer (work ÷ makespan): at 64 clients a
// request of the mix can wait longer than any window this machine affords,
// so counting what completes inside a window would count a handful of
// requests. Latencies and statuses cover requests sent after Warmup (0 by
// default: at 256 clients each client sends only one or two requests).
func runLevel(ctx context.Context, g *child, mix workload, opts levelOptions) (*Level, error) {
	var transport http.RoundTripper = &http.Transport{MaxIdleConnsPerHost: opts.Clients, MaxConnsPerHost: opts.Clients}
	if !opts.RetryAt0 {
		transport = backoff{next: transport, until: time.Now().Add(opts.Warmup + opts.Window)}
	}
	atk := vegeta.NewAttacker(
		vegeta.Workers(uint64(opts.Clients)), vegeta.MaxWorkers(uint64(opts.Clients)),
		vegeta.Client(&http.Client{Transport: transport}),
		// Above the gateway's 30 s request timeout: its 504 is what we want
		// to see, not a client-side give-up.
		vegeta.Timeout(60*time.Second),
		vegeta.Redirects(vegeta.NoFollow),
	)

	var (
		mu      sync.Mutex
		rssMax  int64
		sampled = make(chan struct{}) // closed when the sampler returns
	)
	first := takeSnapshot(ctx, g)
	if first.err != nil {
		return nil, fmt.Errorf("level %s: gateway snapshot: %w", opts.Name, first.err)
	}
	begin := time.Now()
	winStart, winEnd := begin.Add(opts.Warmup), begin.Add(opts.Warmup+opts.Window)
	sampleCtx, stopSampling := context.WithCancel(ctx)
	defer stopSampling()
	// The steady window: the last two thirds of the sending time, when
	// the queue is full and not yet draining.
	steadyFrom, steadyTo := begin.Add(opts.Warmup+opts.Window/3), winEnd
	var steady [2]snapshot
	// The sampler reads the gateway's RSS every 200 ms until stopped, and
	// snapshots it at the steady window's edges.
	go func() {
		defer close(sampled)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		edges := [2]*time.Timer{time.NewTimer(time.Until(steadyFrom)), time.NewTimer(time.Until(steadyTo))}
		defer edges[0].Stop()
		defer edges[1].Stop()
		for {
			select {
			case <-sampleCtx.Done():
				return
			case <-edges[0].C:
				s := takeSnapshot(sampleCtx, g)
				mu.Lock()
				steady[0] = s
				mu.Unlock()
			case <-edges[1].C:
				s := takeSnapshot(sampleCtx, g)
				mu.Lock()
				steady[1] = s
				mu.Unlock()
			case <-tick.C:
				if st, err := readProc(strconv.Itoa(g.pid())); err == nil {
					mu.Lock()
					rssMax = max(rssMax, st.rss)
					mu.Unlock()
				}
			}
		}
	}()

	profiled := make(chan error, 1)
	if opts.Profile != "" {
		go func() { profiled <- fetchProfiles(sampleCtx, g.url, opts.Profile, winStart, opts.Window) }()
	} else {
		profiled <- nil
	}

	stopOnCancel := context.AfterFunc(ctx, func() { atk.Stop() })
	defer stopOnCancel()
	midAt := begin.Add(opts.Warmup + opts.Window/2)
	event := scheduleMidway(begin, midAt, opts.Midway)

	lv := &Level{Name: opts.Name, Clients: opts.Clients, Window: opts.Window, Status: map[int]int{}, Cache: map[string]int{}}
	var lat, over, after []time.Duration
	var reqs, embs, toks float64
	last := begin
	errSeen := map[string]bool{}
	for res := range atk.Attack(mix.Targeter(g.url), vegeta.ConstantPacer{}, opts.Warmup+opts.Window, opts.Name) {
		if d, err := time.ParseDuration(res.Headers.Get(backoffHeader)); err == nil {
			res.Latency -= d // the client's wait after the answer is no part of it
		}
		if end := res.End(); end.After(last) {
			last = end
		}
		if res.Code == 200 {
			reqs++
			embs += float64(inputsFromRequestID(res.Headers.Get("X-Request-Id")))
			if n, err := strconv.Atoi(res.Headers.Get("X-Compute-Tokens")); err == nil {
				toks += float64(n)
			}
		}
		if res.Timestamp.Before(winStart) || res.Timestamp.After(winEnd) {
			continue
		}
		lv.Status[int(res.Code)]++
		lat = append(lat, res.Latency)
		if opts.Midway != nil && !res.Timestamp.Before(midAt) {
			after = append(after, res.Latency)
		}
		switch res.Code {
		case 200:
			lv.Max200 = max(lv.Max200, res.Latency)
			lv.Cache[res.Headers.Get(cacheHeader)]++
			if opts.Timings {
				if inf, ok := inferenceTiming(res.Body); ok {
					over = append(over, res.Latency-inf)
				}
			}
		case 429:
			lv.Max429 = max(lv.Max429, res.Latency)
		case 0:
			if !errSeen[res.Error] && len(errSeen) < 5 {
				errSeen[res.Error] = true
				lv.Errors = append(lv.Errors, res.Error)
			}
		}
	}
	perr := <-profiled
	stopSampling()
	<-sampled
	lv.Event = event()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	end := takeSnapshot(ctx, g)
	if end.err != nil {
		return nil, fmt.Errorf("level %s: gateway snapshot: %w", opts.Name, end.err)
	}
	lv.Makespan = last.Sub(begin)
	span := lv.Makespan.Seconds()
	lv.Requests, lv.Embedding, lv.Tokens = reqs/span, embs/span, toks/span
	lv.Latency, lv.Overhead, lv.AfterEvent = quantilesOf(lat), quantilesOf(over), quantilesOf(after)
	lv.RSSMax = rssMax

	// CPU over the same makespan: the end snapshot comes a few ms after
	// the last answer, when both processes are idle.
	lv.GatewayCPU = (end.gw.cpu - first.gw.cpu).Seconds() / span
	lv.LoaderCPU = (end.self.cpu - first.self.cpu).Seconds() / span
	lv.HWM = end.gw.hwm
	if cpu := lv.GatewayCPU; cpu > 0 {
		if opts.BackendHere {
			cpu += lv.LoaderCPU
		}
		lv.TokPerCPU = lv.Tokens / cpu
	}
	d := func(name string) float64 { return end.metrics[name] - first.metrics[name] }
	if n := d("embedgate_batch_padding_ratio_count"); n > 0 {
		lv.Batches = n
		lv.Padding = d("embedgate_batch_padding_ratio_sum") / n
		lv.BatchRows = d("embedgate_batch_size_sum") / n
	}
	// Real tokens are what the answers reported, padded ones what the
	// batches carried; requests that timed out make this an estimate.
	if padded := d("embedgate_batch_tokens_sum"); padded > 0 && toks > 0 {
		lv.PaddingTok = max(0, 1-toks/padded)
	}
	lv.BackendBusy = d("embedgate_inference_duration_seconds_sum") / span
	mu.Lock()
	lv.SteadyTokens, lv.SteadyTokPerCPU = steadyRate(steady, opts.BackendHere)
	mu.Unlock()
	if perr != nil {
		lv.ProfileErr = perr.Error()
	}
	return lv, nil
}

// scheduleMidway runs fn at the time at, unless the returned function is
// called first; that function returns what fn said and when it ran (after
// begin), or "" if it never ran. It waits for a running fn to finish.
func scheduleMidway(begin, at time.Time, fn func() string) (result func() string) {
	if fn == nil {
		return func() string { return "" }
	}
	var said string
	ran := make(chan struct{})
	t := time.AfterFunc(time.Until(at), func() {
		defer close(ran)
		ranAt := time.Since(begin)
		said = fmt.Sprintf("%s at %s", fn(), fmtDur(ranAt))
	})
	return func() string {
		if t.Stop() {
			return ""
		}
		<-ran
		return said
	}
}

// steadyRate estimates the real tokens per second the backend ran between
// two snapshots, from /metrics alone: padded tokens × (1 − the batches' mean
// padding ratio). Unlike counting answers, it does not depend on when whole
// requests happen to complete; the mean is per batch, which in steady state
// (full batches) is close to token-weighted.
func steadyRate(s [2]snapshot, backendHere bool) (tokens, perCPU float64) {
	if s[0].metrics == nil || s[1].metrics == nil || s[0].err != nil || s[1].err != nil {
		return 0, 0
	}
	d := func(name string) float64 { return s[1].metrics[name] - s[0].metrics[name] }
	n := d("embedgate_batch_padding_ratio_count")
	span := s[1].gw.at.Sub(s[0].gw.at).Seconds()
	if n <= 0 || span <= 0 {
		return 0, 0
	}
	real := d("embedgate_batch_tokens_sum") * (1 - d("embedgate_batch_padding_ratio_sum")/n)
	cpu := (s[1].gw.cpu - s[0].gw.cpu).Seconds()
	if backendHere {
		cpu += (s[1].self.cpu - s[0].self.cpu).Seconds()
	}
	if cpu > 0 {
		perCPU = real / cpu
	}
	return real / span, perCPU
}

// fetchProfiles waits for the window, saves the gateway's CPU profile over
// it to prefix+".cpu.pprof" and then its heap profile to
// prefix+".heap.pprof" (net/http/pprof).
func fetchProfiles(ctx context.Context, baseURL, prefix string, at time.Time, window time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Until(at)):
	}
	secs := max(1, int(window.Seconds()))
	return errors.Join(
		fetchTo(ctx, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", baseURL, secs), prefix+".cpu.pprof", window+30*time.Second),
		fetchTo(ctx, baseURL+"/debug/pprof/heap", prefix+".heap.pprof", 30*time.Second))
}

// fetchTo saves what url answers to path.
func fetchTo(ctx context.Context, url, path string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: does the gateway serve /debug/pprof (--pprof)?", resp.StatusCode)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// inferenceTiming reads "inference":"35ms" from a native response body.
func inferenceTiming(body []byte) (time.Duration, bool) {
	key := []byte(`"inference":"`)
	i := bytes.LastIndex(body, key)
	if i < 0 {
		return 0, false
	}
	rest := body[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return 0, false
	}
	d, err := time.ParseDuration(string(rest[:j]))
	return d, err == nil
}

// backoff makes a client that got 429 wait what the answer's
// retry-after-ms (or Retry-After) says before it sends again, as OpenAI's
// SDKs do (they honour up to 60 s). The wait happens when vegeta closes
// the body, in the worker that sent the request, which therefore sends
// nothing meanwhile; it is reported in backoffHeader so that latencies
// leave it out. No wait outlasts the sending time (until).
type backoff struct {
	next  http.RoundTripper
	until time.Time
}

const backoffHeader = "X-Embedbench-Backoff"

func (b backoff) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := b.next.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusTooManyRequests {
		return resp, err
	}
	wait, ok := retryAfter(resp.Header)
	wait = min(wait, time.Until(b.until))
	if !ok || wait <= 0 {
		return resp, nil
	}
	resp.Header.Set(backoffHeader, wait.String())
	resp.Body = &sleepOnClose{ReadCloser: resp.Body, wait: wait, ctx: req.Context()}
	return resp, nil
}

// retryAfter reads retry-after-ms, else Retry-After in seconds; like the
// SDKs, it ignores waits over a minute.
func retryAfter(h http.Header) (time.Duration, bool) {
	var d time.Duration
	if ms, err := strconv.ParseFloat(h.Get("retry-after-ms"), 64); err == nil {
		d = time.Duration(ms * float64(time.Millisecond))
	} else if s, err := strconv.ParseFloat(h.Get("Retry-After"), 64); err == nil {
		d = time.Duration(s * float64(time.Second))
	}
	return d, d > 0 && d <= time.Minute
}

type sleepOnClose struct {
	io.ReadCloser
	wait time.Duration
	ctx  context.Context
}

func (s *sleepOnClose) Close() error {
	err := s.ReadCloser.Close()
	t := time.NewTimer(s.wait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.ctx.Done():
	}
	return err
}
