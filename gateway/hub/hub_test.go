package hub

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/embedgate/embedgate/gateway/hub/hubtest"
)

const (
	repoID  = "org/tiny-model"
	commit1 = "1111111111111111111111111111111111111111"
	commit2 = "2222222222222222222222222222222222222222"
)

var files1 = map[string]string{
	"config.json":           `{"model_type":"bert"}`,
	"tokenizer.json":        `{"version":"1.0"}`,
	"1_Pooling/config.json": `{"pooling_mode_cls_token":true}`,
	"onnx/model.onnx":       "onnx bytes v1",
}

func newHub(t *testing.T) *hubtest.Server {
	t.Helper()
	s := hubtest.NewServer()
	t.Cleanup(s.Close)
	s.AddCommit(repoID, commit1, files1)
	return s
}

func opts(s *hubtest.Server, cache string) Options {
	return Options{
		Repo:          repoID,
		Revision:      "main",
		Files:         []string{"config.json", "tokenizer.json", "onnx/model.onnx"},
		OptionalFiles: []string{"1_Pooling/config.json", "modules.json"},
		Endpoint:      s.URL,
		CacheDir:      cache,
	}
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return string(b)
}

func countMethod(reqs []string, method string) int {
	n := 0
	for _, r := range reqs {
		if strings.HasPrefix(r, method+" ") || strings.HasPrefix(r, "storage "+method+" ") {
			n++
		}
	}
	return n
}

func TestDownload(t *testing.T) {
	s := newHub(t)
	cache := t.TempDir()
	dir, commit, err := Download(context.Background(), opts(s, cache))
	if err != nil {
		t.Fatalf("Download() error = %v", err)
	}
	repoDir := filepath.Join(cache, "models--org--tiny-model")
	if want := filepath.Join(repoDir, "snapshots", commit1); dir != want || commit != commit1 {
		t.Errorf("Download() = %q, %q, want %q, %q", dir, commit, want, commit1)
	}
	for name, content := range files1 {
		if got := readFile(t, filepath.Join(dir, name)); got != content {
			t.Errorf("%s = %q, want %q", name, got, content)
		}
	}
	tests := []struct{ file, blob string }{
		{"config.json", hubtest.GitETag(files1["config.json"])},
		{"1_Pooling/config.json", hubtest.GitETag(files1["1_Pooling/config.json"])},
		{"onnx/model.onnx", hubtest.SHA256(files1["onnx/model.onnx"])}, // X-Linked-Etag, not the storage ETag
	}
	for _, tt := range tests {
		target, err := os.Readlink(filepath.Join(dir, tt.file))
		if err != nil {
			t.Fatalf("Readlink(%s) error = %v", tt.file, err)
		}
		if filepath.IsAbs(target) {
			t.Errorf("link %s = %q, want a relative link", tt.file, target)
		}
		if got := filepath.Base(target); got != tt.blob {
			t.Errorf("link %s → blob %q, want %q", tt.file, got, tt.blob)
		}
	}
	if got := readFile(t, filepath.Join(repoDir, "refs", "main")); got != commit1 {
		t.Errorf("refs/main = %q, want %q", got, commit1)
	}
	if _, err := os.Stat(filepath.Join(dir, "modules.json")); !os.IsNotExist(err) {
		t.Errorf("optional missing modules.json: Stat error = %v, want not exist", err)
	}
	if _, err := os.Stat(filepath.Join(repoDir, ".no_exist", commit1, "modules.json")); err != nil {
		t.Errorf("404 of modules.json not remembered: %v", err)
	}
	temps, _ := filepath.Glob(filepath.Join(repoDir, "blobs", "*.incomplete"))
	if len(temps) > 0 {
		t.Errorf("temp files left: %v", temps)
	}
	if !slices.Contains(s.Requests(), "storage GET /blobs/org/tiny-model/"+commit1+"/onnx/model.onnx") {
		t.Errorf("large file not fetched through the redirect: %q", s.Requests())
	}
}

func TestCacheReuse(t *testing.T) {
	tests := []struct {
		name      string
		revision  string
		wantHeads int
	}{
		{"branch resolves with one HEAD", "main", 1},
		{"commit needs no request", commit1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newHub(t)
			o := opts(s, t.TempDir())
			o.Revision = tt.revision
			if _, _, err := Download(context.Background(), o); err != nil {
				t.Fatalf("first Download() error = %v", err)
			}
			s.Reset()
			dir, commit, err := Download(context.Background(), o)
			if err != nil || commit != commit1 || readFile(t, filepath.Join(dir, "config.json")) != files1["config.json"] {
				t.Fatalf("second Download() = %q, %q, %v, want the cached snapshot of %s", dir, commit, err, commit1)
			}
			reqs := s.Requests()
			if n := countMethod(reqs, "GET"); n != 0 {
				t.Errorf("second Download() made %d GETs (%q), want 0", n, reqs)
			}
			if n := countMethod(reqs, "HEAD"); n != tt.wantHeads {
				t.Errorf("second Download() made %d HEADs (%q), want %d", n, reqs, tt.wantHeads)
			}
		})
	}
}

