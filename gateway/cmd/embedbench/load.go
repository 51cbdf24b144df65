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
	Warmup  time.Duration // load before the window; not counted
	Window  time.Duration // the measured part
	Timings bool          // read "timings" from native bodies (overhead runs)
	Profile string        // if set, save a CPU profile of the gateway's window here
}

// Level is what one load level measured. Throughput counts 200 responses
// that completed inside the window; latencies and statuses cover requests
// sent inside it (including ones that finished after it).
type Level struct {
	Name      string
	Clients   int
	Window    time.Duration
	Requests  float64 // per second
	Embedding float64 // per second
	Tokens    float64 // per second
	Latency   quantiles
	Status    map[int]int // 0 = transport error (no HTTP status)
	Max429    time.Duration
	Max200    time.Duration
	Overhead  quantiles // e2e minus the gateway's own inference time (Timings runs)
	Errors    []string  // distinct transport errors, at most a few
	// ProfileErr says why the requested CPU profile could not be saved; a
	// missing profile does not spoil the measurements.
	ProfileErr string

	GatewayCPU float64 // cores busy in the gateway process over the window
	LoaderCPU  float64 // cores busy in this process (load generator, in-process Triton)
	RSSMax     int64   // highest gateway RSS sampled during the level
	HWM        int64   // the gateway's peak RSS at the end of the level

	Padding     float64 // mean embedgate_batch_padding_ratio over the window's batches
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
func runLevel(ctx context.Context, g *child, mix *Mix, opts levelOptions) (*Level, error) {
	atk := vegeta.NewAttacker(
		vegeta.Workers(uint64(opts.Clients)), vegeta.MaxWorkers(uint64(opts.Clients)),
		vegeta.Connections(opts.Clients), vegeta.KeepAlive(true),
		// Above the gateway's 30 s request timeout: its 504 is what we want
		// to see, not a client-side give-up.
		vegeta.Timeout(60*time.Second),
		vegeta.Redirects(vegeta.NoFollow),
	)

	var (
		mu        sync.Mutex
		startSnap snapshot
		endSnap   snapshot
		rssMax    int64
		ended     = make(chan struct{}) // closed once endSnap is taken
		sampled   = make(chan struct{}) // closed when the sampler returns
	)
	begin := time.Now()
	winStart, winEnd := begin.Add(opts.Warmup), begin.Add(opts.Warmup+opts.Window)
	sampleCtx, stopSampling := context.WithCancel(ctx)
	defer stopSampling()
	// The sampler snapshots the gateway at the window's edges (CPU time,
	// /metrics) and reads its RSS every 200 ms until stopped.
	go func() {
		defer close(sampled)
		atStart, atEnd := time.NewTimer(time.Until(winStart)), time.NewTimer(time.Until(winEnd))
		defer atStart.Stop()
		defer atEnd.Stop()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-sampleCtx.Done():
				return
			case <-atStart.C:
				s := takeSnapshot(sampleCtx, g)
				mu.Lock()
				startSnap = s
				mu.Unlock()
			case <-atEnd.C:
				s := takeSnapshot(sampleCtx, g)
				mu.Lock()
				endSnap = s
				mu.Unlock()
				close(ended)
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
		go func() { profiled <- fetchProfile(sampleCtx, g.url, opts.Profile, winStart, opts.Window) }()
	} else {
		profiled <- nil
	}

	stopOnCancel := context.AfterFunc(ctx, func() { atk.Stop() })
	defer stopOnCancel()

	lv := &Level{Name: opts.Name, Clients: opts.Clients, Window: opts.Window, Status: map[int]int{}}
	var lat, over []time.Duration
	var reqs, embs, toks float64
	errSeen := map[string]bool{}
	for res := range atk.Attack(mix.Targeter(g.url), vegeta.ConstantPacer{}, opts.Warmup+opts.Window, opts.Name) {
		end := res.End()
		if !end.Before(winStart) && !end.After(winEnd) && res.Code == 200 {
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
		switch res.Code {
		case 200:
			lv.Max200 = max(lv.Max200, res.Latency)
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
	// The last responses can come in just before the window's end.
	select {
	case <-ended:
	case <-ctx.Done():
	}
	stopSampling()
	<-sampled
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	w := opts.Window.Seconds()
	lv.Requests, lv.Embedding, lv.Tokens = reqs/w, embs/w, toks/w
	lv.Latency, lv.Overhead = quantilesOf(lat), quantilesOf(over)

	mu.Lock()
	defer mu.Unlock()
	lv.RSSMax = rssMax
	if err := errors.Join(startSnap.err, endSnap.err); err != nil || startSnap.metrics == nil || endSnap.metrics == nil {
		return lv, fmt.Errorf("level %s: gateway snapshots: %v", opts.Name, err)
	}
	span := endSnap.gw.at.Sub(startSnap.gw.at).Seconds()
	lv.GatewayCPU = (endSnap.gw.cpu - startSnap.gw.cpu).Seconds() / span
	lv.LoaderCPU = (endSnap.self.cpu - startSnap.self.cpu).Seconds() / span
	lv.HWM = endSnap.gw.hwm
	d := func(name string) float64 { return endSnap.metrics[name] - startSnap.metrics[name] }
	if n := d("embedgate_batch_padding_ratio_count"); n > 0 {
		lv.Batches = n
		lv.Padding = d("embedgate_batch_padding_ratio_sum") / n
		lv.BatchRows = d("embedgate_batch_size_sum") / n
	}
	// Real tokens are those the window's responses reported; padded ones
	// are what the batches carried. The two windows differ by the requests
	// in flight at each edge, so this is an estimate.
	if padded := d("embedgate_batch_tokens_sum"); padded > 0 && toks > 0 {
		lv.PaddingTok = max(0, 1-toks/padded)
	}
	lv.BackendBusy = d("embedgate_inference_duration_seconds_sum") / span
	if perr != nil {
		lv.ProfileErr = perr.Error()
	}
	return lv, nil
}

// fetchProfile waits for the window and saves the gateway's CPU profile
// over it (net/http/pprof's /debug/pprof/profile).
func fetchProfile(ctx context.Context, baseURL, path string, at time.Time, window time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Until(at)):
	}
	secs := max(1, int(window.Seconds()))
	ctx, cancel := context.WithTimeout(ctx, window+30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", baseURL, secs), nil)
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
