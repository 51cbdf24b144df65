package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/embedgate/embedgate/gateway/backend/triton"
	"github.com/embedgate/embedgate/gateway/catalog"
	"github.com/embedgate/embedgate/gateway/config"
	"github.com/embedgate/embedgate/gateway/modelrepo"
	"github.com/embedgate/embedgate/gateway/tokenizer"
	"github.com/embedgate/embedgate/gateway/tune"
	"github.com/embedgate/embedgate/tritonstubs"
)

// tuneFlags are `embedgate tune`'s own flags; every other flag is the
// gateway's, read by config.Parse, so tune reaches the Triton models
// serve would.
type tuneFlags struct {
	budget   time.Duration
	texts    string
	json     bool
	rows     string
	lengths  string
	inflight string
	repo     string // --model-repository
}

func newTuneFlagSet(f *tuneFlags, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("embedgate tune", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&f.budget, "budget", 4*time.Minute, "the whole sweep's time, over every model; each point gets an equal share")
	fs.StringVar(&f.texts, "texts", "", `JSONL file of {"text": "..."} lines: the length mix to tune for (default: a built-in retrieval mix)`)
	fs.BoolVar(&f.json, "json", false, "print the sweep and recommendations as JSON")
	fs.StringVar(&f.rows, "rows", "1,2,4,8,16,32,64", "batch rows to try (capped at the model's max_batch_size)")
	fs.StringVar(&f.lengths, "lengths", "32,64,128,256,512", "padded lengths to try (capped at the model's max input length)")
	fs.StringVar(&f.inflight, "inflight", "1,2,4", "batches in flight to try")
	fs.StringVar(&f.repo, "model-repository", "", "Triton's model repository: print each model's suggested <model>/config.pbtxt as a diff against the current one")
	return fs
}

// tuneReport is one model's sweep and recommendation, as --json prints it.
type tuneReport struct {
	Model          string              `json:"model"`
	TritonModel    string              `json:"triton_model"`
	Sweep          *tune.Result        `json:"sweep"`
	Recommendation tune.Recommendation `json:"recommendation"`
	// ConfigPath and ConfigDiff: with --model-repository, the model's
	// config.pbtxt and the suggested changes to it.
	ConfigPath string `json:"config_path,omitempty"`
	ConfigDiff string `json:"config_diff,omitempty"`
}

// runTune is `embedgate tune [flags]`: it sweeps each Triton model of the
// catalogue through the gateway's tokenizer, padded batches and Triton
// client, and prints the knee and the settings it recommends.
func runTune(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var tf tuneFlags
	fs := newTuneFlagSet(&tf, stderr)
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			fmt.Fprintln(stderr, "Usage: embedgate tune [tune flags] [gateway flags]\n\nSweeps each Triton model the gateway flags select and recommends batch and config.pbtxt settings.\nGateway flags (--triton-url, --triton-model, --model-id, --models-file, --triton-discover, ...): see embedgate --help.\n\nTune flags:")
			fs.PrintDefaults()
			return flag.ErrHelp
		}
	}
	own, rest := splitTuneArgs(args, fs)
	if err := fs.Parse(own); err != nil {
		return err
	}
	grid, err := tuneGrid(tf)
	if err != nil {
		return err
	}
	if tf.budget <= 0 {
		return fmt.Errorf("--budget must be positive, got %v", tf.budget)
	}
	texts := tune.BuiltinTexts()
	if tf.texts != "" {
		if texts, err = readTextsFile(tf.texts); err != nil {
			return err
		}
	}
	cfg, err := config.Parse(rest, getenv, stderr)
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	cfg.TritonMaxInflight = slices.Max(grid.Inflight) // the client's budget must not cap the sweep
	pipes, err := offlinePipelines(cfg, getenv, stderr)
	if err != nil {
		return err
	}
	defer pipes.close()
	entries, err := tritonEntries(ctx, cfg, pipes.logger, pipes)
	if err != nil {
		return err
	}
	var reports []tuneReport
	for _, e := range entries {
		r, err := tuneModel(ctx, pipes, e, grid, tf.budget/time.Duration(len(entries)), texts, tf.repo)
		if err != nil {
			return fmt.Errorf("tune model %q (triton %s@%s): %w", e.Name, e.TritonModel, e.TritonURL, err)
		}
		reports = append(reports, r)
	}
	if tf.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(reports)
	}
	return printTune(stdout, reports)
}

