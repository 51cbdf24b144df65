package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/catalog"
	"github.com/embedgate/embedgate/gateway/config"
	"github.com/embedgate/embedgate/gateway/infer"
)

// offlinePipelines opens models as serve would, for a command that runs
// them without serving (models, tune): warnings only on stderr, a registry
// of its own, no traces.
func offlinePipelines(cfg *config.Config, getenv func(string) string, stderr io.Writer) (*pipelines, error) {
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	reg := prometheus.NewRegistry()
	gate, err := infer.NewGate(cfg.MaxConcurrentRequests, reg)
	if err != nil {
		return nil, err
	}
	return &pipelines{cfg: cfg, getenv: getenv, stderr: stderr, logger: logger, reg: reg, tracer: noop.Tracer{}, gate: gate}, nil
}

// runModels is `embedgate models [flags]`: a dry run before a deploy. It
// builds the catalogue serve would from the same flags, files and Triton,
// opens every model as serve would (files, tokenizer, backend, engine
// checks) without serving, prints one line per model, and fails if
// anything would keep a model from serving.
func runModels(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := config.Parse(args, getenv, stderr)
	if err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	pipes, err := offlinePipelines(cfg, getenv, stderr)
	if err != nil {
		return err
	}
	defer pipes.close()
	cat := newCatalogue(cfg, pipes.logger, nil, pipes)
	if err := cat.loadFile(); err != nil {
		return err
	}
	if err := cat.discover(ctx); err != nil {
		return err
	}
	for _, name := range slices.Sorted(maps.Keys(cat.skipped)) {
		fmt.Fprintf(stderr, "triton model %s not served: %s\n", name, cat.skipped[name])
	}
	entries, def, err := cat.entries()
	if err != nil {
		return err
	}

	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tALIASES\tTASK\tSOURCE\tBACKEND\tDIMENSIONS\tMAX INPUT\tMODEL ID")
	var problems []error
	for _, e := range entries {
		o, err := dryOpen(ctx, pipes, e)
		if err != nil {
			problems = append(problems, fmt.Errorf("model %q (%s): %w", e.Name, e.Source, err))
			o = opened{task: orDash(e.Task), dims: "-", maxInput: "-"}
		}
		name := e.Name
		if name == def {
			name += " (default)"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", name, orDash(strings.Join(e.Aliases, ",")), o.task, e.Source,
			backendOf(withDefaults(e, cfg)), o.dims, o.maxInput, e.ModelID)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if len(problems) > 0 {
		return fmt.Errorf("%d of %d models would not serve:\n%w", len(problems), len(entries), errors.Join(problems...))
	}
	return nil
}

// opened is what `embedgate models` prints of an opened model.
type opened struct{ task, dims, maxInput string }

// dryOpen opens e's pipeline as serve would, reads what it serves, and
// closes it. A reranker has no dimensions: it answers scores.
func dryOpen(ctx context.Context, pipes *pipelines, e catalog.Entry) (opened, error) {
	p, err := pipes.open(ctx, e)
	if err != nil {
		return opened{}, err
	}
	info := p.Engine.Info()
	p.Engine.Close()
	if p.Close != nil {
		p.Close()
	}
	o := opened{task: info.Task, dims: strconv.Itoa(info.Dimensions), maxInput: strconv.Itoa(info.MaxInputLength)}
	if info.Task == gateway.TaskRerank {
		o.dims = "-"
	}
	return o, nil
}

// backendOf names where e runs: "onnx" or "triton <model>@<address>".
func backendOf(e catalog.Entry) string {
	if e.Backend == "triton" {
		return "triton " + e.TritonModel + "@" + e.TritonURL
	}
	return e.Backend
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
