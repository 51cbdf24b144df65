// Package hub downloads model files from a Hugging Face-compatible hub into
// the hub's cache layout (models--{org}--{name}/blobs, snapshots, refs), so
// the files are shared with other Hugging Face tools. It reads no environment
// itself: OptionsFromEnv takes a getenv function. It imports the standard
// library, golang.org/x/term and github.com/schollz/progressbar/v3.
package hub

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// DefaultEndpoint is the public hub, used when neither Options.Endpoint nor
// HF_ENDPOINT is set (the same default as huggingface_hub).
const DefaultEndpoint = "https://huggingface.co"

// Options says what to download and from where. OptionsFromEnv fills the
// environment part; the caller adds Repo, Revision and the files.
type Options struct {
	Repo          string   // "org/name" or "name"
	Revision      string   // branch, tag or commit; "" = "main"
	Files         []string // required: a 404 is an error naming the file
	OptionalFiles []string // a 404 is fine and remembered in the cache
	Endpoint      string   // hub base URL; "" = DefaultEndpoint
	Token         string   // sent as "Authorization: Bearer"; never printed
	CacheDir      string   // the hub cache root (…/huggingface/hub)
	Offline       bool     // resolve from the cache only
	Progress      io.Writer
	Client        *http.Client // nil = a new client without timeout (ctx bounds it)
}

// OptionsFromEnv reads HF_ENDPOINT, HF_TOKEN, HF_HUB_CACHE / HF_HOME /
// XDG_CACHE_HOME / HOME and HF_HUB_OFFLINE the way huggingface_hub does.
func OptionsFromEnv(getenv func(string) string) Options {
	home := getenv("HOME")
	expand := func(p string) string {
		if home != "" && (p == "~" || strings.HasPrefix(p, "~/")) {
			return filepath.Join(home, p[1:])
		}
		return p
	}
	cache := expand(getenv("HF_HUB_CACHE"))
	if cache == "" {
		hfHome := expand(getenv("HF_HOME"))
		if hfHome == "" {
			if xdg := expand(getenv("XDG_CACHE_HOME")); xdg != "" {
				hfHome = filepath.Join(xdg, "huggingface")
			} else if home != "" {
				hfHome = filepath.Join(home, ".cache", "huggingface")
			}
		}
		if hfHome != "" {
			cache = filepath.Join(hfHome, "hub")
		}
	}
	endpoint := getenv("HF_ENDPOINT")
	if endpoint == "" {
		endpoint = DefaultEndpoint
	}
	return Options{
		Endpoint: strings.TrimRight(endpoint, "/"),
		Token:    getenv("HF_TOKEN"),
		CacheDir: cache,
		Offline:  truthy(getenv("HF_HUB_OFFLINE")),
	}
}

// truthy matches huggingface_hub's reading of boolean env vars.
func truthy(v string) bool {
	switch strings.ToUpper(strings.TrimSpace(v)) {
	case "1", "ON", "YES", "TRUE":
		return true
	}
	return false
}

// Download makes every file of opts available in a snapshot directory of the
// cache and returns that directory and the commit it holds. Files already in
// the snapshot are not fetched again; with a branch or tag revision one HEAD
// request resolves the commit. Optional files the hub does not have are
// absent from dir.
func Download(ctx context.Context, opts Options) (dir string, commit string, err error) {
	if err := checkOptions(&opts); err != nil {
		return "", "", err
	}
	repoDir := filepath.Join(opts.CacheDir, repoFolder(opts.Repo))
	if opts.Offline {
		return resolveCached(repoDir, opts)
	}
	d := &downloader{opts: opts, repoDir: repoDir, client: opts.Client}
	if d.client == nil {
		d.client = &http.Client{}
	}
	if isCommit(opts.Revision) {
		d.commit = opts.Revision
	}
	commit, err = d.run(ctx)
	if err != nil {
		// Like huggingface_hub: when the hub cannot be reached at all, a
		// complete cached snapshot still serves.
		var ne *netError
		if errors.As(err, &ne) {
			if dir, c, cerr := resolveCached(repoDir, opts); cerr == nil {
				return dir, c, nil
			}
		}
		return "", "", err
	}
	return filepath.Join(repoDir, "snapshots", commit), commit, nil
}

