package catalog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"
)

// yamlDoc and jsonDoc are a whole models file: {"models": [...]}. A bare
// list is accepted too.
type (
	yamlDoc struct {
		Models []Entry `yaml:"models"`
	}
	jsonDoc struct {
		Models []json.RawMessage `json:"models"`
	}
)

// Load reads a --models-file, YAML or JSON:
//
//	models:
//	  - name: bge-small                  # required; what clients send as model
//	    aliases: [text-embedding-3-small]
//	    model_id: BAAI/bge-small-en-v1.5 # required: local directory or hub repo
//	    backend: triton                  # onnx or triton; absent = --backend
//	    triton_model: bge-small-en-v1.5  # absent = name
//	  - name: e5
//	    model_id: ./multilingual-e5-small
//	    backend: onnx
//	    onnx_file: onnx/model_qint8_avx512.onnx
//	    prompts: {query: "query: ", passage: "passage: "}
//	    default_prompt_name: query
//	    max_batch_tokens: 8192           # absent or 0 = the flag
//
// A top-level list of entries (without "models:") is accepted too. A .json
// file is JSON, a .yaml or .yml file YAML; otherwise a leading '{' or '['
// means JSON. Unknown fields are errors, so a typo ("pooling_mode") does
// not silently fall back to a default. Every problem of the file is
// reported at once, joined, each naming its entry: models[2] ("e5"): ...
// Each entry's Source is "file <path>".
func Load(path string) ([]Entry, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("catalog: read models file: %w", err)
	}
	var p parsed
	if isJSON(path, data) {
		p, err = parseJSON(data)
	} else {
		p, err = parseYAML(data)
	}
	if err != nil {
		return nil, fmt.Errorf("catalog: models file %s: %w", path, err)
	}
	if len(p.entries) == 0 && len(p.fileErrs) == 0 {
		return nil, fmt.Errorf("catalog: models file %s: no models: list them under models:", path)
	}
	label := func(i int) string { return fmt.Sprintf("models[%d]%s", i, quoteName(p.entries[i].Name)) }
	errs := p.fileErrs
	for i, e := range p.entries {
		problems := p.entryErrs[i]
		if !p.notObject[i] { // else its fields are all zero: saying so is noise
			problems = append(problems, e.problems()...)
		}
		for _, err := range problems {
			errs = append(errs, fmt.Errorf("%s: %w", label(i), err))
		}
	}
	errs = append(errs, duplicates(p.entries, label)...)
	if len(errs) > 0 {
		return nil, fmt.Errorf("catalog: models file %s: %w", path, joined(errs))
	}
	for i := range p.entries {
		p.entries[i].Source = "file " + path
	}
	return p.entries, nil
}

// parsed is a decoded models file and what decoding found wrong: in the
// file outside any entry, and per entry (unknown fields, wrong types, an
// entry that is not an object at all).
type parsed struct {
	entries   []Entry
	entryErrs [][]error
	notObject []bool
	fileErrs  []error
}

func newParsed(entries []Entry) parsed {
	return parsed{entries: entries, entryErrs: make([][]error, len(entries)), notObject: make([]bool, len(entries))}
}

func quoteName(name string) string {
	if name == "" {
		return ""
	}
	return fmt.Sprintf(" (%q)", name)
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

// parseJSON decodes the file leniently, entry by entry, and then each
// entry again strictly (unknown fields are errors), so one entry's typo is
// reported with its name and does not hide the other entries' problems.
func parseJSON(data []byte) (parsed, error) {
	var raws []json.RawMessage
	if trimmed := bytes.TrimSpace(data); len(trimmed) > 0 && trimmed[0] == '[' {
		if err := decodeJSON(data, &raws); err != nil {
			return parsed{}, err
		}
	} else {
		var doc jsonDoc
		if err := decodeJSON(data, &doc); err != nil {
			return parsed{}, err
		}
		raws = doc.Models
	}
	p := newParsed(make([]Entry, len(raws)))
	for i, raw := range raws {
		if trimmed := bytes.TrimSpace(raw); len(trimmed) == 0 || trimmed[0] != '{' {
			p.entryErrs[i] = []error{fmt.Errorf("is %s, not an object of fields", trimmed)}
			p.notObject[i] = true
			continue
		}
		_ = json.Unmarshal(raw, &p.entries[i]) // fills what it can; the strict pass says why not
		if err := decodeJSON(raw, &Entry{}); err != nil {
			p.entryErrs[i] = []error{err}
		}
	}
	return p, nil
}

func decodeJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("invalid JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("invalid JSON: data after the top-level value")
	}
	return nil
}

