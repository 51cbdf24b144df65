// Package hubtest runs a local Hugging Face-compatible hub for tests: it
// serves HEAD and GET on /{repo}/resolve/{revision}/{path} with the hub's
// X-Repo-Commit, ETag and X-Linked-Etag headers, redirects files marked large
// to a second "storage" server like the hub does for LFS files, checks
// bearer tokens and logs every request. It imports only the standard library.
package hubtest

import (
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
)

// Server is a hub plus its storage host. Close it when done.
type Server struct {
	URL string // the hub endpoint, for HF_ENDPOINT

	hub, storage *httptest.Server
	mu           sync.Mutex
	repos        map[string]*repo
	renamed      map[string]string // old repo id → new
	log          []string
}

type repo struct {
	refs    map[string]string            // branch or tag → commit
	commits map[string]map[string][]byte // commit → path → content
	token   string                       // "" = public
}

// LargeSuffix marks files served like LFS files: a 302 to the storage host,
// with the sha256 in X-Linked-Etag.
const LargeSuffix = ".onnx"

// NewServer starts a hub with no repos.
func NewServer() *Server {
	s := &Server{repos: map[string]*repo{}, renamed: map[string]string{}}
	s.storage = httptest.NewServer(http.HandlerFunc(s.serveStorage))
	s.hub = httptest.NewServer(http.HandlerFunc(s.serveHub))
	s.URL = s.hub.URL
	return s
}

// Close stops both servers.
func (s *Server) Close() {
	s.hub.Close()
	s.storage.Close()
}

// AddCommit adds a commit with its files to repo and points "main" at it.
func (s *Server) AddCommit(repoID, commit string, files map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.repos[repoID]
	if r == nil {
		r = &repo{refs: map[string]string{}, commits: map[string]map[string][]byte{}}
		s.repos[repoID] = r
	}
	fs := map[string][]byte{}
	for p, c := range files {
		fs[p] = []byte(c)
	}
	r.commits[commit] = fs
	r.refs["main"] = commit
}

// SetRef points a branch or tag of repo at commit.
func (s *Server) SetRef(repoID, ref, commit string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repos[repoID].refs[ref] = commit
}

// Rename makes requests for oldID answer with a relative redirect to newID,
// as the hub does for renamed repos.
func (s *Server) Rename(oldID, newID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.renamed[oldID] = newID
}

// RequireToken makes repo private: requests need "Authorization: Bearer token".
func (s *Server) RequireToken(repoID, token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repos[repoID].token = token
}

// Requests returns "METHOD path" for every request so far, storage host
// requests prefixed with "storage ".
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.log...)
}

// Reset forgets the logged requests.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = nil
}

// GitETag is the hub's ETag of a regular file: its git blob sha1.
func GitETag(content string) string {
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00%s", len(content), content)
	return hex.EncodeToString(h.Sum(nil))
}

// SHA256 is the hub's X-Linked-Etag of a large file.
func SHA256(content string) string {
	h := sha256.Sum256([]byte(content))
	return hex.EncodeToString(h[:])
}

func (s *Server) serveHub(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = append(s.log, r.Method+" "+r.URL.Path)
	repoID, rev, file, ok := splitResolve(r.URL.Path)
	if !ok {
		http.NotFound(w, r)
		return
	}
	if to, ok := s.renamed[repoID]; ok {
		w.Header().Set("Location", "/"+to+"/resolve/"+rev+"/"+file)
		w.WriteHeader(http.StatusTemporaryRedirect)
		return
	}
	rp := s.repos[repoID]
	if rp == nil {
		w.Header().Set("X-Error-Code", "RepoNotFound")
		http.Error(w, "repository not found", http.StatusNotFound)
		return
	}
	if rp.token != "" && r.Header.Get("Authorization") != "Bearer "+rp.token {
		w.Header().Set("X-Error-Code", "GatedRepo")
		http.Error(w, "access denied", http.StatusUnauthorized)
		return
	}
	commit := rev
	if c, ok := rp.refs[rev]; ok {
		commit = c
	}
	files, ok := rp.commits[commit]
	if !ok {
		w.Header().Set("X-Error-Code", "RevisionNotFound")
		http.Error(w, "revision not found", http.StatusNotFound)
		return
	}
	w.Header().Set("X-Repo-Commit", commit)
	content, ok := files[file]
	if !ok {
		w.Header().Set("X-Error-Code", "EntryNotFound")
		http.Error(w, "entry not found", http.StatusNotFound)
		return
	}
	if strings.HasSuffix(file, LargeSuffix) {
		w.Header().Set("X-Linked-Etag", `"`+SHA256(string(content))+`"`)
		w.Header().Set("X-Linked-Size", fmt.Sprint(len(content)))
		w.Header().Set("ETag", `W/"hub-redirect"`)
		http.Redirect(w, r, s.storage.URL+"/blobs/"+repoID+"/"+commit+"/"+file, http.StatusFound)
		return
	}
	w.Header().Set("ETag", `W/"`+GitETag(string(content))+`"`)
	w.Header().Set("Content-Length", fmt.Sprint(len(content)))
	if r.Method == http.MethodGet {
		w.Write(content)
	}
}

// serveStorage answers /blobs/{repo}/{commit}/{path}; it gets no token.
func (s *Server) serveStorage(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = append(s.log, "storage "+r.Method+" "+r.URL.Path)
	if r.Header.Get("Authorization") != "" {
		http.Error(w, "storage got the hub token", http.StatusBadRequest)
		return
	}
	for id, rp := range s.repos {
		prefix := "/blobs/" + id + "/"
		if !strings.HasPrefix(r.URL.Path, prefix) {
			continue
		}
		commit, file, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, prefix), "/")
		if content, ok := rp.commits[commit][file]; ok {
			w.Header().Set("ETag", `"storage-etag"`)
			w.Header().Set("Content-Length", fmt.Sprint(len(content)))
			if r.Method == http.MethodGet {
				w.Write(content)
			}
			return
		}
	}
	http.NotFound(w, r)
}

// splitResolve splits "/{org}/{name}/resolve/{rev}/{path}" (or "/{name}/…").
func splitResolve(p string) (repo, rev, file string, ok bool) {
	before, after, found := strings.Cut(strings.TrimPrefix(p, "/"), "/resolve/")
	if !found {
		return "", "", "", false
	}
	rev, file, found = strings.Cut(after, "/")
	return before, rev, file, found && before != "" && file != ""
}
