package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Report is everything one run measured.
type Report struct {
	Date    time.Time
	Machine string
	Model   string
	Mix     string
	Quick   bool

	Raw      *Raw     // the best of RawRuns: the baseline
	RawRuns  []*Raw   // in run order
	Levels   []*Level // every gateway level, in run order, by Name
	Overhead *Level   // 1 client, short queries, instant backend
	OverMix  *Level   // 1 client, the mix, instant backend
	Memory   []*Level // 256 clients, instant backend
	// Overload holds the overload run with clients that honour the 429's
	// retry-after, then with clients that retry at once.
	Overload    []*Level
	OverloadMax int // MAX_CONCURRENT_REQUESTS of the overload runs
	// Cache holds the cache workloads (issue 13), each with its uncached
	// baseline; CachePool is the number of requests they repeat.
	Cache     []*CacheRun
	CachePool int
	// ScaleOut is the scale-out run (issue 15).
	ScaleOut *ScaleOut
	Notes    []string
}

// target is one line of BRIEF §12 as this run measured it.
type target struct {
	name, want, got string
	met             bool
	known           bool // false when the run did not measure it
}

// ratioLevel is the level the throughput target is judged on.
const ratioClients = 64

func (r *Report) level(backend string, clients int) *Level {
	for _, l := range r.Levels {
		if l.Name == backend && l.Clients == clients {
			return l
		}
	}
	return nil
}

// rawPerCPU is the best raw tokens per CPU-second.
func (r *Report) rawPerCPU() float64 {
	best := 0.0
	for _, raw := range r.RawRuns {
		best = max(best, raw.TokPerCPU)
	}
	return best
}

func (r *Report) targets() []target {
	var ts []target
	for _, b := range []string{"onnx", "triton"} {
		t := target{name: fmt.Sprintf("%s: tokens/s at %d clients ÷ raw ORT", b, ratioClients), want: "≥ 0.90"}
		if l := r.level(b, ratioClients); l != nil && r.Raw != nil && r.Raw.Tokens > 0 {
			ratio := l.Tokens / r.Raw.Tokens
			t.got, t.met, t.known = fmt.Sprintf("%.2f (%.0f / %.0f tokens/s)", ratio, l.Tokens, r.Raw.Tokens), ratio >= 0.90, true
			if cpu := r.rawPerCPU(); cpu > 0 && l.TokPerCPU > 0 {
				t.got += fmt.Sprintf("; per CPU-second %.2f (%.0f / %.0f)", l.TokPerCPU/cpu, l.TokPerCPU, cpu)
			}
			if l.SteadyTokens > 0 {
				t.got += fmt.Sprintf("; steady window %.2f (%.0f tokens/s)", l.SteadyTokens/r.Raw.Tokens, l.SteadyTokens)
				if cpu := r.rawPerCPU(); cpu > 0 && l.SteadyTokPerCPU > 0 {
					t.got += fmt.Sprintf(", per CPU-second %.2f", l.SteadyTokPerCPU/cpu)
				}
			}
		}
		ts = append(ts, t)
	}
	if l := r.Overhead; l != nil {
		ts = append(ts, target{name: "gateway overhead p50, 1 client, short query, instant backend", want: "≤ 1 ms",
			got: fmt.Sprintf("%s end to end, %s minus inference", fmtDur(l.Latency.P50), fmtDur(l.Overhead.P50)),
			met: l.Overhead.P50 <= time.Millisecond && l.Overhead.N > 0, known: true})
	}
	for _, l := range r.Memory {
		ts = append(ts, target{name: "gateway RSS without model, " + l.Name, want: "≤ 150 MB",
			got: fmt.Sprintf("%s peak (VmHWM), %s max sampled", fmtMB(l.HWM), fmtMB(l.RSSMax)),
			met: l.HWM > 0 && l.HWM <= 150<<20, known: true})
	}
	// Beyond capacity, a request is answered or refused at once: the
	// 256-client levels are an overload too on two cores.
	for _, l := range r.Levels {
		if l.Clients >= overloadClients {
			ts = append(ts, overloadTarget(l))
		}
	}
	// Saturated means as many clients as the gateway admits: the
	// overload's admitted work should go as fast as that.
	sat := r.level("onnx", r.OverloadMax)
	for _, l := range r.Overload {
		ts = append(ts, overloadTarget(l))
		t := target{name: l.Name + ": tokens/s of the admitted work ÷ the " + strconv.Itoa(r.OverloadMax) + "-client level", want: "≥ 0.90"}
		if sat != nil && sat.Tokens > 0 {
			ratio := l.Tokens / sat.Tokens
			t.got, t.met, t.known = fmt.Sprintf("%.2f (%.0f / %.0f tokens/s)", ratio, l.Tokens, sat.Tokens), ratio >= 0.90, true
		}
		ts = append(ts, t)
	}
	ts = append(ts, r.cacheTargets()...)
	if r.ScaleOut != nil {
		ts = append(ts, r.ScaleOut.targets()...)
	}
	return ts
}

