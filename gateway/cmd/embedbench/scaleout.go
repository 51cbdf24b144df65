package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/backend/triton/tritontest"
)

// The stand-ins' simulated GPU (issue 15): each one stands for a Triton
// replica with one GPU, slow enough that three stay far below what the
// gateway can feed on this 2-core machine. A batch costs 2 ms plus 10 µs per padded token,
// the per-token cost rising past 32 rows (the gateway's
// --max-batch-requests): a 32 × 128 batch takes 43 ms, ~95,000 padded
// tokens/s. Measured on this machine (2026-12-05, -quick): one stand-in
// saturates at ~85,000 real tokens/s of the mix using 0.06 gateway cores;
// three reach ~260,000 with 128 clients using 0.17; with no simulated cost
// (-scaleout-per-batch 0 -scaleout-per-token 1ns) the same gateway served
// 1.8–3.1 million tokens/s, limited by the shared machine, not by the
// gateway's ~0.9–1.4 cores. So the stand-ins, not the gateway, are the
// limit at every level, as on a real GPU fleet.
const (
	scaleOutPerBatch = 2 * time.Millisecond
	scaleOutPerToken = 10 * time.Microsecond
	scaleOutBestRows = 32
	// scaleOutClients keeps three stand-ins' queues full: with 64, the
	// gateway cuts smaller batches for more replicas (rows per batch 30 →
	// 25) and three stand-ins reach only ~2.7× one.
	scaleOutClients = 128
	// scaleOutMaxStandIns is the largest level, and the drill's set.
	scaleOutMaxStandIns = 3
	// drillWindow is the least sending time of the failover drill: the
	// stopped stand-in is down for a third of it, and the gateway's probe
	// backoff (0.1 s doubling to 5 s, behind gRPC's reconnect backoff) must
	// find it back with time left for traffic: after 6 s down, its first
	// call came 5.3 s after the restart (2026-12-05).
	drillWindow = 18 * time.Second
)

// scaleOutFlags adds the scale-out run's flags to fs, filling o; the
// function it returns checks them once fs is parsed (and -quick applied).
func scaleOutFlags(fs *flag.FlagSet, o *options) (check func() error) {
	fs.IntVar(&o.scaleClients, "scaleout-clients", scaleOutClients, "clients in the scale-out levels and the failover drill")
	fs.DurationVar(&o.scaleWindow, "scaleout-window", 15*time.Second, "time clients send in each scale-out level (-quick: at most 6 s; the drill sends for at least 18 s)")
	fs.DurationVar(&o.scaleGPU.PerBatch, "scaleout-per-batch", scaleOutPerBatch, "the scale-out stand-ins' simulated GPU: fixed cost of a batch")
	fs.DurationVar(&o.scaleGPU.PerToken, "scaleout-per-token", scaleOutPerToken, "the scale-out stand-ins' simulated GPU: cost per padded token")
	fs.IntVar(&o.scaleGPU.BestRows, "scaleout-best-rows", scaleOutBestRows, "the scale-out stand-ins' simulated GPU: rows past which the per-token cost grows")
	output := fs.String("scaleout-output", "pooled", "what the scale-out stand-ins return: pooled (sentence_embedding [B,H]) or hidden (last_hidden_state [B,L,H], pooled by the gateway)")
	return func() error {
		if o.quick {
			o.scaleWindow = min(o.scaleWindow, 6*time.Second)
		}
		if o.scaleClients < 1 || o.scaleWindow <= 0 || o.scaleGPU.PerBatch < 0 || o.scaleGPU.PerToken < 0 || o.scaleGPU.BestRows < 1 {
			return fmt.Errorf("-scaleout-*: want clients ≥ 1, window > 0, per-batch and per-token ≥ 0, best rows ≥ 1; got %d, %v, %v, %v, %d",
				o.scaleClients, o.scaleWindow, o.scaleGPU.PerBatch, o.scaleGPU.PerToken, o.scaleGPU.BestRows)
		}
		switch *output {
		case "pooled":
			o.scaleHidden = false
		case "hidden":
			o.scaleHidden = true
		default:
			return fmt.Errorf("-scaleout-output: unknown %q (want pooled or hidden)", *output)
		}
		return nil
	}
}

