package deploy

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// serve runs deploy/triton-serve with sh, as docker-compose.yml does, over
// repo with echo as the command: its stdout is the command line Triton
// would get.
func serve(t *testing.T, repo string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command("sh", append([]string{"triton-serve", repo}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// repository makes a model repository from relative file paths.
func repository(t *testing.T, files ...string) string {
	t.Helper()
	root := t.TempDir()
	for _, f := range files {
		p := filepath.Join(root, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestTritonServeLoadsModelsWithWeights(t *testing.T) {
	repo := repository(t,
		"bge/config.pbtxt", "bge/1/model.onnx", // weights
		"qwen/config.pbtxt", "qwen/1/.gitkeep", // as committed: no weights
		"plan/config.pbtxt", "plan/3/model.plan", // any version number
		"odd/config.pbtxt", "odd/weights/model.onnx", // not a version directory
		"empty/config.pbtxt",
		"two words/1/model.onnx",
	)
	// Links count when they lead to a file (weights in a cache elsewhere).
	if err := os.Symlink(filepath.Join(repo, "bge", "1", "model.onnx"), filepath.Join(repo, "qwen", "1", "linked.onnx")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(repo, "dangling", "1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(repo, "nowhere"), filepath.Join(repo, "dangling", "1", "model.onnx")); err != nil {
		t.Fatal(err)
	}

	out, logs, err := serve(t, repo, "echo", "tritonserver", "--model-repository=/models")
	if err != nil {
		t.Fatalf("triton-serve: %v\n%s", err, logs)
	}
	// Directories in the shell's glob order (sorted), the command's own
	// arguments first and untouched.
	want := "tritonserver --model-repository=/models --load-model=bge --load-model=plan --load-model=qwen --load-model=two words\n"
	if out != want {
		t.Errorf("command line:\n got %q\nwant %q", out, want)
	}
	for _, skipped := range []string{"dangling", "empty", "odd"} {
		if !strings.Contains(logs, "skipping "+skipped+": no weights") {
			t.Errorf("log does not say %s is skipped:\n%s", skipped, logs)
		}
	}
}

func TestTritonServeRefuses(t *testing.T) {
	tests := []struct {
		name, repo string
		args       []string
		wantCode   int
		wantLog    string
	}{
		{name: "no weights anywhere", repo: repository(t, "bge/config.pbtxt", "bge/1/.gitkeep"), args: []string{"echo"},
			wantCode: 1, wantLog: "has weights: put them in NAME/1/"},
		{name: "empty repository", repo: t.TempDir(), args: []string{"echo"},
			wantCode: 1, wantLog: "has weights"},
		{name: "missing repository", repo: filepath.Join(t.TempDir(), "nope"), args: []string{"echo"},
			wantCode: 1, wantLog: "is not a directory"},
		{name: "no command", repo: repository(t, "bge/1/model.onnx"),
			wantCode: 2, wantLog: "usage: triton-serve"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, logs, err := serve(t, tt.repo, tt.args...)
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != tt.wantCode {
				t.Fatalf("err = %v, want exit code %d (log %q)", err, tt.wantCode, logs)
			}
			if out != "" {
				t.Errorf("the command ran anyway: %q", out)
			}
			if !strings.Contains(logs, tt.wantLog) {
				t.Errorf("log %q lacks %q", logs, tt.wantLog)
			}
		})
	}
}
