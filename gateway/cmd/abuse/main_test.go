package main

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	env := map[string]string{"ABUSE_API_KEY": "sk-from-env"}
	o, err := parse([]string{"--url", "http://127.0.0.1:9", "--slow-bound", "5s", "--idle-conns", "10"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.BaseURL != "http://127.0.0.1:9" || o.SlowBound != 5*time.Second || o.IdleConns != 10 || o.APIKey != "sk-from-env" || o.MaxConns != 2500 {
		t.Errorf("parse = %+v", o)
	}
	if _, err := parse([]string{"--log-file", filepath.Join(t.TempDir(), "missing")}, func(string) string { return "" }, io.Discard); err == nil {
		t.Error("a missing --log-file was accepted")
	}
}

// A remote target is refused before anything is sent: exit status 2 and
// a message naming --allow-remote.
func TestRefusesRemote(t *testing.T) {
	var stdout, stderr strings.Builder
	code := run(context.Background(), []string{"--url", "http://192.0.2.1:8080"}, func(string) string { return "" }, &stdout, &stderr)
	if code != 2 || !strings.Contains(stderr.String(), "--allow-remote") {
		t.Errorf("exit %d, stderr %q, want 2 and a message naming --allow-remote", code, stderr.String())
	}
}
