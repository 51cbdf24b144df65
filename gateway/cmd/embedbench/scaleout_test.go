package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/backend/triton"
	"github.com/embedgate/embedgate/gateway/backend/triton/tritontest"
)

func TestParseStatCPU(t *testing.T) {
	// A command name with spaces and parentheses; utime 150, stime 57 ticks.
	stat := "4242 (embed (gw) 2) S 1 4242 4242 0 -1 4194560 1234 0 0 0 150 57 0 0 20 0 9 0 100 2000000 5000 18446744073709551615\n"
	cpu, err := parseStatCPU([]byte(stat))
	if err != nil || cpu != 2070*time.Millisecond {
		t.Errorf("parseStatCPU = %v, %v; want 2.07s", cpu, err)
	}
	for name, bad := range map[string]string{
		"no command end": "4242 (embedgate S 1 2 3",
		"short":          "4242 (embedgate) S 1 4242 4242 0 -1 4194560 1234 0 0 0 150",
		"not a number":   "4242 (embedgate) S 1 4242 4242 0 -1 4194560 1234 0 0 0 15x 57 0",
		"negative":       "4242 (embedgate) S 1 4242 4242 0 -1 4194560 1234 0 0 0 -150 57 0",
		"empty":          "",
	} {
		if cpu, err := parseStatCPU([]byte(bad)); err == nil {
			t.Errorf("%s: parseStatCPU(%q) = %v, want an error", name, bad, cpu)
		}
	}
	// This process's own stat parses: the format is the kernel's.
	if _, err := readProc("self"); err != nil {
		t.Errorf("readProc(self): %v", err)
	}
}

