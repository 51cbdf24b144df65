package auth

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode"

	"gopkg.in/yaml.v3"
)

// fileEntry is one key as written in an --api-keys-file.
type fileEntry struct {
	Name      string  `json:"name" yaml:"name"`
	Key       string  `json:"key" yaml:"key"`               // the secret itself, or
	KeySHA256 string  `json:"key_sha256" yaml:"key_sha256"` // its SHA-256, hex: the file need not hold secrets
	RPS       float64 `json:"rps" yaml:"rps"`
	Burst     int     `json:"burst" yaml:"burst"`
	TPM       int     `json:"tpm" yaml:"tpm"`
	Disabled  bool    `json:"disabled" yaml:"disabled"`
	// Models: absent (or null) = every model; [] = none.
	Models   []string       `json:"models" yaml:"models"`
	ModelTPM map[string]int `json:"model_tpm" yaml:"model_tpm"`
}

// fileDoc is the whole file: {"keys": [...]}. A bare list is accepted too.
type fileDoc struct {
	Keys []fileEntry `json:"keys" yaml:"keys"`
}

// LoadFile reads an --api-keys-file, YAML or JSON:
//
//	keys:
//	  - name: alice            # required, unique; what logs show
//	    key: sk-alice-...      # the secret, or:
//	  - name: batch-jobs
//	    key_sha256: 9f86d0...  # hex SHA-256 of the secret
//	    rps: 200               # optional; 0 or absent = the gateway default
//	    burst: 400
//	    tpm: 1000000
//	  - name: old-app
//	    key: sk-old-...
//	    disabled: true         # kept, but answered 401
//	  - name: search-team
//	    key: sk-search-...
//	    models: [bge-small, text-embedding-3-small]  # names or aliases; "*" = all
//	    model_tpm: {bge-small: 200000}               # per model, on top of tpm
//	  - name: suspended
//	    key: sk-susp-...
//	    models: []             # no model at all (absent = every model)
//
// A key without models may use every model; models: [] (an empty list)
// allows none, so its requests get 404 and /v1/models lists nothing. A
// model_tpm limit applies to the model it names (by name or alias) in
// addition to the key's tpm. A top-level list of entries (without "keys:") is accepted too. A .json
// file is JSON, a .yaml or .yml file YAML; otherwise a leading '{' or '['
// means JSON. Unknown fields are errors, so a typo ("tmp") does not silently
// drop a limit. Errors name the entry by index and name, never its secret.
func LoadFile(path string) ([]KeyEntry, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: read api keys file: %w", err)
	}
	var raw []fileEntry
	if isJSON(path, data) {
		raw, err = parseJSON(data)
	} else {
		raw, err = parseYAML(data)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: api keys file %s: %w", path, err)
	}
	entries := make([]KeyEntry, 0, len(raw))
	for i, fe := range raw {
		e, err := fe.entry()
		if err != nil {
			return nil, fmt.Errorf("auth: api keys file %s: keys[%d]%s: %w", path, i, quoteName(fe.Name), err)
		}
		entries = append(entries, e)
	}
	if err := check(entries); err != nil {
		return nil, fmt.Errorf("auth: api keys file %s: %w", path, err)
	}
	return entries, nil
}

func quoteName(name string) string {
	if name == "" {
		return ""
	}
	return fmt.Sprintf(" (%q)", name)
}

