package hfmodel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/embedgate/embedgate/gateway/hub"
)

// Resolve turns a model id into a local directory: id itself when it exists
// on disk, else a hub snapshot downloaded (or found in the cache) with the
// environment read through getenv (HF_ENDPOINT, HF_TOKEN, HF_HOME,
// HF_HUB_CACHE, HF_HUB_OFFLINE). With needONNX it also fetches the ONNX file
// for dtype, trying each known location in turn, and its external data file
// if the hub has one. progress gets a bar when it is a terminal.
func Resolve(ctx context.Context, id, revision string, needONNX bool, dtype string, getenv func(string) string, progress io.Writer) (dir string, err error) {
	if fi, err := os.Stat(id); err == nil {
		if !fi.IsDir() {
			return "", fmt.Errorf("hfmodel: model %s is a file, want a directory", id)
		}
		return id, nil
	}
	// Paths never fall through to the hub: a typo in a local path should
	// say so, not ask the hub for a repo named "./x".
	if id == "" || strings.HasPrefix(id, ".") || filepath.IsAbs(id) || strings.Count(id, "/") > 1 {
		return "", fmt.Errorf("hfmodel: model directory %s does not exist", id)
	}
	var cands []string
	if needONNX {
		if cands, err = onnxCandidates(dtype); err != nil {
			return "", err
		}
	}

	opts := hub.OptionsFromEnv(getenv)
	opts.Repo, opts.Revision, opts.Progress = id, revision, progress
	opts.Files = []string{configFile, tokenizerFile}
	opts.OptionalFiles = []string{"tokenizer_config.json", defaultPooling + "/" + configFile, modulesFile, sbertFile, stConfigFile}
	// Each ONNX location is asked for in turn, so at most one (possibly
	// large) model file is downloaded; the first call pins the commit for
	// the others.
	if needONNX {
		opts.OptionalFiles = append(opts.OptionalFiles, cands[0])
	}
	d, commit, err := hub.Download(ctx, opts)
	if err != nil {
		return "", hubError(err)
	}
	if !needONNX {
		return d, nil
	}
	opts.Revision, opts.Files = commit, nil
	for i, c := range cands {
		if i > 0 {
			opts.OptionalFiles = []string{c}
			if _, _, err := hub.Download(ctx, opts); err != nil {
				return "", hubError(err)
			}
		}
		if _, err := os.Stat(filepath.Join(d, filepath.FromSlash(c))); err != nil {
			continue
		}
		// Models over 2 GB keep their weights in a file next to the graph.
		opts.OptionalFiles = []string{c + "_data", c + ".data"}
		if _, _, err := hub.Download(ctx, opts); err != nil {
			return "", hubError(err)
		}
		return d, nil
	}
	return "", fmt.Errorf("hfmodel: no ONNX model for dtype %s in %s at %s: looked for %s", dtypeName(dtype), id, commit, strings.Join(cands, ", "))
}

// hubError wraps an error of hub.Download. When the hub cannot be reached
// at all (a machine without its network, a first `make run` offline), it
// adds how to run without it: the hub's error says what to set, this what
// to serve instead.
func hubError(err error) error {
	if errors.Is(err, hub.ErrUnreachable) {
		return fmt.Errorf("hfmodel: %w; or serve a local model directory: `make run MODEL_ID=.cache/models/tiny-bert` serves the test model that `make setup` writes", err)
	}
	return fmt.Errorf("hfmodel: %w", err)
}