func TestRevisionPinnedByCommit(t *testing.T) {
	s := newHub(t)
	files2 := map[string]string{"config.json": `{"model_type":"bert","v":2}`, "tokenizer.json": `{}`, "onnx/model.onnx": "onnx bytes v2"}
	s.AddCommit(repoID, commit2, files2) // main → commit2 now
	cache := t.TempDir()
	for _, tt := range []struct{ rev, commit, config string }{
		{commit1, commit1, files1["config.json"]},
		{"main", commit2, files2["config.json"]},
	} {
		o := opts(s, cache)
		o.Revision = tt.rev
		dir, commit, err := Download(context.Background(), o)
		if err != nil {
			t.Fatalf("Download(%s) error = %v", tt.rev, err)
		}
		if got := readFile(t, filepath.Join(dir, "config.json")); commit != tt.commit || got != tt.config {
			t.Errorf("Download(%s) = %s with config %q, want %s with %q", tt.rev, commit, got, tt.commit, tt.config)
		}
	}
	if _, err := os.Stat(filepath.Join(cache, "models--org--tiny-model", "refs", commit1)); !os.IsNotExist(err) {
		t.Errorf("a ref was written for a commit revision")
	}
}

func TestNotFound(t *testing.T) {
	tests := []struct {
		name     string
		change   func(o *Options)
		wantErr  []string
		wantFile string // "" = nothing to check
	}{
		{"optional 404 is fine", func(o *Options) { o.OptionalFiles = []string{"sentence_bert_config.json"} }, nil, ""},
		{"required 404 names file and repo", func(o *Options) { o.Files = append(o.Files, "onnx/model_fp16.onnx") },
			[]string{"onnx/model_fp16.onnx", repoID, "not found"}, ""},
		{"unknown repo", func(o *Options) { o.Repo = "org/nope" }, []string{"repository org/nope not found"}, ""},
		{"unknown revision", func(o *Options) { o.Revision = "v9" }, []string{`revision "v9" not found`}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newHub(t)
			o := opts(s, t.TempDir())
			tt.change(&o)
			_, _, err := Download(context.Background(), o)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Download() error = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Download() error = nil, want %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Download() error = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestOptional404Remembered(t *testing.T) {
	s := newHub(t)
	o := opts(s, t.TempDir())
	o.Revision = commit1
	if _, _, err := Download(context.Background(), o); err != nil {
		t.Fatalf("Download() error = %v", err)
	}
	s.Reset()
	if _, _, err := Download(context.Background(), o); err != nil {
		t.Fatalf("second Download() error = %v", err)
	}
	if reqs := s.Requests(); len(reqs) != 0 {
		t.Errorf("second Download() asked %q, want no requests (the 404 of modules.json is cached)", reqs)
	}
}

func TestAuth(t *testing.T) {
	const token = "hf_secretsecret"
	tests := []struct {
		name    string
		token   string
		wantErr string
	}{
		{"no token", "", "set HF_TOKEN"},
		{"wrong token", "hf_wrongwrong", "HF_TOKEN was rejected"},
		{"right token", token, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newHub(t)
			s.RequireToken(repoID, token)
			o := opts(s, t.TempDir())
			o.Token = tt.token
			_, _, err := Download(context.Background(), o)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Download() error = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "401") {
				t.Fatalf("Download() error = %v, want a 401 saying %q", err, tt.wantErr)
			}
			if tt.token != "" && strings.Contains(err.Error(), tt.token) {
				t.Errorf("Download() error = %q contains the token", err)
			}
		})
	}
}

func TestOffline(t *testing.T) {
	s := newHub(t)
	cache := t.TempDir()
	if _, _, err := Download(context.Background(), opts(s, cache)); err != nil {
		t.Fatalf("online Download() error = %v", err)
	}
	s.Reset()
	tests := []struct {
		name    string
		cache   string
		change  func(o *Options)
		wantErr string
	}{
		{"branch from refs", cache, func(o *Options) {}, ""},
		{"commit", cache, func(o *Options) { o.Revision = commit1 }, ""},
		{"missing optional is fine", cache, func(o *Options) { o.OptionalFiles = []string{"modules.json"} }, ""},
		{"no endpoint needed", cache, func(o *Options) { o.Endpoint = "" }, ""},
		{"missing file", cache, func(o *Options) { o.Files = []string{"onnx/model_int8.onnx"} }, "onnx/model_int8.onnx of org/tiny-model at main is not in the cache"},
		{"missing revision", cache, func(o *Options) { o.Revision = "v2" }, `revision "v2" of org/tiny-model is not in the cache`},
		{"empty cache", t.TempDir(), func(o *Options) {}, "not in the cache"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := opts(s, tt.cache)
			o.Offline = true
			tt.change(&o)
			dir, commit, err := Download(context.Background(), o)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Download() error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || commit != commit1 || readFile(t, filepath.Join(dir, "tokenizer.json")) != files1["tokenizer.json"] {
				t.Fatalf("Download() = %q, %q, %v, want the cached snapshot", dir, commit, err)
			}
		})
	}
	if reqs := s.Requests(); len(reqs) != 0 {
		t.Errorf("offline requests = %q, want none", reqs)
	}
}