func TestParseScaleOutFlags(t *testing.T) {
	base := []string{"embedbench", "-ort-lib", "x"}
	o, err := parseFlags(append(base, "-run", "scaleout"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := tritontest.GPUTiming{PerBatch: scaleOutPerBatch, PerToken: scaleOutPerToken, BestRows: scaleOutBestRows}
	if !o.runs["scaleout"] || len(o.runs) != 1 || o.scaleGPU != want || o.scaleClients != scaleOutClients || o.scaleWindow != 15*time.Second || o.scaleHidden {
		t.Errorf("parseFlags(-run scaleout) = runs %v, gpu %+v, clients %d, window %v", o.runs, o.scaleGPU, o.scaleClients, o.scaleWindow)
	}
	if !slices.Contains(strings.Split(runNames, ","), "scaleout") {
		t.Errorf("runNames %q lacks scaleout: the default run would skip it", runNames)
	}
	o, err = parseFlags(append(base, "-run", "onnx,scaleout", "-quick", "-scaleout-per-batch", "1ms", "-scaleout-per-token", "3us", "-scaleout-best-rows", "16", "-scaleout-clients", "8", "-scaleout-output", "hidden"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want = tritontest.GPUTiming{PerBatch: time.Millisecond, PerToken: 3 * time.Microsecond, BestRows: 16}
	if !o.runs["scaleout"] || o.scaleGPU != want || o.scaleClients != 8 || o.scaleWindow != 6*time.Second || !o.scaleHidden {
		t.Errorf("-quick: scaleout %v, gpu %+v, clients %d, window %v (want 6s), hidden %v", o.runs["scaleout"], o.scaleGPU, o.scaleClients, o.scaleWindow, o.scaleHidden)
	}
	for _, args := range [][]string{
		{"-scaleout-clients", "0"},
		{"-scaleout-window", "0s"},
		{"-scaleout-per-batch", "-1ms"},
		{"-scaleout-per-token", "-1us"},
		{"-scaleout-best-rows", "0"},
		{"-run", "scale-out"},
		{"-scaleout-output", "last_hidden_state"},
	} {
		if _, err := parseFlags(append(append(base, "-run", "scaleout"), args...), io.Discard); err == nil {
			t.Errorf("parseFlags(%v): want an error", args)
		}
	}
}

func TestStandInEnv(t *testing.T) {
	b := &bench{log: slog.New(slog.DiscardHandler)}
	var set []*standIn
	for range 2 {
		s, err := b.serveStandIn(newInstant(gateway.ModelSpec{Hidden: 4, Output: gateway.Pooled}, 32, 8))
		if err != nil {
			t.Fatal(err)
		}
		defer s.close()
		set = append(set, s)
	}
	env := standInEnv(set)
	if env["BACKEND"] != "triton" || env["TRITON_URL"] != set[0].addr+","+set[1].addr || env["TRITON_MODEL"] != "minilm-bench" {
		t.Errorf("standInEnv = %v", env)
	}
	if _, err := triton.ParseTarget(env["TRITON_URL"]); err != nil {
		t.Errorf("the gateway would refuse TRITON_URL %q: %v", env["TRITON_URL"], err)
	}
}

// embedOn sends n one-row batches to the stand-in at addr through the
// gateway's own Triton backend.
func embedOn(t *testing.T, addr string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	be, err := triton.Open(ctx, triton.Options{URL: addr, Model: "minilm-bench"})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	for range n {
		out, err := be.Embed(ctx, &gateway.Batch{ID: "x", Rows: 1, Len: 2, InputIDs: []int64{101, 102}, AttentionMask: []int64{1, 1}})
		if err != nil {
			t.Fatal(err)
		}
		out.Free()
	}
}

// TestDrillTarget plays the drill's stop and restart on a real stand-in
// and checks what it counted in each phase.
func TestDrillTarget(t *testing.T) {
	b := &bench{log: slog.New(slog.DiscardHandler)}
	s, err := b.serveStandIn(newInstant(gateway.ModelSpec{Hidden: 4, Output: gateway.Pooled}, 32, 8))
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	embedOn(t, s.addr, 2) // before the level: not counted
	tg := newDrillTarget(s, 3, b.log)
	embedOn(t, s.addr, 3)
	if got := tg.stop(); !strings.Contains(got, "stand-in 3") || !strings.Contains(got, "stopped") {
		t.Errorf("stop() = %q", got)
	}
	if got := tg.restart(); got != "stand-in 3 restarted" {
		t.Errorf("restart() = %q", got)
	}
	embedOn(t, s.addr, 4)
	var d Drill
	tg.finish(&d)
	if d.BeforeStop != 3 || d.WhileDown != 0 || d.AfterRestart != 4 || d.BackAfter <= 0 {
		t.Errorf("drill counted %d before the stop, %d while down, %d after the restart (first after %v); want 3, 0, 4, > 0",
			d.BeforeStop, d.WhileDown, d.AfterRestart, d.BackAfter)
	}

	// Stopped, the level over before the restart: nothing after it, and
	// finish does not wait for a watch that never started.
	tg = newDrillTarget(s, 1, b.log)
	embedOn(t, s.addr, 1)
	tg.stop()
	d = Drill{}
	tg.finish(&d)
	if d.BeforeStop != 1 || d.WhileDown != 0 || d.AfterRestart != 0 || d.BackAfter != 0 {
		t.Errorf("stop only: %+v; want 1 before the stop and nothing after", d)
	}
}

func TestScaleOutReport(t *testing.T) {
	lv := func(name string, tokens, cores float64, status map[int]int) *Level {
		return &Level{Name: name, Clients: 128, Makespan: 10 * time.Second, Tokens: tokens, Requests: tokens / 1000, GatewayCPU: cores,
			Latency: quantiles{N: 100, P50: 500 * time.Millisecond, P99: time.Second, Max: time.Second}, Status: status}
	}
	so := &ScaleOut{GPU: tritontest.GPUTiming{PerBatch: 2 * time.Millisecond, PerToken: 10 * time.Microsecond, BestRows: 32}, Clients: 128, Window: 15 * time.Second,
		Levels: []*ScaleLevel{
			{StandIns: 1, Level: lv("scale-out: 1 stand-in", 90000, 0.06, map[int]int{200: 500}), Calls: []int64{150, 0, 0}},
			{StandIns: 2, Level: lv("scale-out: 2 stand-ins", 178000, 0.12, map[int]int{200: 1000}), Calls: []int64{150, 155, 0}},
			{StandIns: 3, Level: lv("scale-out: 3 stand-ins", 264000, 0.2, map[int]int{200: 1500}), Calls: []int64{160, 150, 155}},
		},
		Drill: &Drill{Level: lv("scale-out: failover drill, 3 stand-ins", 200000, 0.15, map[int]int{200: 3000}), Calls: []int64{450, 440, 200}, Stopped: 2,
			Events:     []string{"stand-in 3 (127.0.0.1:9) stopped at 6.00s", "stand-in 3 restarted at 12.00s"},
			BeforeStop: 180, AfterRestart: 20, BackAfter: 5300 * time.Millisecond},
	}
	rep := &Report{Date: time.Date(2026, 12, 5, 1, 0, 0, 0, time.UTC), ScaleOut: so}
	var buf bytes.Buffer
	if err := rep.Write(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"## Scale-out (issue 15)",
		"2.00ms per batch + 10µs per padded token",
		"a 32 × 128 batch occupies it 43ms, 95345 padded tokens/s); their model answers at once with a constant `sentence_embedding` [B,H]",
		"| 1 | 90000 | 1.00 | 90.0 | 500ms | 1.00s | 200: 500 | 0.6 | 0.06 | 1500000 | 150 / 0 / 0 |",
		"| 3 | 264000 | 2.93 | 264.0 | 500ms | 1.00s | 200: 1500 | 2.0 | 0.20 | 1320000 | 160 / 150 / 155 |",
		"| 3, failover drill | 200000 | 2.22 | 200.0 |",
		"stand-in 3's ModelInfer calls: 180 before the stop, 0 while down, 20 after the restart (its first call came 5.30s after the restart)",
		"with 3 stand-ins the gateway used 0.20 cores for 264000 tokens/s, 1320000 tokens per gateway CPU-second (0.07 cores per stand-in at 88000 tokens/s each)",
		"needs about R ÷ 1320000 gateway cores (e.g. 100,000 tokens/s → 0.1 cores)",
		"| scale-out: tokens/s with 3 stand-ins ÷ with 1 | ≥ 2.7 | 2.93 (264000 / 90000 tokens/s) | met |",
		"| scale-out failover drill: statuses; the restarted stand-in's calls | only 200; some after the restart | 200: 3000; 20 after the restart | met |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

func TestScaleOutTargetsMissed(t *testing.T) {
	l := func(tokens float64, status map[int]int) *Level {
		return &Level{Tokens: tokens, Makespan: time.Second, GatewayCPU: 0.1, Status: status}
	}
	ok := map[int]int{200: 10}
	for name, tc := range map[string]struct {
		so       *ScaleOut
		ratioMet bool
		drillMet bool
	}{
		"below 2.7": {so: &ScaleOut{Levels: []*ScaleLevel{{StandIns: 1, Level: l(100, ok)}, {StandIns: 3, Level: l(260, ok)}},
			Drill: &Drill{Level: l(200, ok), AfterRestart: 5, Events: []string{"stopped", "restarted"}}}, drillMet: true},
		"a 502 in the drill": {so: &ScaleOut{Levels: []*ScaleLevel{{StandIns: 1, Level: l(100, ok)}, {StandIns: 3, Level: l(290, ok)}},
			Drill: &Drill{Level: l(200, map[int]int{200: 10, 502: 1}), AfterRestart: 5, Events: []string{"stopped", "restarted"}}}, ratioMet: true},
		"no traffic after the restart": {so: &ScaleOut{Levels: []*ScaleLevel{{StandIns: 1, Level: l(100, ok)}, {StandIns: 3, Level: l(290, ok)}},
			Drill: &Drill{Level: l(200, ok), Events: []string{"stopped", "restarted"}}}, ratioMet: true},
		"transport errors": {so: &ScaleOut{Levels: []*ScaleLevel{{StandIns: 1, Level: l(100, ok)}, {StandIns: 3, Level: l(290, ok)}},
			Drill: &Drill{Level: l(200, map[int]int{0: 1, 200: 10}), AfterRestart: 5, Events: []string{"stopped", "restarted"}}}, ratioMet: true},
		"the restart never ran": {so: &ScaleOut{Levels: []*ScaleLevel{{StandIns: 1, Level: l(100, ok)}, {StandIns: 3, Level: l(290, ok)}},
			Drill: &Drill{Level: l(200, ok), AfterRestart: 5, Events: []string{"stopped"}}}, ratioMet: true},
	} {
		ts := tc.so.targets()
		if len(ts) != 2 || !ts[0].known || !ts[1].known || ts[0].met != tc.ratioMet || ts[1].met != tc.drillMet {
			t.Errorf("%s: targets = %+v; want ratio met %v, drill met %v", name, ts, tc.ratioMet, tc.drillMet)
		}
	}
	// Nothing measured: both targets say so, and the report renders,
	// naming the output the stand-ins return.
	empty := &ScaleOut{}
	for _, tg := range empty.targets() {
		if tg.known {
			t.Errorf("target %q known without a run", tg.name)
		}
	}
	empty.Hidden = true
	var buf bytes.Buffer
	if err := (&Report{ScaleOut: empty}).Write(&buf); err != nil {
		t.Error(err)
	}
	if !strings.Contains(buf.String(), "`last_hidden_state` [B,L,H] (the gateway pools)") {
		t.Errorf("report of a hidden-output run does not say so:\n%s", buf.String())
	}
}