// cacheTargets are issue 13's figures, judged on the onnx backend.
func (r *Report) cacheTargets() []target {
	var ts []target
	for _, c := range r.Cache {
		if c.Backend != "onnx" {
			continue
		}
		switch c.Workload {
		case workRepeat:
			t := target{name: "cache, onnx, " + workRepeat + ": tokens/s ÷ the same workload with the cache off", want: "≥ 10"}
			if ratio, ok := c.cacheRatio(); ok {
				t.got = fmt.Sprintf("%.1f (%.0f / %.0f tokens/s); x-embedgate-cache %s", ratio, c.Cached.Tokens, c.Uncached.Tokens, fmtCache(c.Cached.Cache))
				t.met, t.known = ratio >= 10 && !c.noCacheHeader(), true
			}
			ts = append(ts, t)
		case workKill:
			t := target{name: "cache, onnx, " + workKill + ": statuses; latency p99 ÷ the cache off", want: "only 200; ≤ 2"}
			if ratio, ok := c.p99Ratio(); ok {
				l := c.Cached
				t.got = fmt.Sprintf("%s; %.2f (%s / %s)", fmtStatus(l.Status), ratio, fmtDur(l.Latency.P99), fmtDur(c.Uncached.Latency.P99))
				t.met, t.known = len(l.Status) == 1 && l.Status[200] > 0 && ratio <= 2 && l.Event != "" && !c.noCacheHeader(), true
			}
			ts = append(ts, t)
		}
	}
	return ts
}

// overloadClients is the level from which a run counts as overload.
const overloadClients = 256

func overloadTarget(l *Level) target {
	bad := 0
	for code, n := range l.Status {
		if code != 200 && code != 429 {
			bad += n
		}
	}
	return target{name: fmt.Sprintf("%s, %d clients", l.Name, l.Clients), want: "only 200/429, 429s ≤ 1 s, no 5xx",
		got: fmt.Sprintf("%s; slowest 429 %s", fmtStatus(l.Status), fmtDur(l.Max429)),
		met: bad == 0 && l.Max429 <= time.Second && l.Status[200] > 0, known: true}
}