// splitTuneArgs sends tune's own flags (and their values) to own, and
// every other argument, in order, to rest.
func splitTuneArgs(args []string, fs *flag.FlagSet) (own, rest []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := fs.Lookup(name)
		if !strings.HasPrefix(a, "-") || f == nil {
			rest = append(rest, a)
			continue
		}
		own = append(own, a)
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); (!ok || !b.IsBoolFlag()) && !hasValue && i+1 < len(args) {
			i++
			own = append(own, args[i])
		}
	}
	return own, rest
}

func tuneGrid(tf tuneFlags) (tune.Grid, error) {
	var g tune.Grid
	for _, axis := range []struct {
		flag string
		s    string
		to   *[]int
	}{{"rows", tf.rows, &g.Rows}, {"lengths", tf.lengths, &g.Lens}, {"inflight", tf.inflight, &g.Inflight}} {
		for _, part := range strings.Split(axis.s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(part))
			if err != nil || n < 1 || n > 1<<16 {
				return g, fmt.Errorf("--%s: %q is not a whole number from 1 to 65536", axis.flag, part)
			}
			*axis.to = append(*axis.to, n)
		}
		slices.Sort(*axis.to)
		*axis.to = slices.Compact(*axis.to)
	}
	return g, nil
}

func readTextsFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--texts: %w", err)
	}
	defer f.Close()
	texts, err := tune.ReadTexts(f)
	if err != nil {
		return nil, fmt.Errorf("--texts %s: %w", path, err)
	}
	return texts, nil
}

// tritonEntries is the catalogue's Triton models, as serve would build
// the catalogue from the same flags.
func tritonEntries(ctx context.Context, cfg *config.Config, logger *slog.Logger, pipes *pipelines) ([]catalog.Entry, error) {
	cat := newCatalogue(cfg, logger, nil, pipes)
	if err := cat.loadFile(); err != nil {
		return nil, err
	}
	if err := cat.discover(ctx); err != nil {
		return nil, err
	}
	all, _, err := cat.entries()
	if err != nil {
		return nil, err
	}
	var entries []catalog.Entry
	for _, e := range all {
		if e = withDefaults(e, cfg); e.Backend == "triton" {
			entries = append(entries, e)
		}
	}
	if len(entries) == 0 {
		return nil, errors.New("no Triton model to tune: give --backend triton with --triton-model, or a catalogue with Triton models")
	}
	return entries, nil
}

