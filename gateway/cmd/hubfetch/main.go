// Command hubfetch downloads one model file from a Hugging Face-compatible
// hub into the shared hub cache (package hub) and copies it to -out, for
// scripts/fetch-model:
//
//	go run ./gateway/cmd/hubfetch -repo BAAI/bge-small-en-v1.5 [-revision main] \
//	    [-file onnx/model.onnx -file model.onnx] -out model_repository/NAME/1/model.onnx
//
// The first -file the repository has wins (default: onnx/model.onnx, then
// model.onnx). If the repository also has that file's external-data
// companion (FILE_data, as optimum names it), it is copied next to -out
// under its own name, which is the name the model refers to. The hub comes
// from the environment like every Hugging Face tool: HF_ENDPOINT, HF_TOKEN,
// HF_HUB_CACHE / HF_HOME, HF_HUB_OFFLINE.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/embedgate/embedgate/gateway/hub"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "hubfetch: %v\n", err)
		os.Exit(1)
	}
}

// files is a repeatable string flag.
type files []string

func (f *files) String() string     { return strings.Join(*f, ",") }
func (f *files) Set(v string) error { *f = append(*f, v); return nil }

// run is the whole program; tests call it too.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	repo := fs.String("repo", "", "hub repository, org/name (required)")
	revision := fs.String("revision", "main", "branch, tag or commit")
	out := fs.String("out", "", "where to copy the file (required)")
	var candidates files
	fs.Var(&candidates, "file", "file in the repository; repeat it: the first one found wins (default onnx/model.onnx, model.onnx)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *repo == "" || *out == "" {
		return errors.New("-repo and -out are required")
	}
	if len(candidates) == 0 {
		candidates = files{"onnx/model.onnx", "model.onnx"}
	}
	opts := hub.OptionsFromEnv(getenv)
	opts.Repo, opts.Revision, opts.Progress = *repo, *revision, stderr
	for _, name := range candidates {
		// One file at a time, optional: a 404 just moves on to the next
		// candidate, and nothing is downloaded that will not be used.
		opts.OptionalFiles = []string{name, name + "_data"}
		dir, commit, err := hub.Download(ctx, opts)
		if err != nil {
			return err
		}
		// Later candidates ask for the same commit, even if the branch moves.
		opts.Revision = commit
		src := filepath.Join(dir, filepath.FromSlash(name))
		if _, err := os.Stat(src); errors.Is(err, os.ErrNotExist) {
			continue
		}
		n, err := copyFile(src, *out)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s@%s: %s → %s (%d bytes)\n", *repo, commit, name, *out, n)
		data := src + "_data"
		if _, err := os.Stat(data); err == nil {
			dst := filepath.Join(filepath.Dir(*out), path.Base(name)+"_data")
			n, err := copyFile(data, dst)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s@%s: %s_data → %s (%d bytes)\n", *repo, commit, name, dst, n)
		}
		return nil
	}
	return fmt.Errorf("%s at %s has none of %s: export it (scripts/export-onnx)", *repo, *revision, strings.Join(candidates, ", "))
}

// copyFile copies src (a cache symlink) to dst through a temporary file in
// dst's directory, creating that directory, so an interrupted copy never
// leaves a truncated model under dst's name.
func copyFile(src, dst string) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return 0, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".hubfetch-*.tmp")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	n, err := io.Copy(tmp, in)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err != nil {
		return 0, fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return 0, err
	}
	return n, nil
}
