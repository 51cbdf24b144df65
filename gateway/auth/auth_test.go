package auth

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

const (
	aliceKey = "sk-alice-0123456789abcdef"
	bobKey   = "sk-bob-fedcba9876543210"
	oldKey   = "sk-old-aaaaaaaaaaaaaaaa"
)

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

var goodYAML = `keys:
  - name: alice
    key: ` + aliceKey + `
  - name: bob
    key_sha256: ` + sha(bobKey) + `
    rps: 200
    burst: 400
    tpm: 1000000
  - name: old
    key: ` + oldKey + `
    disabled: true
`

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	goodJSON := `{"keys":[{"name":"alice","key":"` + aliceKey + `"},{"name":"bob","key_sha256":"` + sha(bobKey) +
		`","rps":200,"burst":400,"tpm":1000000},{"name":"old","key":"` + oldKey + `","disabled":true}]}`
	bareList := `- {name: alice, key: ` + aliceKey + `}
- {name: bob, key_sha256: ` + sha(bobKey) + `, rps: 200, burst: 400, tpm: 1000000}
- {name: old, key: ` + oldKey + `, disabled: true}
`
	want := []Key{{Name: "alice"}, {Name: "bob", RPS: 200, Burst: 400, TPM: 1000000}, {Name: "old", Disabled: true}}
	for _, tt := range []struct{ name, file, content string }{
		{"yaml", "keys.yaml", goodYAML},
		{"json", "keys.json", goodJSON},
		{"json by content", "keys.conf", goodJSON},
		{"yaml bare list", "keys.yml", bareList},
	} {
		t.Run(tt.name, func(t *testing.T) {
			entries, err := LoadFile(writeFile(t, dir, tt.file, tt.content))
			if err != nil {
				t.Fatalf("LoadFile: %v", err)
			}
			if len(entries) != len(want) {
				t.Fatalf("LoadFile: %d entries, want %d", len(entries), len(want))
			}
			for i, e := range entries {
				if !reflect.DeepEqual(e.Key, want[i]) {
					t.Errorf("entry %d = %+v, want %+v", i, e.Key, want[i])
				}
			}
			if entries[1].Hash != sha256.Sum256([]byte(bobKey)) {
				t.Errorf("bob's key_sha256 not decoded")
			}
		})
	}
}

func TestLoadFileErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct{ name, file, content, want string }{
		{"missing name", "a.yaml", "keys:\n  - key: k1\n  - key: k2\n", "keys[0]: missing name"},
		{"missing key", "a.yaml", "keys:\n  - {name: a, key: k1}\n  - {name: b}\n", `keys[1] ("b"): missing key`},
		{"duplicate name", "a.yaml", "keys:\n  - {name: a, key: k1}\n  - {name: a, key: k2}\n", `keys[1]: name "a" already used by keys[0]`},
		{"duplicate key", "a.yaml", "keys:\n  - {name: a, key: " + aliceKey + "}\n  - {name: b, key_sha256: " + sha(aliceKey) + "}\n", `keys[1] ("b"): same key as keys[0] ("a")`},
		{"both key and hash", "a.yaml", "keys:\n  - {name: a, key: k1, key_sha256: " + sha("k1") + "}\n", "both key and key_sha256"},
		{"bad hash", "a.yaml", "keys:\n  - {name: a, key_sha256: abc}\n", "64 hex digits"},
		{"unknown field", "a.yaml", "keys:\n  - {name: a, key: k1, tmp: 5}\n", "tmp"},
		{"unknown json field", "a.json", `{"keys":[{"name":"a","key":"k1","tmp":5}]}`, "tmp"},
		{"negative rps", "a.json", `{"keys":[{"name":"a","key":"k1","rps":-1}]}`, `keys[0] ("a"): rps must be`},
		{"empty", "a.yaml", "", "no keys"},
		{"no entries", "a.json", `{"keys":[]}`, "no keys"},
		{"malformed yaml", "a.yaml", "keys: [\n", "invalid YAML"},
		{"malformed json", "a.json", `{"keys":[`, "invalid JSON"},
		{"spaces around key", "a.yaml", "keys:\n  - {name: a, key: ' k1'}\n", "spaces"},
		{"empty model", "a.yaml", "keys:\n  - {name: a, key: k1, models: [bge, '']}\n", `keys[0] ("a"): models[1]: empty model name`},
		{"model with space", "a.json", `[{"name":"a","key":"k1","models":["bge small"]}]`, `keys[0] ("a"): models[0]: model name "bge small" contains whitespace`},
		{"models not a list", "a.yaml", "keys:\n  - {name: a, key: k1, models: bge}\n", "invalid YAML"},
		{"negative model tpm", "a.yaml", "keys:\n  - {name: a, key: k1}\n  - {name: b, key: k2, model_tpm: {bge: 5, e5: -1}}\n",
			`keys[1] ("b"): model_tpm["e5"] must be >= 0, got -1`},
		{"star model tpm", "a.json", `{"keys":[{"name":"a","key":"k1","model_tpm":{"*":5}}]}`, `keys[0] ("a"): model_tpm: "*" is not a model`},
		{"empty model tpm name", "a.yaml", "keys:\n  - {name: a, key: k1, model_tpm: {'': 5}}\n", "model_tpm: empty model name"},
		{"model tpm not a number", "a.json", `{"keys":[{"name":"a","key":"k1","model_tpm":{"bge":"lots"}}]}`, "invalid JSON"},
		{"model field typo", "a.yaml", "keys:\n  - {name: a, key: k1, model: [bge]}\n", "field model not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadFile(writeFile(t, dir, tt.file, tt.content))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("LoadFile(%q) error = %v, want one containing %q", tt.content, err, tt.want)
			}
			if strings.Contains(err.Error(), aliceKey) {
				t.Errorf("error shows a key: %v", err)
			}
		})
	}
	if _, err := LoadFile(filepath.Join(dir, "absent.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadFile(absent) = %v, want os.ErrNotExist in the chain", err)
	}
}

func TestMatch(t *testing.T) {
	keys, err := FromFile(writeFile(t, t.TempDir(), "keys.yaml", goodYAML))
	if err != nil {
		t.Fatalf("FromFile: %v", err)
	}
	tests := []struct {
		presented string
		wantName  string
		wantErr   error
	}{
		{aliceKey, "alice", nil},
		{bobKey, "bob", nil},
		{"", "", ErrMissing},
		{"sk-nobody", "", ErrUnknown},
		{aliceKey + "x", "", ErrUnknown},
		{aliceKey[:len(aliceKey)-1], "", ErrUnknown},
		{oldKey, "old", ErrDisabled},
	}
	for _, tt := range tests {
		k, err := keys.Match(tt.presented)
		if !errors.Is(err, tt.wantErr) || k.Name != tt.wantName {
			t.Errorf("Match(%q) = %q, %v; want %q, %v", tt.presented, k.Name, err, tt.wantName, tt.wantErr)
		}
	}
	if k, _ := keys.Match(bobKey); k.RPS != 200 || k.Burst != 400 || k.TPM != 1000000 {
		t.Errorf("bob's limits = %+v", k)
	}
}

func TestFromSingle(t *testing.T) {
	keys, err := FromSingle(aliceKey)
	if err != nil {
		t.Fatalf("FromSingle: %v", err)
	}
	if k, err := keys.Match(aliceKey); err != nil || k.Name != SingleKeyName {
		t.Errorf("Match(single) = %+v, %v; want %q", k, err, SingleKeyName)
	}
	if _, err := FromSingle(""); err == nil {
		t.Error("FromSingle(\"\") succeeded, want an error")
	}
}

