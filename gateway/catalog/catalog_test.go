package catalog

import (
	"reflect"
	"strings"
	"testing"
)

func TestMerge(t *testing.T) {
	file := []Entry{
		{Name: "bge", Aliases: []string{"text-embedding-3-small"}, ModelID: "BAAI/bge-small-en-v1.5", Source: "file m.yaml"},
		{Name: "e5", ModelID: "./e5", Source: "file m.yaml"},
	}
	triton := []Entry{
		{Name: "bge", ModelID: "x", Source: "triton t:8001"},                                                   // name taken by the file
		{Name: "qwen", Aliases: []string{"e5"}, ModelID: "Qwen/Qwen3-Embedding-0.6B", Source: "triton t:8001"}, // alias taken
		{Name: "text-embedding-3-small", ModelID: "y", Source: "triton t:8001"},                                // name is the file's alias
		{Name: "gte", Aliases: []string{"gte-base"}, ModelID: "thenlper/gte-base", Source: "triton t:8001"},
	}
	flags := []Entry{{Name: "gte-base", ModelID: "z", Source: "flags"}, {Name: "minilm", ModelID: "m", Source: "flags"}}

	got, dropped := Merge(file, triton, flags)
	want := []Entry{file[0], file[1], triton[3], flags[1]}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Merge entries = %+v\nwant %+v", got, want)
	}
	wantDropped := []string{
		`model "bge" (triton t:8001) dropped: name "bge" is already used by model "bge" (file m.yaml)`,
		`model "qwen" (triton t:8001) dropped: alias "e5" is already used by model "e5" (file m.yaml)`,
		`model "text-embedding-3-small" (triton t:8001) dropped: name "text-embedding-3-small" is already used by model "bge" (file m.yaml)`,
		`model "gte-base" (flags) dropped: name "gte-base" is already used by model "gte" (triton t:8001)`,
	}
	if len(dropped) != len(wantDropped) {
		t.Fatalf("Merge dropped %d: %v, want %d", len(dropped), dropped, len(wantDropped))
	}
	for i, w := range wantDropped {
		if dropped[i].Error() != w {
			t.Errorf("dropped[%d] = %q\nwant %q", i, dropped[i], w)
		}
	}

	// A collision within one source drops the later entry too.
	got, dropped = Merge([]Entry{{Name: "a", Source: "s"}, {Name: "b", Aliases: []string{"a"}, Source: "s"}})
	if len(got) != 1 || got[0].Name != "a" || len(dropped) != 1 {
		t.Errorf("Merge within a source = %+v, %v; want a kept, b dropped", got, dropped)
	}
	// An entry repeating its own name as an alias does not collide with
	// itself: Check reports it.
	got, dropped = Merge([]Entry{{Name: "a", Aliases: []string{"a"}}})
	if len(got) != 1 || dropped != nil {
		t.Errorf("Merge of one self-aliased entry = %+v, %v", got, dropped)
	}
	if got, dropped := Merge(); got != nil || dropped != nil {
		t.Errorf("Merge() = %v, %v; want nothing", got, dropped)
	}
}

func TestCheck(t *testing.T) {
	a := Entry{Name: "a", Aliases: []string{"x"}, ModelID: "m", Source: "file m.yaml"}
	b := Entry{Name: "b", ModelID: "n", Source: "triton t:8001"}
	tests := []struct {
		name    string
		entries []Entry
		def     string
		want    []string
	}{
		{"ok", []Entry{a, b}, "", nil},
		{"default by name", []Entry{a, b}, "b", nil},
		{"default by alias", []Entry{a, b}, "x", nil},
		{"no entries", nil, "", []string{"no models to serve"}},
		{"unknown default", []Entry{a, b}, "c", []string{`default model "c" is not served (models and aliases: a, x, b)`}},
		{"default case differs", []Entry{a, b}, "A", []string{`default model "A" is not served`}},
		{"duplicate name", []Entry{a, {Name: "a", ModelID: "m", Source: "flags"}}, "",
			[]string{`model "a" (flags): name "a" is already used by model "a" (file m.yaml)`}},
		{"alias used twice", []Entry{a, {Name: "c", Aliases: []string{"x"}, ModelID: "m", Source: "flags"}}, "",
			[]string{`model "c" (flags): alias "x" is already used by model "a" (file m.yaml)`}},
		{"names are case-sensitive", []Entry{a, {Name: "A", ModelID: "m"}}, "", nil},
		{"entry problems", []Entry{a, {Name: "c d", Source: "flags"}}, "",
			[]string{`model "c d" (flags): name "c d" contains whitespace`, `model "c d" (flags): model_id is required`}},
		{"everything", []Entry{a, {Name: "a", Pooling: "max"}}, "z", []string{
			`model "a": model_id is required`, `model "a": pooling "max"`, `model "a": name "a" is already used by model "a" (file m.yaml)`, `default model "z"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Check(tt.entries, tt.def)
			wantProblems(t, "Check", err, tt.want)
			if err != nil && !strings.HasPrefix(err.Error(), "catalog: ") {
				t.Errorf("Check error %q does not start with catalog:", err)
			}
		})
	}
}

func TestDefault(t *testing.T) {
	entries := []Entry{{Name: "a"}, {Name: "b"}}
	for _, tt := range []struct {
		entries []Entry
		flag    string
		want    string
	}{
		{entries, "", "a"},
		{entries, "b", "b"},
		{entries, "alias-of-b", "alias-of-b"}, // Check says whether it is served
		{nil, "", ""},
		{nil, "x", "x"},
	} {
		if got := Default(tt.entries, tt.flag); got != tt.want {
			t.Errorf("Default(%v, %q) = %q, want %q", tt.entries, tt.flag, got, tt.want)
		}
	}
}
