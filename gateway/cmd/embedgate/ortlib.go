package main

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/embedgate/embedgate/gateway/backend/onnx"
	"github.com/embedgate/embedgate/gateway/config"
)

// ortLibName is ONNX Runtime's soname: the dynamic linker finds it on its
// search path (LD_LIBRARY_PATH, ld.so.cache, /usr/lib), and `make setup`
// puts it in .cache/ort/<version>/.
const ortLibName = "libonnxruntime.so.1"

// ortLibCandidates is where to look for ONNX Runtime when --ort-lib is not
// set, in order: the dynamic linker's search path, then the copies `make
// setup` fetches into .cache/ort/<version>/ under the working directory
// wd, then under the binary's parent (bin/embedgate → ../.cache/ort), each
// newest version first. A directory that is "" is skipped.
func ortLibCandidates(wd, exeDir string) []string {
	libs := []string{ortLibName}
	roots := []string{wd}
	if exeDir != "" {
		roots = append(roots, filepath.Dir(exeDir))
	}
	for _, root := range roots {
		if root == "" {
			continue
		}
		found, _ := filepath.Glob(filepath.Join(root, ".cache", "ort", "*", ortLibName)) // the pattern is valid
		slices.SortStableFunc(found, func(a, b string) int {
			return compareVersions(filepath.Base(filepath.Dir(b)), filepath.Base(filepath.Dir(a)))
		})
		for _, f := range found {
			if !slices.Contains(libs, f) {
				libs = append(libs, f)
			}
		}
	}
	return libs
}

// compareVersions orders dotted versions by their numbers ("1.9.0" <
// "1.30.0"); a name that is not one sorts before every version.
func compareVersions(a, b string) int {
	va, oka := parseVersion(a)
	vb, okb := parseVersion(b)
	switch {
	case oka && okb:
		return slices.Compare(va, vb)
	case oka != okb:
		if oka {
			return 1
		}
		return -1
	}
	return cmp.Compare(a, b)
}

func parseVersion(s string) ([]int, bool) {
	var v []int
	for p := range strings.SplitSeq(s, ".") {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return nil, false
		}
		v = append(v, n)
	}
	return v, true
}

// loadORT calls open with each library of libs in turn until one loads
// (open's error is not onnx.ErrLoadRuntime), and returns that library and
// open's result. When none loads, the error names every library tried
// and how to get one.
func loadORT(libs []string, open func(lib string) error) (string, error) {
	var tried []string
	for _, lib := range libs {
		err := open(lib)
		if !errors.Is(err, onnx.ErrLoadRuntime) {
			return lib, err
		}
		tried = append(tried, err.Error())
	}
	return "", fmt.Errorf("onnx: ONNX Runtime (%s) not found: run `make setup`, which fetches it into .cache/ort/, or set ORT_LIB (--ort-lib) to its path; tried the dynamic linker's search path and .cache/ort/ under the working directory and the binary's parent: %s",
		ortLibName, strings.Join(tried, "; "))
}

// ortLibSearch is ortLibCandidates for this process: its working
// directory and the directory of its executable.
func ortLibSearch() []string {
	wd, _ := os.Getwd()
	exe, err := os.Executable()
	if err == nil {
		exe, err = filepath.EvalSymlinks(exe)
	}
	exeDir := ""
	if err == nil {
		exeDir = filepath.Dir(exe)
	}
	return ortLibCandidates(wd, exeDir)
}

// openONNX opens the onnx backend on modelPath with ONNX Runtime from
// --ort-lib or, when that is not set, from the first of ortLibSearch that
// loads.
func openONNX(cfg *config.Config, modelPath string, logger *slog.Logger) (*onnx.Backend, error) {
	var b *onnx.Backend
	open := func(lib string) error {
		var err error
		b, err = onnx.Open(onnx.Options{LibraryPath: lib, ModelPath: modelPath, IntraOpThreads: cfg.IntraOpThreads, Logger: logger})
		return err
	}
	if cfg.ORTLib != "" {
		err := open(cfg.ORTLib)
		if errors.Is(err, onnx.ErrLoadRuntime) {
			return nil, fmt.Errorf("%w (the library of --ort-lib or ORT_LIB: fix the path, or unset it to search the system and .cache/ort/, which `make setup` fills)", err)
		}
		return b, err
	}
	lib, err := loadORT(ortLibSearch(), open)
	if err != nil {
		return nil, err
	}
	logger.Info("ONNX Runtime loaded", "lib", lib)
	return b, nil
}