func (fe fileEntry) entry() (KeyEntry, error) {
	e := KeyEntry{Key: Key{Name: fe.Name, RPS: fe.RPS, Burst: fe.Burst, TPM: fe.TPM, Disabled: fe.Disabled,
		Models: fe.Models, ModelTPM: fe.ModelTPM}}
	switch {
	case strings.TrimSpace(fe.Name) == "":
		return e, errors.New("missing name")
	case fe.Key != "" && fe.KeySHA256 != "":
		return e, errors.New("both key and key_sha256 given; use one")
	case fe.Key != "":
		if strings.TrimSpace(fe.Key) != fe.Key {
			// FromHeaders trims what clients send, so such a key could
			// never match.
			return e, errors.New("key has leading or trailing spaces")
		}
		e.Hash = sha256.Sum256([]byte(fe.Key))
	case fe.KeySHA256 != "":
		b, err := hex.DecodeString(strings.TrimSpace(fe.KeySHA256))
		if err != nil || len(b) != sha256.Size {
			return e, errors.New("key_sha256 must be 64 hex digits (a SHA-256)")
		}
		copy(e.Hash[:], b)
	default:
		return e, errors.New("missing key (or key_sha256)")
	}
	switch {
	case fe.RPS < 0 || math.IsNaN(fe.RPS) || math.IsInf(fe.RPS, 0):
		return e, fmt.Errorf("rps must be a number >= 0, got %v", fe.RPS)
	case fe.Burst < 0:
		return e, fmt.Errorf("burst must be >= 0, got %d", fe.Burst)
	case fe.TPM < 0:
		return e, fmt.Errorf("tpm must be >= 0, got %d", fe.TPM)
	}
	return e, fe.checkModels()
}

// checkModels checks the models allow-list and the per-model limits. The
// names are not checked against the served models: those change on reload
// and with Triton discovery, and a key may list a model before it is served.
func (fe fileEntry) checkModels() error {
	for i, m := range fe.Models {
		if err := checkModelName(m); err != nil {
			return fmt.Errorf("models[%d]: %w", i, err)
		}
	}
	for _, m := range slices.Sorted(maps.Keys(fe.ModelTPM)) {
		switch err := checkModelName(m); {
		case err != nil:
			return fmt.Errorf("model_tpm: %w", err)
		case m == AllModels:
			return errors.New(`model_tpm: "*" is not a model: tpm limits all models together`)
		case fe.ModelTPM[m] < 0:
			return fmt.Errorf("model_tpm[%q] must be >= 0, got %d", m, fe.ModelTPM[m])
		}
	}
	return nil
}

// checkModelName refuses what could never match a model: names are
// compared exactly, and none is empty or has whitespace.
func checkModelName(m string) error {
	switch {
	case m == "":
		return errors.New("empty model name")
	case strings.ContainsFunc(m, unicode.IsSpace):
		return fmt.Errorf("model name %q contains whitespace, which no model name has", m)
	}
	return nil
}

func isJSON(path string, data []byte) bool {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".json":
		return true
	case ".yaml", ".yml":
		return false
	}
	trimmed := bytes.TrimSpace(data)
	return len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[')
}

func parseJSON(data []byte) ([]fileEntry, error) {
	if trimmed := bytes.TrimSpace(data); len(trimmed) > 0 && trimmed[0] == '[' {
		var list []fileEntry
		if err := decodeJSON(data, &list); err != nil {
			return nil, err
		}
		return list, nil
	}
	var doc fileDoc
	if err := decodeJSON(data, &doc); err != nil {
		return nil, err
	}
	return doc.Keys, nil
}

func decodeJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("invalid JSON: data after the top-level value")
	}
	return nil
}

func parseYAML(data []byte) ([]fileEntry, error) {
	var node yaml.Node
	if err := yaml.Unmarshal(data, &node); err != nil {
		return nil, fmt.Errorf("invalid YAML: %w", err)
	}
	if len(node.Content) == 0 {
		return nil, nil // empty file: check reports "no keys"
	}
	// Decode again with KnownFields: yaml.Node.Decode ignores it.
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if node.Content[0].Kind == yaml.SequenceNode {
		var list []fileEntry
		if err := dec.Decode(&list); err != nil {
			return nil, fmt.Errorf("invalid YAML: %w", err)
		}
		return list, nil
	}
	var doc fileDoc
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("invalid YAML: %w", err)
	}
	return doc.Keys, nil
}