func TestFromHeaders(t *testing.T) {
	tests := []struct {
		name, authz, apiKey, want string
		ok                        bool
	}{
		{"bearer", "Bearer k1", "", "k1", true},
		{"scheme case", "bearer k1", "", "k1", true},
		{"shouting", "BEARER   k1 ", "", "k1", true},
		{"api-key", "", "k2", "k2", true},
		{"bearer wins", "Bearer k1", "k2", "k1", true},
		{"basic falls back to api-key", "Basic dXNlcjpwdw==", "k2", "k2", true},
		{"basic alone", "Basic dXNlcjpwdw==", "", "", false},
		{"empty bearer", "Bearer ", "", "", false},
		{"bare token", "k1", "", "", false},
		{"nothing", "", "", "", false},
	}
	for _, tt := range tests {
		got, ok := FromHeaders(tt.authz, tt.apiKey)
		if got != tt.want || ok != tt.ok {
			t.Errorf("%s: FromHeaders(%q, %q) = %q, %v; want %q, %v", tt.name, tt.authz, tt.apiKey, got, ok, tt.want, tt.ok)
		}
	}
}

func TestReload(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "keys.yaml", goodYAML)
	keys, err := FromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// A malformed or invalid file keeps the old keys.
	for _, bad := range []string{"keys: [\n", "keys:\n  - {name: a}\n", ""} {
		writeFile(t, dir, "keys.yaml", bad)
		if err := keys.Reload(path); err == nil {
			t.Errorf("Reload(%q) succeeded, want an error", bad)
		}
		if k, err := keys.Match(aliceKey); err != nil || k.Name != "alice" {
			t.Errorf("after failed Reload(%q): Match(alice) = %+v, %v; want the old key", bad, k, err)
		}
	}
	// A good file replaces the set whole.
	writeFile(t, dir, "keys.yaml", "keys:\n  - {name: carol, key: sk-carol}\n")
	if err := keys.Reload(path); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if _, err := keys.Match(aliceKey); !errors.Is(err, ErrUnknown) {
		t.Errorf("after Reload: Match(alice) err = %v, want ErrUnknown", err)
	}
	if k, err := keys.Match("sk-carol"); err != nil || k.Name != "carol" {
		t.Errorf("after Reload: Match(carol) = %+v, %v", k, err)
	}
}

// TestReloadConcurrent matches while reloading: every Match sees one whole
// set (run with -race).
func TestReloadConcurrent(t *testing.T) {
	dir := t.TempDir()
	a := writeFile(t, dir, "a.yaml", goodYAML)
	b := writeFile(t, dir, "b.yaml", "keys:\n  - {name: alice, key: "+aliceKey+"}\n")
	keys, err := FromFile(a)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 200 {
			if err := keys.Reload([]string{a, b}[i%2]); err != nil {
				t.Errorf("Reload: %v", err)
				return
			}
		}
	})
	for range 2 {
		wg.Go(func() {
			for range 2000 {
				if _, err := keys.Match(aliceKey); err != nil {
					t.Errorf("Match(alice) during reloads: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestReloadKeepsTheOldKeys: a reload replaces the set; one that fails
// keeps it and says why, without the secret.
func TestReloadKeepsTheOldKeys(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "keys.yaml", goodYAML)
	keys, err := FromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "keys.yaml", "keys:\n  - {name: carol, key: sk-carol}\n")
	if err := keys.Reload(path); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "keys.yaml", "keys:\n  - {name: dave, key: sk-dave, rps: -1}\n")
	err = keys.Reload(path)
	if err == nil || strings.Contains(err.Error(), "sk-dave") {
		t.Errorf("Reload of a broken file = %v, want an error without the secret", err)
	}
	if k, err := keys.Match("sk-carol"); err != nil || k.Name != "carol" {
		t.Errorf("after reloads: Match(carol) = %+v, %v; want carol kept", k, err)
	}
}

func BenchmarkMatch(b *testing.B) {
	entries := make([]KeyEntry, 100)
	for i := range entries {
		entries[i] = KeyEntry{Key: Key{Name: "k" + string(rune('A'+i%26)) + string(rune('a'+i/26))}, Hash: sha256.Sum256([]byte{byte(i)})}
	}
	keys, err := New(entries)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_, _ = keys.Match("sk-not-there")
	}
}

func TestZeroKeys(t *testing.T) {
	var keys Keys
	if _, err := keys.Match(aliceKey); !errors.Is(err, ErrUnknown) || keys.Len() != 0 {
		t.Errorf("zero Keys: Match err = %v, Len = %d; want ErrUnknown, 0", err, keys.Len())
	}
}
