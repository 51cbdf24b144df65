package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/embedgate/embedgate/gateway/hub/hubtest"
)

const (
	commit1 = "1111111111111111111111111111111111111111"
	commit2 = "2222222222222222222222222222222222222222"
)

func newHub(t *testing.T) *hubtest.Server {
	t.Helper()
	s := hubtest.NewServer()
	t.Cleanup(s.Close)
	s.AddCommit("org/both", commit1, map[string]string{"onnx/model.onnx": "optimum export", "model.onnx": "root export"})
	s.AddCommit("org/root", commit1, map[string]string{"model.onnx": "root export"})
	s.AddCommit("org/none", commit1, map[string]string{"config.json": "{}"})
	s.AddCommit("org/big", commit1, map[string]string{"onnx/model.onnx": "graph", "onnx/model.onnx_data": "weights"})
	s.AddCommit("org/private", commit1, map[string]string{"onnx/model.onnx": "secret"})
	s.RequireToken("org/private", "hf_test")
	s.AddCommit("org/moving", commit1, map[string]string{"onnx/model.onnx": "v1"})
	s.AddCommit("org/moving", commit2, map[string]string{"onnx/model.onnx": "v2"})
	s.SetRef("org/moving", "v1", commit1)
	return s
}

func TestRun(t *testing.T) {
	s := newHub(t)
	for _, tt := range []struct {
		name  string
		args  []string
		token string
		want  map[string]string // file in the output dir → content
	}{
		{"FirstFileWins", []string{"-repo", "org/both"}, "", map[string]string{"model.onnx": "optimum export"}},
		{"FallsBack", []string{"-repo", "org/root"}, "", map[string]string{"model.onnx": "root export"}},
		{"ExplicitOrder", []string{"-repo", "org/both", "-file", "model.onnx", "-file", "onnx/model.onnx"}, "", map[string]string{"model.onnx": "root export"}},
		{"ExternalData", []string{"-repo", "org/big"}, "", map[string]string{"model.onnx": "graph", "model.onnx_data": "weights"}},
		{"Token", []string{"-repo", "org/private"}, "hf_test", map[string]string{"model.onnx": "secret"}},
		{"Branch", []string{"-repo", "org/moving"}, "", map[string]string{"model.onnx": "v2"}},
		{"Tag", []string{"-repo", "org/moving", "-revision", "v1"}, "", map[string]string{"model.onnx": "v1"}},
		{"Commit", []string{"-repo", "org/moving", "-revision", commit1}, "", map[string]string{"model.onnx": "v1"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "NAME", "1") // created by run
			env := map[string]string{"HF_ENDPOINT": s.URL, "HF_HUB_CACHE": t.TempDir(), "HF_TOKEN": tt.token}
			var stdout, stderr bytes.Buffer
			args := append([]string{"hubfetch", "-out", filepath.Join(dir, "model.onnx")}, tt.args...)
			if err := run(context.Background(), args, func(k string) string { return env[k] }, &stdout, &stderr); err != nil {
				t.Fatalf("run(%q): %v (stderr %q)", args, err, stderr.String())
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != len(tt.want) {
				t.Errorf("output dir has %d files, want %d", len(entries), len(tt.want))
			}
			for name, content := range tt.want {
				got, err := os.ReadFile(filepath.Join(dir, name))
				if err != nil || string(got) != content {
					t.Errorf("%s = %q, %v; want %q", name, got, err, content)
				}
			}
			if !strings.Contains(stdout.String(), "model.onnx") {
				t.Errorf("stdout = %q, want a summary", stdout.String())
			}
		})
	}
}

func TestRunOffline(t *testing.T) {
	s := newHub(t)
	cache := t.TempDir()
	out := filepath.Join(t.TempDir(), "model.onnx")
	env := map[string]string{"HF_ENDPOINT": s.URL, "HF_HUB_CACHE": cache}
	getenv := func(k string) string { return env[k] }
	var buf bytes.Buffer
	if err := run(context.Background(), []string{"hubfetch", "-repo", "org/root", "-out", out}, getenv, &buf, &buf); err != nil {
		t.Fatalf("online run: %v", err)
	}
	s.Close() // the cache must serve alone
	env["HF_HUB_OFFLINE"] = "1"
	if err := os.Remove(out); err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), []string{"hubfetch", "-repo", "org/root", "-out", out}, getenv, &buf, &buf); err != nil {
		t.Fatalf("offline run: %v (output %q)", err, buf.String())
	}
	if got, err := os.ReadFile(out); err != nil || string(got) != "root export" {
		t.Errorf("model.onnx = %q, %v; want %q", got, err, "root export")
	}
}

func TestRunErrors(t *testing.T) {
	s := newHub(t)
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"NoRepo", []string{"-out", "x"}, "required"},
		{"NoOut", []string{"-repo", "org/both"}, "required"},
		{"BadFlag", []string{"-nope"}, "not defined"},
		{"ExtraArgs", []string{"-repo", "org/both", "-out", "x", "extra"}, "unexpected"},
		{"NoModel", []string{"-repo", "org/none", "-out", "x"}, "has none of onnx/model.onnx, model.onnx"},
		{"UnknownRepo", []string{"-repo", "org/missing", "-out", "x"}, "not found"},
		{"NoToken", []string{"-repo", "org/private", "-out", "x"}, "HF_TOKEN"},
		{"BadRevision", []string{"-repo", "org/both", "-revision", "nope", "-out", "x"}, "revision"},
		{"BadFile", []string{"-repo", "org/both", "-file", "../x", "-out", "x"}, "invalid file path"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			env := map[string]string{"HF_ENDPOINT": s.URL, "HF_HUB_CACHE": t.TempDir()}
			args := []string{"hubfetch"}
			for _, a := range tt.args {
				if a == "x" {
					a = filepath.Join(dir, "model.onnx")
				}
				args = append(args, a)
			}
			var buf bytes.Buffer
			err := run(context.Background(), args, func(k string) string { return env[k] }, &buf, &buf)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("run(%q) = %v, want an error containing %q", tt.args, err, tt.want)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("run(%q) left %d files in the output dir", tt.args, len(entries))
			}
		})
	}
}
