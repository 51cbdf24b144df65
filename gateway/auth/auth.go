// Package auth provides embedgate's API keys: a named, per-key-limited set
// of keys (one from --api-key or many from --api-keys-file), each with the
// models it may use and its per-model token limits, matched in constant
// time against SHA-256 hashes and swapped atomically on reload, so SIGHUP
// never drops a request. The server's guard checks requests with it.
//
// Only hashes are kept in memory, and no function here logs a presented key
// or puts it in an error: logs and errors carry the key's name.
//
// auth imports nothing else of ours.
package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
)

// Key is a matched key: its name (safe to log), its own limits and the
// models it may use. Zero RPS, Burst or TPM mean "use the gateway's
// default". Models and ModelTPM are shared by every copy of the Key: read
// them, never write them.
type Key struct {
	Name     string
	RPS      float64
	Burst    int
	TPM      int
	Disabled bool
	// Models is the key's allow-list of model names and aliases; "*" is
	// every model. nil (absent from the file) allows every model; empty
	// (models: []) allows none.
	Models []string
	// ModelTPM limits the tokens per minute of one model, by the name or
	// alias it was given with; charged in addition to TPM. A model absent
	// here (or 0) has no limit of its own.
	ModelTPM map[string]int
}

// MayUse reports whether the key may use a model known by names (its name,
// then its aliases, as catalog.Entry.Names gives them): Models is nil, holds
// "*", or holds one of names.
func (k Key) MayUse(names []string) bool {
	if k.Models == nil || slices.Contains(k.Models, AllModels) {
		return true
	}
	for _, n := range names {
		if slices.Contains(k.Models, n) {
			return true
		}
	}
	return false
}

// TPMFor is the key's tokens-per-minute limit on a model known by names
// (its name, then its aliases): the ModelTPM of the first of names it
// holds, or 0, no limit of its own.
func (k Key) TPMFor(names []string) int {
	for _, n := range names {
		if tpm, ok := k.ModelTPM[n]; ok {
			return tpm
		}
	}
	return 0
}

// AllModels in a key's models allows every model.
const AllModels = "*"

// KeyEntry is one key of a set: its Key and the SHA-256 of its secret.
type KeyEntry struct {
	Key
	Hash [sha256.Size]byte
}

// SingleKeyName is the name of the key given with --api-key.
const SingleKeyName = "default"

// The reasons Match refuses a key. All three become 401 Unauthorized; they
// differ only in the message and in what gets logged.
var (
	ErrMissing  = errors.New("no API key presented")
	ErrUnknown  = errors.New("unknown API key")
	ErrDisabled = errors.New("API key disabled")
)

// Keys is a set of API keys, safe for concurrent use. Reload replaces the
// set atomically: a request matches against either the old set or the new
// one, never a mix.
type Keys struct {
	set atomic.Pointer[[]KeyEntry]
}

// New builds a key set from entries; it refuses an empty set, duplicate
// names and duplicate secrets.
func New(entries []KeyEntry) (*Keys, error) {
	if err := check(entries); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	k := &Keys{}
	k.store(entries)
	return k, nil
}

// FromSingle builds the one-key set of --api-key, named SingleKeyName, with
// the gateway's default limits.
func FromSingle(key string) (*Keys, error) {
	if key == "" {
		return nil, errors.New("auth: empty API key")
	}
	return New([]KeyEntry{{Key: Key{Name: SingleKeyName}, Hash: sha256.Sum256([]byte(key))}})
}

// FromFile builds a key set from an --api-keys-file (see LoadFile).
func FromFile(path string) (*Keys, error) {
	entries, err := LoadFile(path)
	if err != nil {
		return nil, err
	}
	return New(entries)
}

// Reload replaces the set with the keys of path. On any error the old keys
// stay in force and the error says why.
func (k *Keys) Reload(path string) error {
	entries, err := LoadFile(path) // LoadFile checks the whole set
	if err != nil {
		return err
	}
	k.store(entries)
	return nil
}

// Len is the number of keys in the set, disabled ones included.
func (k *Keys) Len() int { return len(k.entries()) }

// entries is the current set; a zero Keys is an empty set, which matches
// nothing.
func (k *Keys) entries() []KeyEntry {
	if p := k.set.Load(); p != nil {
		return *p
	}
	return nil
}

func (k *Keys) store(entries []KeyEntry) {
	cp := append([]KeyEntry(nil), entries...) // the caller's slice stays theirs
	k.set.Store(&cp)
}

// Match finds the key whose secret is presented. A disabled key is returned
// with ErrDisabled, so callers can log its name. It hashes presented once
// and compares the hash with every stored hash in constant time, without
// stopping at a match, so the time taken tells nothing about which key (if
// any) matched or how much of it was right.
func (k *Keys) Match(presented string) (Key, error) {
	if presented == "" {
		return Key{}, ErrMissing
	}
	h := sha256.Sum256([]byte(presented))
	set := k.entries()
	found := -1
	for i := range set {
		eq := subtle.ConstantTimeCompare(h[:], set[i].Hash[:])
		found = subtle.ConstantTimeSelect(eq, i, found)
	}
	if found < 0 {
		return Key{}, ErrUnknown
	}
	key := set[found].Key
	if key.Disabled {
		return key, fmt.Errorf("key %q: %w", key.Name, ErrDisabled)
	}
	return key, nil
}

// FromHeaders extracts the presented key from an Authorization header
// ("Bearer <key>", scheme case-insensitive, as the OpenAI SDKs send) or,
// failing that, an api-key header (as Azure OpenAI clients send). ok is
// false when neither holds a key; an Authorization header with another
// scheme (Basic, say) does not count.
func FromHeaders(authorization, apiKey string) (key string, ok bool) {
	if scheme, rest, found := strings.Cut(strings.TrimSpace(authorization), " "); found && strings.EqualFold(scheme, "Bearer") {
		if key = strings.TrimSpace(rest); key != "" {
			return key, true
		}
	}
	if key = strings.TrimSpace(apiKey); key != "" {
		return key, true
	}
	return "", false
}

// check validates a whole set: at least one key, unique names, unique
// secrets. LoadFile checks the same per file; New needs it for entries
// built by hand.
func check(entries []KeyEntry) error {
	if len(entries) == 0 {
		return errors.New("no keys: an empty key set would refuse every request")
	}
	names := make(map[string]int, len(entries))
	hashes := make(map[[sha256.Size]byte]int, len(entries))
	for i, e := range entries {
		if e.Name == "" {
			return fmt.Errorf("keys[%d]: missing name", i)
		}
		if j, dup := names[e.Name]; dup {
			return fmt.Errorf("keys[%d]: name %q already used by keys[%d]", i, e.Name, j)
		}
		names[e.Name] = i
		if j, dup := hashes[e.Hash]; dup {
			// Name both entries, never the secret.
			return fmt.Errorf("keys[%d] (%q): same key as keys[%d] (%q)", i, e.Name, j, entries[j].Name)
		}
		hashes[e.Hash] = i
	}
	return nil
}