func checkOptions(opts *Options) error {
	if opts.Repo == "" || strings.Count(opts.Repo, "/") > 1 || strings.HasPrefix(opts.Repo, "/") || strings.HasSuffix(opts.Repo, "/") || strings.Contains(opts.Repo, "..") {
		return fmt.Errorf("hub: invalid repo id %q: want org/name or name", opts.Repo)
	}
	if opts.Revision == "" {
		opts.Revision = "main"
	}
	if strings.Contains(opts.Revision, "..") {
		return fmt.Errorf("hub: invalid revision %q", opts.Revision)
	}
	if opts.CacheDir == "" {
		return errors.New("hub: no cache directory: set HF_HUB_CACHE or HF_HOME")
	}
	if !opts.Offline && opts.Endpoint == "" {
		return errors.New("hub: no hub endpoint: set HF_ENDPOINT")
	}
	opts.Endpoint = strings.TrimRight(opts.Endpoint, "/")
	if len(opts.Files)+len(opts.OptionalFiles) == 0 {
		return errors.New("hub: no files to download")
	}
	for _, f := range append(append([]string{}, opts.Files...), opts.OptionalFiles...) {
		if f == "" || path.IsAbs(f) || path.Clean(f) != f || strings.HasPrefix(f, "../") || f == ".." || strings.Contains(f, "\\") {
			return fmt.Errorf("hub: invalid file path %q: want a clean relative path", f)
		}
	}
	return nil
}

// repoFolder is the cache folder of a model repo: "org/name" →
// "models--org--name".
func repoFolder(repo string) string {
	return "models--" + strings.ReplaceAll(repo, "/", "--")
}

// isCommit reports whether rev is a full 40-hex commit hash.
func isCommit(rev string) bool {
	if len(rev) != 40 {
		return false
	}
	_, err := hex.DecodeString(rev)
	return err == nil && strings.ToLower(rev) == rev
}

// resolveCached finds opts' snapshot without the network: refs/{revision}
// names the commit (or the revision is one), and every required file must
// be in the snapshot.
func resolveCached(repoDir string, opts Options) (string, string, error) {
	commit := opts.Revision
	if !isCommit(commit) {
		b, err := os.ReadFile(filepath.Join(repoDir, "refs", filepath.FromSlash(opts.Revision)))
		if err != nil {
			return "", "", fmt.Errorf("hub: offline: revision %q of %s is not in the cache %s", opts.Revision, opts.Repo, opts.CacheDir)
		}
		commit = strings.TrimSpace(string(b))
	}
	dir := filepath.Join(repoDir, "snapshots", commit)
	for _, f := range opts.Files {
		if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(f))); err != nil {
			return "", "", fmt.Errorf("hub: offline: %s of %s at %s is not in the cache %s", f, opts.Repo, opts.Revision, opts.CacheDir)
		}
	}
	return dir, commit, nil
}

// fileInfo is what a HEAD request tells about one file.
type fileInfo struct {
	commit string
	etag   string // "" = unknown: the blob is named by the content's sha256
	size   int64  // -1 = unknown
	url    string // where to GET it (a redirect target, or the resolve URL)
}

// errMissing marks a 404 for one file.
var errMissing = errors.New("not found")

type downloader struct {
	opts    Options
	repoDir string
	client  *http.Client
	commit  string // "" until the first response names it
}

func (d *downloader) run(ctx context.Context) (string, error) {
	type item struct {
		name     string
		required bool
	}
	var items []item
	for _, f := range d.opts.Files {
		items = append(items, item{f, true})
	}
	for _, f := range d.opts.OptionalFiles {
		items = append(items, item{f, false})
	}
	for _, it := range items {
		if err := d.file(ctx, it.name, it.required); err != nil {
			return "", err
		}
	}
	if d.commit == "" {
		return "", fmt.Errorf("hub: %s: the hub did not say which commit revision %q is", d.opts.Repo, d.opts.Revision)
	}
	if d.commit != d.opts.Revision {
		if err := writeAtomic(filepath.Join(d.repoDir, "refs", filepath.FromSlash(d.opts.Revision)), []byte(d.commit)); err != nil {
			return "", fmt.Errorf("hub: %s: write ref: %w", d.opts.Repo, err)
		}
	}
	// The snapshot dir exists even when every file was optional and missing.
	if err := os.MkdirAll(filepath.Join(d.repoDir, "snapshots", d.commit), 0o755); err != nil {
		return "", fmt.Errorf("hub: %w", err)
	}
	return d.commit, nil
}

// file makes one file present in the snapshot (or remembers that the hub
// has no such optional file).
func (d *downloader) file(ctx context.Context, name string, required bool) error {
	if d.commit != "" && d.cached(name) {
		return nil
	}
	info, err := d.head(ctx, name)
	if errors.Is(err, errMissing) {
		if d.commit != "" {
			// Remember the 404 like huggingface_hub, so the next start asks
			// nothing about this file for this commit.
			_ = writeAtomic(filepath.Join(d.repoDir, ".no_exist", d.commit, filepath.FromSlash(name)), nil)
		}
		if required {
			return fmt.Errorf("hub: %s not found in %s at revision %q", name, d.opts.Repo, d.opts.Revision)
		}
		return nil
	}
	if err != nil {
		return err
	}
	// A branch resolves once: every later file is asked for by commit, so
	// the snapshot is consistent even if the branch moves meanwhile.
	if d.commit == "" {
		d.commit = info.commit
		if d.cached(name) {
			return nil
		}
	}
	snap := filepath.Join(d.repoDir, "snapshots", d.commit, filepath.FromSlash(name))
	if info.etag != "" {
		blob := filepath.Join(d.repoDir, "blobs", info.etag)
		if _, err := os.Stat(blob); err == nil {
			return link(blob, snap)
		}
	}
	blob, err := d.fetch(ctx, name, info)
	if err != nil {
		return err
	}
	return link(blob, snap)
}

