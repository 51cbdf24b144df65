// Command embedbench is the benchmark harness behind `make bench`: it
// starts bin/embedgate as a child process on a generated MiniLM-size model,
// drives it with vegeta at fixed concurrency levels using a seeded mix of
// input lengths and batch sizes, and compares its throughput with raw ONNX
// Runtime on ideal batches measured in the same run. It does the same with
// --backend triton against the in-process Triton stand-in, measures the
// gateway's own overhead and memory against an instant backend, and plays
// a 10× overload. With the cache on (memory and a redis-server it starts),
// it plays a workload whose inputs all repeat, one where half are new, and
// one where Redis is killed mid-run, each against the same workload with the
// cache off; every other run has the cache off. The scale-out run puts one
// gateway over 1, 2 and 3 stand-ins that each simulate one GPU's timing,
// measures the gateway's CPU per token, and stops and restarts one stand-in
// under load. The report (Markdown) goes to stdout, progress to stderr.
//
//	embedbench -ort-lib .cache/ort/1.30.0/libonnxruntime.so.1 [-quick]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/backend/onnx"
	"github.com/embedgate/embedgate/gateway/backend/triton/tritontest"
	"github.com/embedgate/embedgate/gateway/hfmodel"
	"github.com/embedgate/embedgate/gateway/tokenizer"
)

func main() {
	if err := run(context.Background(), os.Args, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintf(os.Stderr, "embedbench: %v\n", err)
		os.Exit(1)
	}
}

// options are the command line.
type options struct {
	gateway, model, ortLib, logs, profile string
	window, warmup, raw                   time.Duration
	levels                                []int
	runs                                  map[string]bool
	quick                                 bool
	seed                                  uint64
	overloadMax, overloadClients          int
	memoryClients                         int
	cacheClients, cachePool               int
	cacheBackends                         []string
	redisServer                           string
	scaleClients                          int
	scaleWindow                           time.Duration
	scaleGPU                              tritontest.GPUTiming
	scaleHidden                           bool
	env                                   map[string]string // extra gateway environment
}