// tuneModel sweeps one model: the mix tokenized by its own tokenizer, the
// grid capped at what the model accepts.
func tuneModel(ctx context.Context, pipes *pipelines, e catalog.Entry, grid tune.Grid, budget time.Duration, texts []string, repo string) (tuneReport, error) {
	report := tuneReport{Model: e.Name, TritonModel: e.TritonModel}
	var current *tritonstubs.ModelConfig
	if repo != "" { // read first: a wrong path fails before the sweep
		report.ConfigPath = filepath.Join(repo, e.TritonModel, "config.pbtxt")
		var err error
		if current, err = modelrepo.Load(report.ConfigPath); err != nil {
			return tuneReport{}, fmt.Errorf("--model-repository: %w", err)
		}
	}
	model, err := openModel(ctx, e, pipes.cfg.DType, pipes.getenv, pipes.stderr)
	if err != nil {
		return tuneReport{}, err
	}
	// One replica: config.pbtxt is each replica's, tuned alike.
	addrs, err := triton.ResolveURL(ctx, e.TritonURL)
	if err != nil {
		return tuneReport{}, err
	}
	client, release, err := pipes.client(ctx, addrs[0])
	if err != nil {
		return tuneReport{}, err
	}
	defer release()
	backend, err := client.Open(ctx, e.TritonModel, "")
	if err != nil {
		return tuneReport{}, err
	}
	defer backend.Close()
	grid.Rows = capAxis(grid.Rows, backend.Spec().MaxBatch)
	grid.Lens = capAxis(grid.Lens, model.MaxInputLength)
	seqs := make([][]int32, len(texts))
	for i, t := range texts {
		seqs[i] = model.tok.Encode(t, tokenizer.EncodeOptions{AddSpecialTokens: true, MaxLength: model.MaxInputLength}).IDs
	}
	mix, err := tune.NewMix(seqs)
	if err != nil {
		return tuneReport{}, err
	}
	run := func(ctx context.Context, rows, length int) (int, error) {
		b, tokens := mix.Batch(rows, length)
		out, err := backend.Embed(ctx, b)
		if err != nil {
			return 0, err
		}
		out.Free()
		return tokens, nil
	}
	res, err := tune.Sweep(ctx, tune.Options{Grid: grid, Budget: budget, Run: run})
	if err != nil {
		return tuneReport{}, err
	}
	if report.Recommendation, err = tune.Recommend(res.Points); err != nil {
		return tuneReport{}, err
	}
	report.Sweep = res
	if current != nil {
		if report.ConfigDiff, err = tune.ConfigDiff(current, tune.Suggest(current, report.Recommendation)); err != nil {
			return tuneReport{}, err
		}
	}
	return report, nil
}

// capAxis drops the values above limit (0 = none), keeping limit itself
// when any was dropped, so the model's own maximum is measured.
func capAxis(axis []int, limit int) []int {
	if limit <= 0 || slices.Max(axis) <= limit {
		return axis
	}
	kept := slices.DeleteFunc(slices.Clone(axis), func(v int) bool { return v >= limit })
	return append(kept, limit)
}

// printTune prints each model's knee, the settings with their reasons,
// and the sweep's points.
func printTune(w io.Writer, reports []tuneReport) error {
	for _, r := range reports {
		k := r.Recommendation.Knee
		fmt.Fprintf(w, "model %s (triton %s): %d points in %v of a %v budget\n", r.Model, r.TritonModel, len(r.Sweep.Points),
			r.Sweep.Spent.Round(time.Millisecond), r.Sweep.Budget)
		fmt.Fprintf(w, "knee: %d rows × %d tokens, %d in flight: %.0f tokens/s, p50 %v, p99 %v\n\n", k.Rows, k.Len, k.Inflight,
			k.TokensPerSec, k.P50.Round(10*time.Microsecond), k.P99.Round(10*time.Microsecond))
		fmt.Fprintln(w, "gateway flags:")
		for _, s := range r.Recommendation.Gateway {
			fmt.Fprintf(w, "  --%s=%d\n      %s\n", s.Name, s.Value, s.Why)
		}
		fmt.Fprintln(w, "config.pbtxt:")
		for _, s := range r.Recommendation.Triton {
			fmt.Fprintf(w, "  %s: %d\n      %s\n", s.Name, s.Value, s.Why)
		}
		if r.ConfigPath != "" {
			fmt.Fprintf(w, "suggested %s:\n%s", r.ConfigPath, orNone(r.ConfigDiff))
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "\nROWS\tLENGTH\tIN FLIGHT\tBATCHES\tTOKENS/S\tP50\tP99\t")
		for _, p := range r.Sweep.Points {
			fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%.0f\t%v\t%v\t\n", p.Rows, p.Len, p.Inflight, p.Batches, p.TokensPerSec,
				p.P50.Round(10*time.Microsecond), p.P99.Round(10*time.Microsecond))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintln(w)
	}
	return nil
}

func orNone(diff string) string {
	if diff == "" {
		return "  (no change)\n"
	}
	return diff
}