// cached reports whether name is in the commit's snapshot, or known missing.
func (d *downloader) cached(name string) bool {
	for _, p := range []string{
		filepath.Join(d.repoDir, "snapshots", d.commit, filepath.FromSlash(name)),
		filepath.Join(d.repoDir, ".no_exist", d.commit, filepath.FromSlash(name)),
	} {
		if _, err := os.Stat(p); err == nil {
			return true
		}
	}
	return false
}

func (d *downloader) resolveURL(name string) string {
	rev := d.opts.Revision
	if d.commit != "" {
		rev = d.commit
	}
	esc := strings.Split(name, "/")
	for i := range esc {
		esc[i] = url.PathEscape(esc[i])
	}
	return d.opts.Endpoint + "/" + d.opts.Repo + "/resolve/" + url.PathEscape(rev) + "/" + strings.Join(esc, "/")
}

func (d *downloader) request(ctx context.Context, method, u string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	req.Header.Set("User-Agent", "embedgate")
	// Ask for the bytes as stored: a transparently gunzipped body would not
	// match the etag's size or hash.
	req.Header.Set("Accept-Encoding", "identity")
	// The token goes to the hub only, never to a storage host it redirects to
	// (Go's client also drops it on redirects to other hosts).
	if d.opts.Token != "" && sameHost(u, d.opts.Endpoint) {
		req.Header.Set("Authorization", "Bearer "+d.opts.Token)
	}
	return req, nil
}

// head asks the hub about one file without following redirects to other
// hosts: the commit and the etag (the LFS sha256 in X-Linked-Etag) are on the
// hub's own response, not on the storage host's.
func (d *downloader) head(ctx context.Context, name string) (*fileInfo, error) {
	u := d.resolveURL(name)
	req, err := d.request(ctx, http.MethodHead, u)
	if err != nil {
		return nil, err
	}
	client := *d.client
	client.CheckRedirect = func(r *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return errors.New("too many redirects")
		}
		if r.URL.Host != via[0].URL.Host {
			return http.ErrUseLastResponse
		}
		return nil
	}
	resp, err := client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("hub: %s of %s: %w", name, d.opts.Repo, ctx.Err())
		}
		return nil, &netError{d.opts.Endpoint, fmt.Errorf("%s of %s: %w", name, d.opts.Repo, err)}
	}
	resp.Body.Close()
	// A 404 for a file still names the commit, so the miss can be remembered.
	if c := resp.Header.Get("X-Repo-Commit"); d.commit == "" && resp.StatusCode == http.StatusNotFound && isCommit(c) {
		d.commit = c
	}
	if err := d.statusError(resp, name); err != nil {
		return nil, err
	}
	info := &fileInfo{
		commit: resp.Header.Get("X-Repo-Commit"),
		etag:   cleanEtag(resp.Header.Get("X-Linked-Etag")),
		size:   resp.ContentLength,
		url:    resp.Request.URL.String(),
	}
	if info.etag == "" {
		info.etag = cleanEtag(resp.Header.Get("ETag"))
	}
	if resp.StatusCode >= 300 {
		info.size = -1 // the redirect's own body length, not the file's
	}
	if s := resp.Header.Get("X-Linked-Size"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			info.size = n
		}
	}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		loc, err := resp.Location()
		if err != nil {
			return nil, fmt.Errorf("hub: %s of %s: redirect without location: %w", name, d.opts.Repo, err)
		}
		info.url = loc.String()
	}
	if info.commit == "" {
		info.commit = d.commit
	}
	if info.commit == "" && isCommit(d.opts.Revision) {
		info.commit = d.opts.Revision
	}
	if !isCommit(info.commit) {
		return nil, fmt.Errorf("hub: %s of %s: the hub sent no valid X-Repo-Commit for revision %q", name, d.opts.Repo, d.opts.Revision)
	}
	return info, nil
}