// ScaleOut is the scale-out run: the same load through one gateway over
// 1, 2 and 3 stand-ins, then the failover drill over 3.
type ScaleOut struct {
	GPU     tritontest.GPUTiming
	Clients int
	Window  time.Duration
	Hidden  bool // the stand-ins return last_hidden_state, not sentence_embedding
	Levels  []*ScaleLevel
	Drill   *Drill
}

// ScaleLevel is one level of the scale-out run.
type ScaleLevel struct {
	StandIns int
	Level    *Level
	Calls    []int64 // ModelInfer calls each stand-in received during the level
}

// Drill is the failover drill: one stand-in of three stopped a third of
// the way into the sending time and restarted at two thirds.
type Drill struct {
	Level   *Level
	Calls   []int64 // ModelInfer calls each stand-in received during the level
	Stopped int     // index of the stand-in stopped and restarted
	Events  []string
	// The stopped stand-in's ModelInfer calls before the stop, while it was
	// down (none can arrive) and after the restart.
	BeforeStop, WhileDown, AfterRestart int64
	// BackAfter is the time from the restart to its first ModelInfer
	// call; 0 when none came before the level ended.
	BackAfter time.Duration
}

// scaleOut runs the scale-out levels and the drill against stand-ins
// whose model answers at once, so that their CPU is the gRPC hop alone.
// The run is added to rep before it runs, so that what was measured is
// reported even if a later part fails.
func (b *bench) scaleOut(ctx context.Context, rep *Report) error {
	o := b.o
	so := &ScaleOut{GPU: o.scaleGPU, Clients: o.scaleClients, Window: o.scaleWindow, Hidden: o.scaleHidden}
	rep.ScaleOut = so
	// By default Triton returns pooled embeddings, as the README
	// recommends (onnxpool): the gateway then decodes [B,H], not [B,L,H].
	spec := b.ort.Spec()
	spec.Output = gateway.Pooled
	if so.Hidden {
		spec.Output = gateway.Hidden
	}
	m := newInstant(spec, 32, b.hf.MaxInputLength) // the stand-in's max_batch_size
	var set []*standIn
	defer func() {
		for _, s := range set {
			s.close()
		}
	}()
	for range scaleOutMaxStandIns {
		s, err := b.serveStandIn(m, tritontest.WithGPUTiming(so.GPU))
		if err != nil {
			return err
		}
		set = append(set, s)
	}
	for n := 1; n <= scaleOutMaxStandIns; n++ {
		sl := &ScaleLevel{StandIns: n}
		so.Levels = append(so.Levels, sl)
		err := b.withGateway(ctx, fmt.Sprintf("scaleout-%d", n), standInEnv(set[:n]), nil, func(g *child) error {
			before := inferCounts(set)
			var err error
			sl.Level, err = b.level(ctx, g, b.mix, levelOptions{Name: scaleName(n), Clients: so.Clients, Warmup: o.warmup, Window: so.Window})
			sl.Calls = callsSince(set, before)
			if err != nil || n < scaleOutMaxStandIns {
				return err
			}
			// The drill reuses the gateway over every stand-in.
			so.Drill, err = b.drill(ctx, g, set, max(so.Window, drillWindow))
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func scaleName(n int) string {
	if n == 1 {
		return "scale-out: 1 stand-in"
	}
	return fmt.Sprintf("scale-out: %d stand-ins", n)
}

// standInEnv points a gateway at set, as a --triton-url list.
func standInEnv(set []*standIn) map[string]string {
	addrs := make([]string, len(set))
	for i, s := range set {
		addrs[i] = s.addr
	}
	return map[string]string{"BACKEND": "triton", "TRITON_URL": strings.Join(addrs, ","), "TRITON_MODEL": set[0].Name()}
}

func inferCounts(set []*standIn) []int64 {
	n := make([]int64, len(set))
	for i, s := range set {
		n[i] = s.InferCount()
	}
	return n
}

func callsSince(set []*standIn, before []int64) []int64 {
	n := inferCounts(set)
	for i := range n {
		n[i] -= before[i]
	}
	return n
}

// drill plays the failover drill on g, a gateway over set: the last
// stand-in is stopped a third of the way into window and restarted at two
// thirds, under the same load as the levels.
func (b *bench) drill(ctx context.Context, g *child, set []*standIn, window time.Duration) (*Drill, error) {
	d := &Drill{Stopped: len(set) - 1}
	before := inferCounts(set)
	t := newDrillTarget(set[d.Stopped], d.Stopped+1, b.log)
	begin := time.Now()
	// The level starts a few ms after begin (a snapshot of the gateway):
	// the events are that much early, which a third of the window absorbs.
	stopped := scheduleMidway(begin, begin.Add(b.o.warmup+window/3), t.stop)
	back := scheduleMidway(begin, begin.Add(b.o.warmup+2*window/3), t.restart)
	var err error
	d.Level, err = b.level(ctx, g, b.mix, levelOptions{Name: fmt.Sprintf("scale-out: failover drill, %d stand-ins", len(set)),
		Clients: b.o.scaleClients, Warmup: b.o.warmup, Window: window})
	d.Calls = callsSince(set, before)
	for _, e := range []string{stopped(), back()} {
		if e != "" {
			d.Events = append(d.Events, e)
		}
	}
	t.finish(d)
	if d.Level != nil {
		d.Level.Event = strings.Join(d.Events, "; ")
	}
	return d, err
}

// drillTarget is the stand-in the drill stops and restarts, and what it
// saw of its calls.
type drillTarget struct {
	s       *standIn
	n       int // its number in the report, from 1
	log     *slog.Logger
	quit    chan struct{} // closed by finish: the watch ends
	watched chan struct{} // closed when the watch has ended (or never ran)

	mu                    sync.Mutex
	start, atStop, atBack int64 // InferCount at the level's start, the stop, the restart
	stopped, restarted    bool
	backAt                time.Time
	backAfter             time.Duration
}

// newDrillTarget starts counting s's calls now; n numbers it in the report.
func newDrillTarget(s *standIn, n int, log *slog.Logger) *drillTarget {
	return &drillTarget{s: s, n: n, log: log, quit: make(chan struct{}), watched: make(chan struct{}), start: s.InferCount()}
}

func (t *drillTarget) stop() string {
	t.log.Info("stopping a triton stand-in", "addr", t.s.addr)
	t.mu.Lock()
	t.atStop, t.stopped = t.s.InferCount(), true
	t.mu.Unlock()
	t.s.Stop()
	return fmt.Sprintf("stand-in %d (%s) stopped", t.n, t.s.addr)
}

// restart brings the stand-in back and watches for its first call.
func (t *drillTarget) restart() string {
	t.log.Info("restarting a triton stand-in", "addr", t.s.addr)
	if err := t.s.Restart(); err != nil {
		close(t.watched)
		return fmt.Sprintf("stand-in %d failed to restart (%v)", t.n, err)
	}
	t.mu.Lock()
	t.atBack, t.backAt, t.restarted = t.s.InferCount(), time.Now(), true
	t.mu.Unlock()
	go t.watch()
	return fmt.Sprintf("stand-in %d restarted", t.n)
}

// watch polls the call count until it rises past the restart's, or quit;
// it looks once more at quit, so a call in the last tick is not missed.
func (t *drillTarget) watch() {
	defer close(t.watched)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	rose := func() bool {
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.s.InferCount() > t.atBack {
			t.backAfter = time.Since(t.backAt)
			return true
		}
		return false
	}
	for {
		select {
		case <-t.quit:
			rose()
			return
		case <-tick.C:
			if rose() {
				return
			}
		}
	}
}

// finish ends the watch and fills d's counts; call it once the events'
// results are in (they wait for a running event).
func (t *drillTarget) finish(d *Drill) {
	close(t.quit)
	t.mu.Lock()
	restarted := t.restarted
	t.mu.Unlock()
	if restarted {
		<-t.watched
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	end := t.s.InferCount()
	switch {
	case t.restarted:
		d.BeforeStop, d.WhileDown, d.AfterRestart = t.atStop-t.start, t.atBack-t.atStop, end-t.atBack
	case t.stopped:
		d.BeforeStop, d.WhileDown = t.atStop-t.start, end-t.atStop
	}
	d.BackAfter = t.backAfter
}

// base is the 1-stand-in level, nil if it was not measured.
func (so *ScaleOut) base() *Level {
	for _, sl := range so.Levels {
		if sl.StandIns == 1 {
			return sl.Level
		}
	}
	return nil
}

// ratio is l's tokens/s ÷ the 1-stand-in level's, and whether both were
// measured.
func (so *ScaleOut) ratio(l *Level) (float64, bool) {
	b := so.base()
	if l == nil || b == nil || b.Tokens <= 0 {
		return 0, false
	}
	return l.Tokens / b.Tokens, true
}

// gatewayCPUSeconds is the gateway process's CPU time over l's makespan.
func gatewayCPUSeconds(l *Level) float64 { return l.GatewayCPU * l.Makespan.Seconds() }

// tokensPerGatewayCPU is l's tokens per CPU-second of the gateway process
// alone (the stand-ins and the load generator are this process).
func tokensPerGatewayCPU(l *Level) float64 {
	if l.GatewayCPU <= 0 {
		return 0
	}
	return l.Tokens / l.GatewayCPU
}

// widest is the measured level with the most stand-ins: the gateway's CPU
// per token is judged there, where it works hardest.
func (so *ScaleOut) widest() *ScaleLevel {
	var w *ScaleLevel
	for _, sl := range so.Levels {
		if sl.Level != nil && sl.Level.GatewayCPU > 0 && (w == nil || sl.StandIns > w.StandIns) {
			w = sl
		}
	}
	return w
}

// onlyOK reports whether every status counted is a 200, and there are some.
func onlyOK(status map[int]int) bool {
	return len(status) == 1 && status[200] > 0
}

func (so *ScaleOut) targets() []target {
	var top *Level
	for _, sl := range so.Levels {
		if sl.StandIns == scaleOutMaxStandIns {
			top = sl.Level
		}
	}
	t := target{name: fmt.Sprintf("scale-out: tokens/s with %d stand-ins ÷ with 1", scaleOutMaxStandIns), want: "≥ 2.7"}
	if ratio, ok := so.ratio(top); ok {
		t.got, t.met, t.known = fmt.Sprintf("%.2f (%.0f / %.0f tokens/s)", ratio, top.Tokens, so.base().Tokens), ratio >= 2.7, true
	}
	d := target{name: "scale-out failover drill: statuses; the restarted stand-in's calls", want: "only 200; some after the restart"}
	if dr := so.Drill; dr != nil && dr.Level != nil {
		d.got = fmt.Sprintf("%s; %d after the restart", fmtStatus(dr.Level.Status), dr.AfterRestart)
		d.met, d.known = onlyOK(dr.Level.Status) && dr.AfterRestart > 0 && len(dr.Events) == 2, true
	}
	return []target{t, d}
}

// write renders the scale-out run: a summary per level, the drill, the
// gateway's CPU per replica, then every level in full.
func (so *ScaleOut) write(p *printer) {
	g := so.GPU
	p.f("## Scale-out (issue 15)\n\n")
	output := "`sentence_embedding` [B,H] (Triton serving a pooled model, as the README recommends)"
	if so.Hidden {
		output = "`last_hidden_state` [B,L,H] (the gateway pools)"
	}
	p.f("- setup: one gateway (`--backend triton --triton-url` listing the first N stand-ins) over N in-process Triton stand-ins, each one simulated GPU "+
		"(`tritontest.WithGPUTiming`: one batch at a time, %s per batch + %s per padded token, the per-token cost growing as (rows/%d)² past %d rows; "+
		"a 32 × 128 batch occupies it %s, %.0f padded tokens/s); their model answers at once with a constant %s, "+
		"so the stand-ins cost this process only the gRPC hop; "+
		"the mix, %d clients, closed loop, %s of sending per level; gateway CPU is utime + stime of its process (/proc/PID/stat) over the level's makespan\n\n",
		fmtDur(g.PerBatch), fmtDur(g.PerToken), max(g.BestRows, 1), max(g.BestRows, 1), fmtDur(g.Cost(32, 128)), 32*128/max(g.Cost(32, 128), time.Nanosecond).Seconds(),
		output, so.Clients, fmtDur(so.Window))
	p.f("| stand-ins | tok/s | ÷ 1 stand-in | req/s | p50 | p99 | statuses | gateway CPU-s | gateway cores | tokens per gateway CPU-s | ModelInfer calls per stand-in |\n")
	p.f("|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---|\n")
	var levels []*Level
	row := func(name string, l *Level, calls []int64) {
		levels = append(levels, l)
		ratio := "–"
		if x, ok := so.ratio(l); ok {
			ratio = fmt.Sprintf("%.2f", x)
		}
		p.f("| %s | %.0f | %s | %.1f | %s | %s | %s | %.1f | %.2f | %.0f | %s |\n", name, l.Tokens, ratio, l.Requests,
			fmtDur(l.Latency.P50), fmtDur(l.Latency.P99), fmtStatus(l.Status), gatewayCPUSeconds(l), l.GatewayCPU, tokensPerGatewayCPU(l), fmtCalls(calls))
	}
	for _, sl := range so.Levels {
		if sl.Level != nil {
			row(fmt.Sprintf("%d", sl.StandIns), sl.Level, sl.Calls)
		}
	}
	dr := so.Drill
	if dr != nil && dr.Level != nil {
		row(fmt.Sprintf("%d, failover drill", len(dr.Calls)), dr.Level, dr.Calls)
	}
	p.f("\n")
	if dr != nil {
		back := "no call came after the restart before the level ended"
		if dr.BackAfter > 0 {
			back = fmt.Sprintf("its first call came %s after the restart", fmtDur(dr.BackAfter))
		}
		p.f("- failover drill: %s; stand-in %d's ModelInfer calls: %d before the stop, %d while down, %d after the restart (%s)\n",
			orNone(strings.Join(dr.Events, ", ")), dr.Stopped+1, dr.BeforeStop, dr.WhileDown, dr.AfterRestart, back)
	}
	if w := so.widest(); w != nil && tokensPerGatewayCPU(w.Level) > 0 {
		t := tokensPerGatewayCPU(w.Level)
		p.f("- gateway CPU per replica: with %d stand-ins the gateway used %.2f cores for %.0f tokens/s, %.0f tokens per gateway CPU-second "+
			"(%.2f cores per stand-in at %.0f tokens/s each): a Triton replica serving R tokens/s of this mix needs about R ÷ %.0f gateway cores "+
			"(e.g. 100,000 tokens/s → %.1f cores)\n",
			w.StandIns, w.Level.GatewayCPU, w.Level.Tokens, t, w.Level.GatewayCPU/float64(w.StandIns), w.Level.Tokens/float64(w.StandIns), t, 100000/t)
	}
	p.f("\n")
	writeLevels(p, levels, nil, 0)
}

// fmtCalls lists calls per stand-in: "120 / 118 / 0".
func fmtCalls(calls []int64) string {
	if len(calls) == 0 {
		return "–"
	}
	parts := make([]string, len(calls))
	for i, n := range calls {
		parts[i] = fmt.Sprint(n)
	}
	return strings.Join(parts, " / ")
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