// Write renders the report as Markdown.
func (r *Report) Write(w io.Writer) error {
	p := &printer{w: w}
	p.f("# embedgate benchmark %s\n\n", r.Date.UTC().Format("2006-01-02 15:04 MST"))
	p.f("- machine: %s\n- model: %s\n- load: %s\n", r.Machine, r.Model, r.Mix)
	if r.Quick {
		p.f("- **quick mode**: short levels, numbers are indicative only\n")
	}
	p.f("- noise: the machine is shared; expect ±10–20%% between runs\n")
	p.f("- columns: throughput (and CPU, padding, busy) covers the whole level, first request to last answer (makespan), 200s only; " +
		"tokens/CPU-s divides by the CPU time of gateway + backend, which other processes on the machine do not skew the way they skew wall time; " +
		"steady tok/s is the backend's real tokens/s over the last two thirds of the sending time, from /metrics (padded tokens × (1 − mean batch padding)), free of start-up and drain, " +
		"but it counts batches when they are cut, so with Triton's batches in flight and short windows (--quick) it runs ahead; " +
		"latencies, n and statuses cover the level's requests (after -warmup, if set); " +
		"padding is the mean of embedgate_batch_padding_ratio per batch / 1 − real ÷ padded tokens; backend busy is inference seconds per second " +
		"(above 100%% when batches wait on Triton in flight); CPU is cores × 100%% (gw = the gateway process, ONNX Runtime included with --backend onnx; " +
		"bench = this process: load generator, plus ONNX Runtime for the Triton stand-in); RSS from /proc (max sampled every 200 ms / VmHWM)\n\n")

	if len(r.RawRuns) > 0 {
		p.f("## Raw ONNX Runtime (in process, ideal batches: the mix's inputs sorted by length, 32 rows, ≤ 16384 padded tokens; one at a time)\n\n")
		p.f("| run | batches | rows/batch | padding | embeddings/s | tokens/s | tokens/CPU-s | time |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
		for i, raw := range r.RawRuns {
			name := fmt.Sprintf("raw %d", i+1)
			if raw == r.Raw {
				name += " (baseline: best)"
			}
			p.f("| %s | %d | %.1f | %s | %.1f | %.0f | %.0f | %s |\n", name, raw.Batches, raw.Rows, pct(raw.Padding), raw.Embeddings, raw.Tokens, raw.TokPerCPU, fmtDur(raw.Elapsed))
		}
		p.f("\n")
	}
	if len(r.Levels) > 0 {
		p.f("## Gateway under load\n\n")
		writeLevels(p, r.Levels, r.Raw, r.rawPerCPU())
	}
	var extra []*Level
	for _, l := range []*Level{r.Overhead, r.OverMix} {
		if l != nil {
			extra = append(extra, l)
		}
	}
	extra = append(extra, r.Memory...)
	extra = append(extra, r.Overload...)
	if len(extra) > 0 {
		p.f("## Overhead, memory, overload\n\n")
		writeLevels(p, extra, nil, 0)
		for _, l := range extra {
			if l.Overhead.N > 0 {
				p.f("- %s: end to end p50 %s p99 %s; minus the gateway's reported inference time p50 %s p90 %s p99 %s (n=%d)\n",
					l.Name, fmtDur(l.Latency.P50), fmtDur(l.Latency.P99), fmtDur(l.Overhead.P50), fmtDur(l.Overhead.P90), fmtDur(l.Overhead.P99), l.Overhead.N)
			}
			if l.Max429 > 0 {
				p.f("- %s: slowest 429 %s, slowest 200 %s\n", l.Name, fmtDur(l.Max429), fmtDur(l.Max200))
			}
		}
		p.f("\n")
	}
	r.writeCache(p)
	if r.ScaleOut != nil {
		r.ScaleOut.write(p)
	}
	p.f("## Targets (BRIEF §12)\n\n| target | want | measured | |\n|---|---|---|---|\n")
	for _, t := range r.targets() {
		mark := "not measured"
		switch {
		case t.known && t.met:
			mark = "met"
		case t.known:
			mark = "**missed**"
		}
		p.f("| %s | %s | %s | %s |\n", t.name, t.want, t.got, mark)
	}
	if len(r.Notes) > 0 {
		p.f("\n## Notes\n\n")
		for _, n := range r.Notes {
			p.f("- %s\n", n)
		}
	}
	return p.err
}

// writeCache renders the cache runs: a summary against the cache-off
// baselines, then every level in full.
func (r *Report) writeCache(p *printer) {
	if len(r.Cache) == 0 {
		return
	}
	p.f("## Cache (issue 13)\n\n")
	p.f("- pool: %d requests of the mix, sent once to warm the cache (then once more to check: x-embedgate-cache of that pass below); "+
		"%s: the pool round robin; %s: pool request k with the inputs at positions j where j+k is even replaced by never-sent inputs of the same kind and length; "+
		"each cached run has its own fresh redis-server; the baselines are the same workload, same clients, with CACHE=false; "+
		"the Redis-kill run has no memory tier, so every lookup goes to Redis until it dies\n\n", r.CachePool, workRepeat, workHalfNew)
	p.f("| workload | backend | cache | clients | tok/s | cache off tok/s | ÷ cache off | p99 | cache off p99 | ÷ cache off | statuses | x-embedgate-cache (200s) |\n")
	p.f("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|\n")
	var levels []*Level
	seen := map[*Level]bool{}
	for _, c := range r.Cache {
		for _, l := range []*Level{c.Uncached, c.Cached} {
			if l != nil && !seen[l] {
				seen[l] = true
				levels = append(levels, l)
			}
		}
		if c.Cached == nil {
			continue
		}
		l, u := c.Cached, c.Uncached
		ratio, p99 := "–", "–"
		if x, ok := c.cacheRatio(); ok {
			ratio = fmt.Sprintf("%.1f", x)
		}
		if x, ok := c.p99Ratio(); ok {
			p99 = fmt.Sprintf("%.2f", x)
		}
		var uTok float64
		var uP99 time.Duration
		if u != nil {
			uTok, uP99 = u.Tokens, u.Latency.P99
		}
		p.f("| %s | %s | %s | %d | %.0f | %.0f | %s | %s | %s | %s | %s | %s |\n", c.Workload, c.Backend, c.Setup, l.Clients,
			l.Tokens, uTok, ratio, fmtDur(l.Latency.P99), fmtDur(uP99), p99, fmtStatus(l.Status), fmtCache(l.Cache))
	}
	p.f("\n")
	for _, c := range r.Cache {
		if c.Warm != nil && c.Workload != workHalfNew { // half new shares all repeat's warm-up
			p.f("- %s, %s: warm-up check %s\n", c.Backend, c.Setup, fmtCache(c.Warm))
		}
		if l := c.Cached; l != nil && l.Event != "" {
			p.f("- %s: %s; requests sent after it was due: p50 %s, p99 %s (n=%d)\n", l.Name, l.Event, fmtDur(l.AfterEvent.P50), fmtDur(l.AfterEvent.P99), l.AfterEvent.N)
		}
		if c.noCacheHeader() {
			p.f("- %s: **no x-embedgate-cache header in any answer**: this gateway has no cache (issue 13's flags), the run measured none\n", c)
		}
	}
	p.f("\n")
	writeLevels(p, levels, nil, 0)
}

func writeLevels(p *printer, levels []*Level, raw *Raw, rawPerCPU float64) {
	p.f("| run | clients | makespan | req/s | emb/s | tok/s | vs raw | tok/CPU-s | vs raw | steady tok/s | vs raw | p50 | p90 | p99 | n | statuses | padding (batch / tok) | rows/batch | backend busy | gw CPU | bench CPU | gw RSS max / peak |\n")
	p.f("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|\n")
	for _, l := range levels {
		vs, vsCPU, vsSteady := "–", "–", "–"
		if raw != nil && raw.Tokens > 0 {
			vs = fmt.Sprintf("%.2f", l.Tokens/raw.Tokens)
			vsSteady = fmt.Sprintf("%.2f", l.SteadyTokens/raw.Tokens)
		}
		if rawPerCPU > 0 {
			vsCPU = fmt.Sprintf("%.2f", l.TokPerCPU/rawPerCPU)
		}
		p.f("| %s | %d | %s | %.1f | %.1f | %.0f | %s | %.0f | %s | %.0f | %s | %s | %s | %s | %d | %s | %s / %s | %.1f | %s | %s | %s | %s / %s |\n",
			l.Name, l.Clients, fmtDur(l.Makespan), l.Requests, l.Embedding, l.Tokens, vs, l.TokPerCPU, vsCPU, l.SteadyTokens, vsSteady,
			fmtDur(l.Latency.P50), fmtDur(l.Latency.P90), fmtDur(l.Latency.P99), l.Latency.N, fmtStatus(l.Status),
			pct(l.Padding), pct(l.PaddingTok), l.BatchRows, pct(l.BackendBusy),
			pct(l.GatewayCPU), pct(l.LoaderCPU), fmtMB(l.RSSMax), fmtMB(l.HWM))
		for _, e := range l.Errors {
			p.f("|  ↳ %s transport error: %s |\n", l.Name, strings.ReplaceAll(e, "|", "/"))
		}
	}
	p.f("\n")
}

// fmtStatus lists counts by status, "err" for transport errors.
func fmtStatus(m map[int]int) string {
	var parts []string
	for _, code := range slices.Sorted(maps.Keys(m)) {
		name := strconv.Itoa(code)
		if code == 0 {
			name = "err"
		}
		parts = append(parts, fmt.Sprintf("%s: %d", name, m[code]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// fmtCache lists x-embedgate-cache counts: hit, partial, miss, then any
// other value, "none" for answers without the header.
func fmtCache(m map[string]int) string {
	var parts []string
	for _, v := range []string{"hit", "partial", "miss"} {
		if n, ok := m[v]; ok {
			parts = append(parts, fmt.Sprintf("%s: %d", v, n))
		}
	}
	for _, v := range slices.Sorted(maps.Keys(m)) {
		switch v {
		case "hit", "partial", "miss":
		case "":
			parts = append(parts, fmt.Sprintf("none: %d", m[v]))
		default:
			parts = append(parts, fmt.Sprintf("%q: %d", v, m[v]))
		}
	}
	if len(parts) == 0 {
		return "–"
	}
	return strings.Join(parts, ", ")
}

func fmtDur(d time.Duration) string {
	switch {
	case d == 0:
		return "–"
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%.0fms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

func fmtMB(b int64) string {
	if b <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f MB", float64(b)/(1<<20))
}

func pct(x float64) string { return fmt.Sprintf("%.0f%%", 100*x) }

// printer keeps the first write error so Write can check once.
type printer struct {
	w   io.Writer
	err error
}

func (p *printer) f(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}
