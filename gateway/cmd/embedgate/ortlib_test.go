package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/embedgate/embedgate/gateway/backend/onnx"
)

// touchLib makes root/.cache/ort/<version>/libonnxruntime.so.1 and returns
// its path.
func touchLib(t *testing.T, root, version string) string {
	t.Helper()
	p := filepath.Join(root, ".cache", "ort", version, ortLibName)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestORTLibCandidates: without --ort-lib, the gateway looks on the
// dynamic linker's search path, then in the .cache/ort/ of `make setup`
// under the working directory, then under the binary's parent
// (bin/embedgate → ../.cache/ort), newest version first. Before, it
// looked on the search path only.
func TestORTLibCandidates(t *testing.T) {
	t.Parallel()
	wd, checkout := t.TempDir(), t.TempDir()
	v19, v130, odd := touchLib(t, wd, "1.9.0"), touchLib(t, wd, "1.30.0"), touchLib(t, wd, "custom")
	if err := os.MkdirAll(filepath.Join(wd, ".cache", "ort", "2.0.0"), 0o755); err != nil { // no library inside
		t.Fatal(err)
	}
	v131 := touchLib(t, checkout, "1.31.0")
	bin := filepath.Join(checkout, "bin")

	for _, tt := range []struct {
		name, wd, exeDir string
		want             []string
	}{
		{"working directory, then the binary's checkout", wd, bin, []string{ortLibName, v130, v19, odd, v131}},
		{"run from the checkout", checkout, bin, []string{ortLibName, v131}},
		{"nothing fetched", t.TempDir(), filepath.Join(t.TempDir(), "bin"), []string{ortLibName}},
		{"unknown directories", "", "", []string{ortLibName}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := ortLibCandidates(tt.wd, tt.exeDir); !slices.Equal(got, tt.want) {
				t.Errorf("ortLibCandidates(%q, %q) =\n%q, want\n%q", tt.wd, tt.exeDir, got, tt.want)
			}
		})
	}
}

func TestCompareVersions(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		a, b string
		want int
	}{
		{"1.30.0", "1.9.0", 1}, {"1.9.0", "1.30.0", -1}, {"1.30.0", "1.30.0", 0},
		{"1.30.1", "1.30", 1}, {"2", "1.99.99", 1}, {"custom", "1.0.0", -1}, {"1.0.0", "custom", 1}, {"a", "b", -1},
	} {
		if got := compareVersions(tt.a, tt.b); got != tt.want {
			t.Errorf("compareVersions(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

// TestLoadORT: the first library that loads wins; a failure that is not
// the library's (the model's) ends the search; when none loads, the error
// names make setup, ORT_LIB and every library tried.
func TestLoadORT(t *testing.T) {
	t.Parallel()
	libs := []string{ortLibName, "/w/.cache/ort/1.30.0/" + ortLibName, "/b/.cache/ort/1.9.0/" + ortLibName}
	notLoaded := func(lib string) error {
		return fmt.Errorf("%w %s: cannot open shared object file", onnx.ErrLoadRuntime, lib)
	}

	var tried []string
	lib, err := loadORT(libs, func(lib string) error {
		tried = append(tried, lib)
		if lib == libs[1] {
			return nil
		}
		return notLoaded(lib)
	})
	if err != nil || lib != libs[1] || !slices.Equal(tried, libs[:2]) {
		t.Errorf("loadORT = %q, %v after trying %q, want %q after the first two", lib, err, tried, libs[1])
	}

	badModel := errors.New("onnx: model x.onnx: invalid graph")
	tried = nil
	_, err = loadORT(libs, func(lib string) error { tried = append(tried, lib); return badModel })
	if !errors.Is(err, badModel) || len(tried) != 1 {
		t.Errorf("loadORT with a bad model = %v after %q, want the model's error after one library", err, tried)
	}

	_, err = loadORT(libs, notLoaded)
	if err == nil {
		t.Fatal("loadORT with no library loading: error = nil")
	}
	for _, w := range append([]string{"make setup", "ORT_LIB", "--ort-lib", ".cache/ort/"}, libs...) {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("loadORT error = %q, want it to contain %q", err, w)
		}
	}
}