// statusError turns a hub error status into an error that says what to do.
// It never includes the token.
func (d *downloader) statusError(resp *http.Response, name string) error {
	code := resp.StatusCode
	switch {
	case code < 400:
		return nil
	case code == http.StatusNotFound && resp.Header.Get("X-Error-Code") == "RepoNotFound":
		return fmt.Errorf("hub: repository %s not found (if it is private, set HF_TOKEN)", d.opts.Repo)
	case code == http.StatusNotFound && resp.Header.Get("X-Error-Code") == "RevisionNotFound":
		return fmt.Errorf("hub: revision %q not found in %s", d.opts.Revision, d.opts.Repo)
	case code == http.StatusNotFound:
		return errMissing
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		why := "the repository is private, gated or does not exist: set HF_TOKEN to a token with access"
		if d.opts.Token != "" {
			why = "the token in HF_TOKEN was rejected or has no access (gated repos also need their terms accepted)"
		}
		return fmt.Errorf("hub: %s of %s: %s (%d): %s", name, d.opts.Repo, http.StatusText(code), code, why)
	default:
		return fmt.Errorf("hub: %s of %s: %s", name, d.opts.Repo, resp.Status)
	}
}

// cleanEtag strips W/ and quotes, and refuses anything that is not a plain
// file name, since the etag names the blob on disk.
func cleanEtag(s string) string {
	s = strings.TrimPrefix(strings.TrimSpace(s), "W/")
	s = strings.Trim(s, `"`)
	if s == "" || s == "." || s == ".." || strings.ContainsAny(s, `/\`+"\x00") {
		return ""
	}
	return s
}

// fetch downloads one file into blobs/ through a temp file and a rename, so
// a crash or a concurrent process never leaves a partial blob under its
// final name. It returns the blob's path.
func (d *downloader) fetch(ctx context.Context, name string, info *fileInfo) (string, error) {
	req, err := d.request(ctx, http.MethodGet, info.url)
	if err != nil {
		return "", err
	}
	resp, err := d.client.Do(req) // follows redirects; Go drops Authorization on other hosts
	if err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("hub: %s of %s: %w", name, d.opts.Repo, ctx.Err())
		}
		return "", &netError{d.opts.Endpoint, fmt.Errorf("%s of %s: %w", name, d.opts.Repo, err)}
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return "", fmt.Errorf("hub: %s not found in %s at revision %q", name, d.opts.Repo, d.opts.Revision)
	}
	if err := d.statusError(resp, name); err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("hub: %s of %s: unexpected %s", name, d.opts.Repo, resp.Status)
	}
	blobs := filepath.Join(d.repoDir, "blobs")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return "", fmt.Errorf("hub: %w", err)
	}
	tmp, err := os.CreateTemp(blobs, "download-*.incomplete")
	if err != nil {
		return "", fmt.Errorf("hub: %w", err)
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename

	size := info.size
	if size < 0 {
		size = resp.ContentLength
	}
	h := sha256.New()
	var dst io.Writer = io.MultiWriter(tmp, h)
	if bar := newBar(d.opts.Progress, size, name); bar != nil {
		dst = io.MultiWriter(dst, bar)
		defer bar.Finish()
	}
	n, err := io.Copy(dst, resp.Body)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("hub: download %s of %s: %w", name, d.opts.Repo, err)
	}
	if size >= 0 && n != size {
		return "", fmt.Errorf("hub: download %s of %s: got %d bytes, want %d", name, d.opts.Repo, n, size)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	etag := info.etag
	switch {
	case etag == "":
		etag = sum
	case len(etag) == 64 && isHex(etag) && !strings.EqualFold(etag, sum):
		// A 64-hex etag is an LFS file's sha256: check what we got.
		return "", fmt.Errorf("hub: download %s of %s: sha256 %s, want %s", name, d.opts.Repo, sum, etag)
	}
	blob := filepath.Join(blobs, etag)
	if err := os.Rename(tmp.Name(), blob); err != nil {
		return "", fmt.Errorf("hub: %w", err)
	}
	return blob, nil
}

func sameHost(a, b string) bool {
	ua, err1 := url.Parse(a)
	ub, err2 := url.Parse(b)
	return err1 == nil && err2 == nil && ua.Host == ub.Host
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}

// link points snap at blob with a relative symlink, replaced atomically.
func link(blob, snap string) error {
	if err := os.MkdirAll(filepath.Dir(snap), 0o755); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	rel, err := filepath.Rel(filepath.Dir(snap), blob)
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	// A random name: other goroutines and processes may link the same file.
	tmp := snap + "." + rand.Text() + ".tmp"
	if err := os.Symlink(rel, tmp); err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	if err := os.Rename(tmp, snap); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("hub: %w", err)
	}
	return nil
}

// writeAtomic writes a small file (a ref, a 404 marker) via temp + rename.
func writeAtomic(name string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(name), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(f.Name(), name)
}