// parseYAML decodes the file strictly (KnownFields): yaml.v3 goes on past
// an unknown field or a wrong type and lists them all with their lines,
// which place each in its entry.
func parseYAML(data []byte) (parsed, error) {
	var node yaml.Node
	if err := yaml.Unmarshal(data, &node); err != nil {
		return parsed{}, fmt.Errorf("invalid YAML: %w", err)
	}
	if len(node.Content) == 0 {
		return parsed{}, nil // empty file: Load reports "no models"
	}
	root := node.Content[0]
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true) // yaml.Node.Decode would ignore it
	var entries []Entry
	var err error
	if root.Kind == yaml.SequenceNode {
		err = dec.Decode(&entries)
	} else {
		var doc yamlDoc
		err = dec.Decode(&doc)
		entries = doc.Models
		root = modelsNode(root)
	}
	var typeErr *yaml.TypeError
	if err != nil && !errors.As(err, &typeErr) {
		return parsed{}, fmt.Errorf("invalid YAML: %w", err)
	}
	if next := dec.Decode(new(yaml.Node)); !errors.Is(next, io.EOF) {
		return parsed{}, errors.New("invalid YAML: more than one document (---): put every model in one")
	}
	p, ok := alignYAML(root, entries)
	if !ok {
		return parsed{}, fmt.Errorf("invalid YAML: the models list does not decode (%v)", err)
	}
	if typeErr == nil {
		return p, nil
	}
	for _, msg := range typeErr.Errors {
		line, text, inEntry := yamlProblem(msg)
		i := -1
		if inEntry {
			i = entryAt(root, line)
		}
		switch {
		case i < 0 || i >= len(p.entries):
			p.fileErrs = append(p.fileErrs, errors.New(text))
		case !p.notObject[i]: // else already said
			p.entryErrs[i] = append(p.entryErrs[i], errors.New(text))
		}
	}
	return p, nil
}

// alignYAML pairs the decoded entries with the items of list: yaml.v3
// leaves out every item that is not a mapping (a string, a list, an empty
// item), which are reported as what they are. ok is false if the decoded
// entries do not pair up so.
func alignYAML(list *yaml.Node, decoded []Entry) (p parsed, ok bool) {
	if list == nil || list.Kind != yaml.SequenceNode {
		return newParsed(decoded), len(decoded) == 0
	}
	p = newParsed(make([]Entry, len(list.Content)))
	next := 0
	for i, item := range list.Content {
		if item.Kind == yaml.AliasNode && item.Alias != nil {
			item = item.Alias
		}
		isNull := item.Kind == yaml.ScalarNode && item.ShortTag() == "!!null"
		if item.Kind == yaml.MappingNode {
			if next >= len(decoded) {
				return parsed{}, false
			}
			p.entries[i] = decoded[next]
			next++
		}
		switch {
		case isNull:
			p.entryErrs[i] = []error{fmt.Errorf("line %d: is empty, not a mapping of fields", list.Content[i].Line)}
		case item.Kind == yaml.ScalarNode:
			p.entryErrs[i] = []error{fmt.Errorf("line %d: is %q, not a mapping of fields", list.Content[i].Line, item.Value)}
		case item.Kind != yaml.MappingNode:
			p.entryErrs[i] = []error{fmt.Errorf("line %d: is a list, not a mapping of fields", list.Content[i].Line)}
		}
		p.notObject[i] = p.entryErrs[i] != nil
	}
	return p, next == len(decoded)
}

// modelsNode is the value of the "models" key of a mapping, or nil.
func modelsNode(m *yaml.Node) *yaml.Node {
	if m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == "models" {
			return m.Content[i+1]
		}
	}
	return nil
}

// yamlProblem reads one of yaml.v3's decoding messages: "line 9: field
// pooling_mode not found in type catalog.Entry" becomes line 9, `line 9:
// unknown field "pooling_mode"`, in an entry. A message that is not about a
// field (a wrong type: "line 9: cannot unmarshal ...") is placed by its
// line alone; one about a field of the document is not in an entry.
func yamlProblem(msg string) (line int, text string, inEntry bool) {
	if _, err := fmt.Sscanf(msg, "line %d:", &line); err != nil {
		return 0, msg, false
	}
	prefix, rest, _ := strings.Cut(msg, ": ")
	field, typ, ok := strings.Cut(strings.TrimPrefix(rest, "field "), " not found in type ")
	if !ok {
		return line, msg, true
	}
	return line, fmt.Sprintf("%s: unknown field %q", prefix, field), typ == "catalog.Entry"
}

// entryAt is the index of the entry of list that holds line, or -1.
func entryAt(list *yaml.Node, line int) int {
	if list == nil || list.Kind != yaml.SequenceNode {
		return -1
	}
	found := -1
	for i, item := range list.Content {
		if item.Line <= line {
			found = i
		}
	}
	return found
}