// runNames lists the parts of a run, in the order they run.
const runNames = "raw,onnx,triton,overhead,memory,overload,cache,scaleout"

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.gateway, "gateway", "bin/embedgate", "the gateway binary (make build)")
	fs.StringVar(&o.model, "model", ".cache/models/minilm-bench", "model directory (go run ./gateway/cmd/testmodel -size minilm)")
	fs.StringVar(&o.ortLib, "ort-lib", "", "libonnxruntime.so.1 (required; scripts/fetch-ort)")
	fs.StringVar(&o.logs, "logs", filepath.Join(os.TempDir(), "embedbench-logs"), "directory for the gateways' logs")
	fs.StringVar(&o.profile, "profile", "", "directory for CPU and heap profiles of the gateway (64-client, memory and overload levels; runs it with --pprof)")
	fs.DurationVar(&o.window, "window", 18*time.Second, "time clients send requests in each level (answers in flight are then awaited)")
	fs.DurationVar(&o.warmup, "warmup", 0, "leave requests sent in this first part of each level out of latencies and statuses")
	fs.DurationVar(&o.raw, "raw", 10*time.Second, "least time for the raw ONNX Runtime baseline (whole passes over the inputs)")
	levels := fs.String("levels", "1,8,64,256", "concurrent clients per level (onnx and triton)")
	runs := fs.String("run", runNames, "what to run, any of "+runNames)
	fs.BoolVar(&o.quick, "quick", false, "short levels (5 s of sending, one raw pass over fewer inputs) to iterate")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the request mix")
	fs.IntVar(&o.overloadMax, "overload-max", 8, "MAX_CONCURRENT_REQUESTS for the overload run")
	fs.IntVar(&o.overloadClients, "overload-clients", 80, "clients in the overload run (10× the admitted requests)")
	fs.IntVar(&o.memoryClients, "memory-clients", 256, "clients in the memory run")
	fs.IntVar(&o.cacheClients, "cache-clients", ratioClients, "clients in the cache runs")
	fs.IntVar(&o.cachePool, "cache-pool", 64, "requests in the cache runs' pool of repeated inputs (warmed once; -quick: at most 32)")
	cacheBackends := fs.String("cache-backends", "onnx", "backends of the cache runs, any of onnx,triton")
	fs.StringVar(&o.redisServer, "redis-server", "redis-server", "the redis-server binary for the cache runs' Redis tier")
	checkScaleOut := scaleOutFlags(fs, o)
	o.env = map[string]string{}
	fs.Func("env", "extra `KEY=VALUE` for every gateway (repeatable), e.g. GOMEMLIMIT=120MiB or MAX_BATCH_TOKENS=8192", func(v string) error {
		k, val, ok := strings.Cut(v, "=")
		if !ok || k == "" {
			return fmt.Errorf("want KEY=VALUE, got %q", v)
		}
		o.env[k] = val
		return nil
	})
	if err := fs.Parse(args[1:]); err != nil {
		return nil, err
	}
	if o.ortLib == "" {
		return nil, errors.New("-ort-lib is required")
	}
	if o.quick {
		o.window, o.raw = 5*time.Second, time.Second
		o.cachePool = min(o.cachePool, 32)
	}
	if err := checkScaleOut(); err != nil {
		return nil, err
	}
	if o.cacheClients < 1 || o.cachePool < 1 {
		return nil, fmt.Errorf("-cache-clients and -cache-pool must be at least 1, got %d and %d", o.cacheClients, o.cachePool)
	}
	for _, f := range strings.Split(*cacheBackends, ",") {
		f = strings.TrimSpace(f)
		if f != "onnx" && f != "triton" {
			return nil, fmt.Errorf("-cache-backends: unknown %q (want onnx or triton)", f)
		}
		o.cacheBackends = append(o.cacheBackends, f)
	}
	for _, f := range strings.Split(*levels, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-levels: bad level %q", f)
		}
		o.levels = append(o.levels, n)
	}
	o.runs = map[string]bool{}
	for _, f := range strings.Split(*runs, ",") {
		f = strings.TrimSpace(f)
		if !slices.Contains(strings.Split(runNames, ","), f) {
			return nil, fmt.Errorf("-run: unknown %q (want some of %s)", f, runNames)
		}
		o.runs[f] = true
	}
	if o.runs["cache"] {
		// Found now, not after the other runs' minutes.
		path, err := exec.LookPath(o.redisServer)
		if err != nil {
			return nil, fmt.Errorf("the cache runs need redis-server (Debian's redis-server package, or -redis-server; or leave cache out of -run): %w", err)
		}
		o.redisServer = path
	}
	return o, nil
}

// run is the whole program. Every load is bounded in time; every child
// process and server it starts is stopped before it returns, also on error
// or SIGINT.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if o.profile != "" {
		if err := os.MkdirAll(o.profile, 0o755); err != nil {
			return err
		}
	}
	b, err := newBench(o, stderr)
	if err != nil {
		return err
	}
	defer b.close()
	rep, err := b.runAll(ctx)
	if rep != nil {
		if werr := rep.Write(stdout); werr != nil {
			return errors.Join(err, werr)
		}
	}
	return err
}

// bench holds what every run shares: the model, its tokenizer, the
// in-process ONNX Runtime session and the request mix.
type bench struct {
	o      *options
	log    *slog.Logger
	dir    string
	hf     *hfmodel.Model
	tok    *tokenizer.Tokenizer
	ort    *onnx.Backend
	mix    *Mix
	envGW  map[string]string
	closer []func()
}

