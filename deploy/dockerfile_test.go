package deploy

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// instructions returns the Dockerfile's instructions, one string each, with
// continuation lines joined and comments dropped.
func instructions(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\") + " ")
			continue
		}
		cur.WriteString(line)
		out = append(out, cur.String())
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestDockerfile(t *testing.T) {
	ins := instructions(t)
	var froms []string
	var stage int               // 0 before the first FROM; stages count from 1
	seen := map[string]string{} // final-stage instruction keyword → text
	for _, in := range ins {
		kw := strings.ToUpper(strings.Fields(in)[0])
		if kw == "FROM" {
			froms = append(froms, in)
			stage++
			continue
		}
		if stage == 2 {
			seen[kw] = in
		}
		if stage == 1 && kw == "RUN" && strings.Contains(in, "go build") {
			if !strings.Contains(in, "CGO_ENABLED=1") {
				t.Errorf("build %q: want CGO_ENABLED=1 (the onnx backend uses cgo)", in)
			}
			if !strings.Contains(in, "./gateway/cmd/embedgate") {
				t.Errorf("build %q: want ./gateway/cmd/embedgate", in)
			}
		}
	}
	if len(froms) != 2 {
		t.Fatalf("FROM lines = %q, want a build and a runtime stage", froms)
	}
	// The toolchain must be the go.mod language version.
	mod, err := os.ReadFile(filepath.Join("..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(mod)
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	if want := "FROM golang:" + string(m[1]) + "-bookworm AS build"; froms[0] != want {
		t.Errorf("build stage = %q, want %q", froms[0], want)
	}
	// Same Debian release as the build image: the cgo binary links its glibc.
	if froms[1] != "FROM debian:bookworm-slim" {
		t.Errorf("runtime stage = %q, want FROM debian:bookworm-slim", froms[1])
	}
	user := strings.Fields(seen["USER"])
	if len(user) != 2 || strings.HasPrefix(user[1], "0") || strings.HasPrefix(user[1], "root") {
		t.Errorf("runtime USER = %q, want a non-root user", seen["USER"])
	}
	if !strings.Contains(seen["HEALTHCHECK"], "/health") {
		t.Errorf("HEALTHCHECK = %q, want a check of /health", seen["HEALTHCHECK"])
	}
	if !strings.Contains(seen["EXPOSE"], "8080") {
		t.Errorf("EXPOSE = %q, want 8080", seen["EXPOSE"])
	}
	// Docker sets HOSTNAME to the container id; the gateway reads HOSTNAME
	// as its listen address, so the image must override it.
	if !strings.Contains(seen["ENV"], "HOSTNAME=0.0.0.0") {
		t.Errorf("ENV = %q, want HOSTNAME=0.0.0.0", seen["ENV"])
	}
	if !strings.Contains(seen["ENTRYPOINT"], "embedgate") {
		t.Errorf("ENTRYPOINT = %q, want the embedgate binary", seen["ENTRYPOINT"])
	}
}

// TestDockerignore: the build context must keep what go build needs and
// drop the large or irrelevant parts, and the secrets in .env.
func TestDockerignore(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	ignored := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			ignored[line] = true
		}
	}
	for _, want := range []string{".git", ".cache", "model_repository", ".env"} {
		if !ignored[want] {
			t.Errorf(".dockerignore lacks %s", want)
		}
	}
	for _, need := range []string{"go.mod", "go.sum", "gateway", "tritonstubs", "*.go", "**/*.go"} {
		if ignored[need] {
			t.Errorf(".dockerignore drops %s, which the build needs", need)
		}
	}
}