func TestUnreachableHubFallsBackToCache(t *testing.T) {
	s := newHub(t)
	cache := t.TempDir()
	if _, _, err := Download(context.Background(), opts(s, cache)); err != nil {
		t.Fatalf("Download() error = %v", err)
	}
	o := opts(s, cache)
	s.Close()
	if _, commit, err := Download(context.Background(), o); err != nil || commit != commit1 {
		t.Errorf("Download() with the hub down = %q, %v, want %s from the cache", commit, err, commit1)
	}
	o.CacheDir = t.TempDir()
	if _, _, err := Download(context.Background(), o); err == nil {
		t.Errorf("Download() with the hub down and an empty cache: error = nil")
	}
}

// TestUnreachableHub: when the hub cannot be reached at all, the error
// says so, names the cause in a few words and what to do, and matches
// ErrUnreachable; an answer of the hub (a 404) does not. Before, the
// transport's error came alone ("dial tcp: lookup ...: no such host").
func TestUnreachableHub(t *testing.T) {
	closed := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return "http://" + ln.Addr().String()
	}()
	untrusted := httptest.NewUnstartedServer(http.NotFoundHandler())
	untrusted.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake
	untrusted.StartTLS()
	defer untrusted.Close()
	plain := httptest.NewServer(http.NotFoundHandler())
	defer plain.Close()
	for _, tt := range []struct{ name, endpoint, cause string }{
		{"closed port", closed, "(connection refused)"},
		// .invalid never resolves (RFC 2606).
		{"unresolvable name", "https://hub.invalid", "(the name hub.invalid does not resolve)"},
		{"untrusted certificate", untrusted.URL, "TLS certificate is not trusted"},
		{"not TLS", strings.Replace(plain.URL, "http:", "https:", 1), "server gave HTTP response to HTTPS client"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := Options{Repo: repoID, Files: []string{"config.json"}, Endpoint: tt.endpoint, CacheDir: t.TempDir(), Token: "hf_planted_secret"}
			_, _, err := Download(context.Background(), o)
			if !errors.Is(err, ErrUnreachable) {
				t.Fatalf("Download() error = %v, want ErrUnreachable", err)
			}
			for _, w := range []string{"cannot reach the hub " + tt.endpoint, tt.cause, "config.json of " + repoID, "HF_ENDPOINT", "HF_HUB_OFFLINE=1"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Download() error = %q, want it to contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "hf_planted_secret") {
				t.Errorf("Download() error = %q contains the token", err)
			}
		})
	}
	s := newHub(t)
	o := opts(s, t.TempDir())
	o.Repo = "org/missing"
	if _, _, err := Download(context.Background(), o); err == nil || errors.Is(err, ErrUnreachable) {
		t.Errorf("Download() of a missing repo: error = %v, want one that is not ErrUnreachable", err)
	}
}

func TestConcurrentDownloads(t *testing.T) {
	s := newHub(t)
	cache := t.TempDir()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { _, _, errs[i] = Download(context.Background(), opts(s, cache)) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent Download() error = %v", err)
	}
	dir := filepath.Join(cache, "models--org--tiny-model", "snapshots", commit1)
	if got := readFile(t, filepath.Join(dir, "onnx/model.onnx")); got != files1["onnx/model.onnx"] {
		t.Errorf("onnx/model.onnx = %q after concurrent downloads", got)
	}
}

