// Package auth provides embedgate's API keys: a named, per-key-limited set
// of keys (one from --api-key or many from --api-keys-file), matched in
// constant time against SHA-256 hashes and swapped atomically on reload, so
// SIGHUP never drops a request. The server's guard checks requests with it.
//
// Only hashes are kept in memory, and no function here logs a presented key
// or puts it in an error: logs and errors carry the key's name.
//
// auth imports nothing else of ours.
package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
)

// Key is a matched key: its name (safe to log) and its own limits. Zero
// RPS, Burst or TPM mean "use the gateway's default".
type Key struct {
	Name     string
	RPS      float64
	Burst    int
	TPM      int
	Disabled bool
	// Models are the models the key may use, by name or alias, or "*"
	// for every one; nil = every model (see MayUse).
	Models []string
	// ModelTPM are per-model token limits, by name or alias, on top of
	// TPM (see TPMFor).
	ModelTPM map[string]int
}

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

// Run reloads the set from path each time reload receives (the caller
// passes a channel given to signal.Notify for SIGHUP), logging the outcome,
// until ctx is done. A failed reload keeps the old keys and is logged as an
// error. Run returns nil when ctx ends.
func (k *Keys) Run(ctx context.Context, reload <-chan os.Signal, path string, logger *slog.Logger) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-reload:
			if err := k.Reload(path); err != nil {
				logger.Error("api keys reload failed, keeping the old keys", "path", path, "err", err, "keys", k.Len())
				continue
			}
			logger.Info("api keys reloaded", "path", path, "keys", k.Len())
		}
	}
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