func newBench(o *options, stderr io.Writer) (*bench, error) {
	b := &bench{o: o, log: slog.New(slog.NewTextHandler(stderr, nil))}
	var err error
	if b.dir, err = filepath.Abs(o.model); err != nil {
		return nil, err
	}
	if b.hf, err = hfmodel.Open(b.dir); err != nil {
		return nil, fmt.Errorf("model %s: %w (generate it: go run ./gateway/cmd/testmodel -out %s -size minilm)", b.dir, err, o.model)
	}
	if b.tok, err = tokenizer.LoadFile(b.hf.TokenizerPath); err != nil {
		return nil, err
	}
	if b.mix, err = NewMix(DefaultMix(o.seed)); err != nil {
		return nil, err
	}
	lib, err := filepath.Abs(o.ortLib)
	if err != nil {
		return nil, err
	}
	if o.gateway, err = filepath.Abs(o.gateway); err != nil {
		return nil, err
	}
	// The cache is off unless a cache run turns it on: the mix repeats
	// across levels, and the figures of the other runs stay comparable
	// with those from before the cache.
	b.envGW = map[string]string{"MODEL_ID": b.dir, "ORT_LIB": lib, "CACHE": "false"}
	// One session serves the raw baseline and the Triton stand-in: ONNX
	// Runtime's environment is process-wide and best loaded once.
	b.ort, err = onnx.Open(onnx.Options{LibraryPath: lib, ModelPath: filepath.Join(b.dir, "onnx", "model.onnx"),
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	b.closer = append(b.closer, func() { _ = b.ort.Close() })
	return b, nil
}

func (b *bench) close() {
	for i := len(b.closer) - 1; i >= 0; i-- {
		b.closer[i]()
	}
}

func (b *bench) runAll(ctx context.Context) (*Report, error) {
	o := b.o
	rep := &Report{Date: time.Now(), Machine: machine(), Quick: o.quick,
		Model: fmt.Sprintf("%s (generated MiniLM-size BERT, hidden %d, max input %d)", b.dir, b.hf.HiddenSize, b.hf.MaxInputLength),
		Mix: fmt.Sprintf("%d seeded requests (seed %d): inputs 60%% queries of 5–20 tokens, 30%% passages of 100–300, 10%% documents of 500–540 (truncated to %d); 1–16 inputs per request; "+
			"50%% OpenAI base64, 25%% OpenAI float, 25%% TEI /embed; closed loop (each client sends on answer); clients send for %v per level, then the answers in flight are awaited",
			len(b.mix.Requests), o.seed, b.hf.MaxInputLength, o.warmup+o.window),
	}
	// Raw ONNX Runtime runs twice, before and after the onnx levels, and
	// the better run is the baseline: the target is a share of the best
	// raw throughput, and other load on a shared machine only lowers it.
	var batches []*gateway.Batch
	raw := func() error {
		if !o.runs["raw"] {
			return nil
		}
		if batches == nil {
			// About 60k tokens: one pass takes ~8 s at the ~7k tokens/s
			// this machine reaches on the mix; quick mode takes half.
			texts := 512
			if o.quick {
				texts = 256
			}
			var err error
			if batches, err = idealBatches(b.tok, b.mix.Texts(texts), b.hf.MaxInputLength, 32, 16384); err != nil {
				return err
			}
		}
		b.log.Info("raw ONNX Runtime baseline", "for", o.raw)
		r, err := runRaw(ctx, b.ort, batches, o.raw, o.seed)
		if err != nil {
			return err
		}
		b.log.Info("raw", "tokens/s", int(r.Tokens), "tokens/CPU-s", int(r.TokPerCPU), "batches", r.Batches)
		rep.RawRuns = append(rep.RawRuns, r)
		if rep.Raw == nil || r.Tokens > rep.Raw.Tokens {
			rep.Raw = r
		}
		return nil
	}
	if err := raw(); err != nil {
		return rep, err
	}
	if o.runs["onnx"] {
		if err := b.levels(ctx, rep, "onnx", map[string]string{"BACKEND": "onnx"}, nil); err != nil {
			return rep, err
		}
		if err := raw(); err != nil {
			return rep, err
		}
	}
	if o.runs["triton"] {
		// Like a Triton model with instance_group count 1: one batch runs at
		// a time; the gateway still keeps several in flight.
		if err := b.levels(ctx, rep, "triton", nil, &oneInstance{model: b.ort}); err != nil {
			return rep, err
		}
	}
	if o.runs["overhead"] || o.runs["memory"] {
		if err := b.instant(ctx, rep); err != nil {
			return rep, err
		}
	}
	if o.runs["overload"] {
		env := map[string]string{"BACKEND": "onnx", "MAX_CONCURRENT_REQUESTS": strconv.Itoa(o.overloadMax)}
		rep.OverloadMax = o.overloadMax
		err := b.withGateway(ctx, "overload", env, nil, func(g *child) error {
			for _, at0 := range []bool{false, true} {
				clients := "clients honour retry-after"
				if at0 {
					clients = "clients retry at once"
				}
				name := fmt.Sprintf("overload: onnx, MAX_CONCURRENT_REQUESTS=%d, %s", o.overloadMax, clients)
				profile := b.profilePath("overload", o.overloadClients)
				if at0 {
					profile = b.profilePath("overload-at0", o.overloadClients)
				}
				l, err := b.level(ctx, g, b.mix, levelOptions{Name: name, Clients: o.overloadClients, Warmup: o.warmup, Window: o.window,
					Profile: profile, RetryAt0: at0})
				if l != nil {
					rep.Overload = append(rep.Overload, l)
				}
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return rep, err
		}
	}
	if o.runs["cache"] {
		for _, backend := range o.cacheBackends {
			if err := b.cacheRuns(ctx, rep, backend); err != nil {
				return rep, err
			}
		}
	}
	if o.runs["scaleout"] {
		if err := b.scaleOut(ctx, rep); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// levels runs every concurrency level against one gateway. With a
// non-nil model the gateway uses --backend triton against an in-process
// Triton stand-in running it.
func (b *bench) levels(ctx context.Context, rep *Report, name string, env map[string]string, m model) error {
	return b.withGateway(ctx, name, env, m, func(g *child) error {
		for _, n := range b.o.levels {
			opts := levelOptions{Name: name, Clients: n, Warmup: b.o.warmup, Window: b.o.window, BackendHere: m != nil}
			if n == ratioClients {
				opts.Profile = b.profilePath(name, n)
			}
			l, err := b.level(ctx, g, b.mix, opts)
			if l != nil {
				rep.Levels = append(rep.Levels, l)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// instant measures the gateway alone: Triton stand-in whose model answers
// at once, so that the gateway process holds no model and every
// millisecond a client sees is the gateway's (plus one loopback gRPC hop).
func (b *bench) instant(ctx context.Context, rep *Report) error {
	o := b.o
	spec := b.ort.Spec()
	short, err := NewMix(ShortQueryMix(o.seed))
	if err != nil {
		return err
	}
	mixOpts := DefaultMix(o.seed)
	mixOpts.Routes = [numRoutes]float64{routeNative: 1} // native bodies carry precise timings
	nativeMix, err := NewMix(mixOpts)
	if err != nil {
		return err
	}
	kinds := []gateway.OutputKind{gateway.Hidden}
	if !o.quick {
		kinds = append(kinds, gateway.Pooled)
	}
	for _, kind := range kinds {
		s := spec
		s.Output = kind
		out := gateway.TensorLastHiddenState
		if kind == gateway.Pooled {
			out = gateway.TensorSentenceEmbedding
		}
		err := b.withGateway(ctx, "instant-"+out, map[string]string{}, newInstant(s, 32, b.hf.MaxInputLength), func(g *child) error {
			if kind == gateway.Hidden && o.runs["overhead"] {
				l, err := b.level(ctx, g, short, levelOptions{Name: "instant backend (" + out + "): 1 short query per request", Clients: 1, Warmup: o.warmup, Window: o.window, Timings: true})
				rep.Overhead = l
				if err != nil {
					return err
				}
				l, err = b.level(ctx, g, nativeMix, levelOptions{Name: "instant backend (" + out + "): the mix, native route", Clients: 1, Warmup: o.warmup, Window: o.window, Timings: true})
				rep.OverMix = l
				if err != nil {
					return err
				}
			}
			if o.runs["memory"] {
				l, err := b.level(ctx, g, b.mix, levelOptions{Name: fmt.Sprintf("instant backend (%s): %d clients", out, o.memoryClients),
					Clients: o.memoryClients, Warmup: o.warmup, Window: o.window, Profile: b.profilePath("instant-"+out, o.memoryClients)})
				if l != nil {
					rep.Memory = append(rep.Memory, l)
				}
				return err
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) level(ctx context.Context, g *child, mix workload, opts levelOptions) (*Level, error) {
	b.log.Info("level", "run", opts.Name, "clients", opts.Clients, "for", opts.Warmup+opts.Window)
	l, err := runLevel(ctx, g, mix, opts)
	if l != nil && l.ProfileErr != "" {
		b.log.Warn("no CPU profile", "run", opts.Name, "err", l.ProfileErr)
	}
	if l != nil {
		b.log.Info("level done", "run", opts.Name, "clients", opts.Clients, "req/s", fmt.Sprintf("%.1f", l.Requests),
			"tokens/s", int(l.Tokens), "p50", l.Latency.P50, "p99", l.Latency.P99, "statuses", fmtStatus(l.Status), "cache", fmtCache(l.Cache))
	}
	return l, err
}

// withGateway starts a gateway (and, with m, a Triton stand-in serving m
// on a loopback port), runs fn, and stops both whatever happens.
func (b *bench) withGateway(ctx context.Context, name string, env map[string]string, m model, fn func(*child) error) error {
	full := map[string]string{}
	for k, v := range b.envGW {
		full[k] = v
	}
	for k, v := range env {
		full[k] = v
	}
	for k, v := range b.o.env {
		full[k] = v
	}
	if b.o.profile != "" {
		full["PPROF"] = "true"
	}
	if m != nil {
		s, err := b.serveStandIn(m)
		if err != nil {
			return err
		}
		defer s.close()
		full["BACKEND"], full["TRITON_URL"], full["TRITON_MODEL"] = "triton", s.addr, s.Name()
	}
	logPath := filepath.Join(b.o.logs, name+".log")
	b.log.Info("starting gateway", "run", name, "log", logPath)
	g, err := startGateway(ctx, b.o.gateway, logPath, full)
	if err != nil {
		return err
	}
	defer g.stop()
	// On Ctrl-C the gateway drains at once, so the requests in flight end
	// now rather than when their backend work is done.
	stopEarly := context.AfterFunc(ctx, g.stop)
	defer stopEarly()
	return fn(g)
}

// standIn is a Triton stand-in served on a loopback port by this process.
type standIn struct {
	*tritontest.Server
	addr   string
	served chan error // Serve's result
	log    *slog.Logger
}

// serveStandIn serves m as model minilm-bench on a free loopback port.
func (b *bench) serveStandIn(m model, opts ...tritontest.Option) (*standIn, error) {
	srv, err := tritontest.New(m, append([]tritontest.Option{tritontest.WithName("minilm-bench")}, opts...)...)
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Close()
		return nil, err
	}
	s := &standIn{Server: srv, addr: lis.Addr().String(), served: make(chan error, 1), log: b.log}
	go func() { s.served <- srv.Serve(lis) }()
	return s, nil
}

// close stops the stand-in for good and waits for Serve to return.
func (s *standIn) close() {
	s.Close()
	if err := <-s.served; err != nil {
		s.log.Error("triton stand-in", "addr", s.addr, "err", err)
	}
}

// profilePath is where a level's profiles go ("" = none).
func (b *bench) profilePath(run string, clients int) string {
	if b.o.profile == "" {
		return ""
	}
	return filepath.Join(b.o.profile, fmt.Sprintf("%s-%d", run, clients))
}

// machine describes the CPU for the report.
func machine() string {
	cpu := "unknown CPU"
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(raw)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	return fmt.Sprintf("%d × %s, %s/%s, %s", runtime.NumCPU(), cpu, runtime.GOOS, runtime.GOARCH, runtime.Version())
}