func TestBadOptions(t *testing.T) {
	tests := []struct {
		name    string
		change  func(o *Options)
		wantErr string
	}{
		{"empty repo", func(o *Options) { o.Repo = "" }, "invalid repo id"},
		{"deep repo", func(o *Options) { o.Repo = "a/b/c" }, "invalid repo id"},
		{"escaping file", func(o *Options) { o.Files = []string{"../x"} }, "invalid file path"},
		{"absolute file", func(o *Options) { o.Files = []string{"/etc/passwd"} }, "invalid file path"},
		{"no cache", func(o *Options) { o.CacheDir = "" }, "set HF_HUB_CACHE or HF_HOME"},
		{"no endpoint", func(o *Options) { o.Endpoint = "" }, "set HF_ENDPOINT"},
		{"no files", func(o *Options) { o.Files, o.OptionalFiles = nil, nil }, "no files"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := Options{Repo: repoID, Files: []string{"config.json"}, Endpoint: "http://127.0.0.1:1", CacheDir: t.TempDir()}
			tt.change(&o)
			if _, _, err := Download(context.Background(), o); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Download() error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestOptionsFromEnv(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want Options
	}{
		{"home only", map[string]string{"HOME": "/home/u", "HF_ENDPOINT": "http://hub.test/"},
			Options{Endpoint: "http://hub.test", CacheDir: "/home/u/.cache/huggingface/hub"}},
		{"xdg", map[string]string{"HOME": "/home/u", "XDG_CACHE_HOME": "/xdg"}, Options{Endpoint: DefaultEndpoint, CacheDir: "/xdg/huggingface/hub"}},
		{"hf home", map[string]string{"HOME": "/home/u", "HF_HOME": "/hf"}, Options{Endpoint: DefaultEndpoint, CacheDir: "/hf/hub"}},
		{"hf home tilde", map[string]string{"HOME": "/home/u", "HF_HOME": "~/hf"}, Options{Endpoint: DefaultEndpoint, CacheDir: "/home/u/hf/hub"}},
		{"hub cache wins", map[string]string{"HOME": "/home/u", "HF_HOME": "/hf", "HF_HUB_CACHE": "/cache"}, Options{Endpoint: DefaultEndpoint, CacheDir: "/cache"}},
		{"token and offline", map[string]string{"HF_HUB_CACHE": "/c", "HF_TOKEN": "t", "HF_HUB_OFFLINE": "1"}, Options{Endpoint: DefaultEndpoint, CacheDir: "/c", Token: "t", Offline: true}},
		{"offline true", map[string]string{"HF_HUB_OFFLINE": "true"}, Options{Endpoint: DefaultEndpoint, Offline: true}},
		{"offline 0", map[string]string{"HF_HUB_OFFLINE": "0"}, Options{Endpoint: DefaultEndpoint}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := OptionsFromEnv(func(k string) string { return tt.env[k] })
			if got.Endpoint != tt.want.Endpoint || got.CacheDir != tt.want.CacheDir || got.Token != tt.want.Token || got.Offline != tt.want.Offline {
				t.Errorf("OptionsFromEnv(%v) = %+v, want %+v", tt.env, got, tt.want)
			}
		})
	}
}

func TestCleanEtag(t *testing.T) {
	tests := []struct{ in, want string }{
		{`"abc"`, "abc"}, {`W/"abc"`, "abc"}, {"abc", "abc"}, {`"../x"`, ""}, {`""`, ""}, {`".."`, ""},
	}
	for _, tt := range tests {
		if got := cleanEtag(tt.in); got != tt.want {
			t.Errorf("cleanEtag(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestRedirects(t *testing.T) {
	s := newHub(t)
	s.Rename("org/old-name", repoID)
	o := opts(s, t.TempDir())
	o.Repo = "org/old-name"
	o.Token = "hf_any" // the storage host fails any request that carries it
	dir, commit, err := Download(context.Background(), o)
	if err != nil {
		t.Fatalf("Download() through a rename redirect error = %v", err)
	}
	if commit != commit1 || readFile(t, filepath.Join(dir, "onnx/model.onnx")) != files1["onnx/model.onnx"] {
		t.Errorf("Download() = %q, %q, want %s with the file contents", dir, commit, commit1)
	}
	reqs := s.Requests()
	for _, want := range []string{
		"HEAD /org/old-name/resolve/main/config.json",
		"HEAD /org/tiny-model/resolve/main/config.json",
		"storage GET /blobs/org/tiny-model/" + commit1 + "/onnx/model.onnx",
	} {
		if !slices.Contains(reqs, want) {
			t.Errorf("requests %q lack %q", reqs, want)
		}
	}
}

func TestNoBarOffTerminal(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	for _, out := range []io.Writer{nil, &bytes.Buffer{}, w} {
		if bar := newBar(out, 10, "x"); bar != nil {
			t.Errorf("newBar(%T) = a bar, want nil off a terminal", out)
		}
	}
}
