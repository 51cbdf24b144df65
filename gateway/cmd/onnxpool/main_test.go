package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/embedgate/embedgate/gateway/internal/testenv"
	"github.com/embedgate/embedgate/gateway/onnxpool"
	"github.com/embedgate/embedgate/gateway/pooling"
	"github.com/embedgate/embedgate/gateway/testmodel"
)

func TestRun(t *testing.T) {
	in := filepath.Join(testenv.TinyModel(t), "onnx", "model.onnx")
	dir := t.TempDir()
	out := filepath.Join(dir, "model.onnx")
	var stdout, stderr bytes.Buffer
	if err := run([]string{"onnxpool", "-in", in, "-out", out, "-pooling", "last_token"}, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v (stderr %q)", err, stderr.String())
	}
	if want := "last-token pooling + L2 normalize"; !strings.Contains(stdout.String(), want) {
		t.Errorf("stdout = %q, want it to contain %q", stdout.String(), want)
	}
	pooled, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	// The file is a model with sentence_embedding: appending again refuses.
	if _, err := onnxpool.Append(pooled, onnxpool.Options{Pooling: pooling.Mean}); err == nil || !strings.Contains(err.Error(), "already has output") {
		t.Errorf("Append(written model) = %v, want an already-has-output error", err)
	}
	// In place, under another name, works; no temporary file is left.
	if err := run([]string{"onnxpool", "-in", out, "-out", out, "-pooling", "cls", "-normalize=false", "-output", "cls_embedding"}, &stdout, &stderr); err != nil {
		t.Fatalf("run in place: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("output dir has %d entries, want 1", len(entries))
	}
}

// TestRunOpset11 pools an opset-11 export (as bge-small-en-v1.5's
// onnx/model.onnx is) the way the README's fetch-model recipe does.
func TestRunOpset11(t *testing.T) {
	in := filepath.Join(testenv.TinyModel(t, testmodel.WithOpset(11)), "onnx", "model.onnx")
	out := filepath.Join(t.TempDir(), "model.onnx")
	var stdout, stderr bytes.Buffer
	if err := run([]string{"onnxpool", "-in", in, "-out", out, "-pooling", "mean"}, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v (stderr %q)", err, stderr.String())
	}
	pooled, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := onnxpool.Append(pooled, onnxpool.Options{Pooling: pooling.Mean}); err == nil || !strings.Contains(err.Error(), "already has output") {
		t.Errorf("Append(written model) = %v, want an already-has-output error", err)
	}
}

// TestHelp: -help names the opsets the tool accepts.
func TestHelp(t *testing.T) {
	var buf bytes.Buffer
	if err := run([]string{"onnxpool", "-help"}, &buf, &buf); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("run(-help) = %v, want flag.ErrHelp", err)
	}
	if want := fmt.Sprintf("opset %d to %d", onnxpool.MinOpset, onnxpool.MaxOpset); !strings.Contains(buf.String(), want) {
		t.Errorf("help = %q, want it to contain %q", buf.String(), want)
	}
}

func TestRunErrors(t *testing.T) {
	in := filepath.Join(testenv.TinyModel(t, testmodel.WithPooled()), "onnx", "model.onnx")
	plain := filepath.Join(testenv.TinyModel(t), "onnx", "model.onnx")
	out := filepath.Join(t.TempDir(), "out.onnx")
	garbage := filepath.Join(t.TempDir(), "garbage.onnx")
	if err := os.WriteFile(garbage, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		args []string
	}{
		{"NoIn", []string{"-out", out, "-pooling", "mean"}},
		{"NoPooling", []string{"-in", in, "-out", out}},
		{"BadPooling", []string{"-in", in, "-out", out, "-pooling", "max"}},
		{"BadFlag", []string{"-nope"}},
		{"ExtraArgs", []string{"-in", in, "-out", out, "-pooling", "mean", "extra"}},
		{"MissingIn", []string{"-in", filepath.Join(t.TempDir(), "none.onnx"), "-out", out, "-pooling", "mean"}},
		{"AlreadyPooled", []string{"-in", in, "-out", out, "-pooling", "mean"}},
		{"Garbage", []string{"-in", garbage, "-out", out, "-pooling", "mean"}},
		{"NoOutDir", []string{"-in", plain, "-out", filepath.Join(t.TempDir(), "no", "out.onnx"), "-pooling", "mean"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := run(append([]string{"onnxpool"}, tt.args...), &buf, &buf); err == nil {
				t.Errorf("run(%q) = nil, want an error", tt.args)
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("run(%q) wrote %s", tt.args, out)
			}
		})
	}
}
