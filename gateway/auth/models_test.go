package auth

import (
	"reflect"
	"testing"
)

const modelsYAML = `keys:
  - name: all
    key: sk-all
  - name: star
    key: sk-star
    models: ["*"]
    model_tpm: {bge: 1000}
  - name: search
    key: sk-search
    models: [bge, text-embedding-3-small]
    model_tpm: {text-embedding-3-small: 500, e5: 0}
  - name: none
    key: sk-none
    models: []
  - name: nulled
    key: sk-nulled
    models:
`

func TestLoadFileModels(t *testing.T) {
	modelsJSON := `{"keys":[{"name":"all","key":"sk-all"},{"name":"star","key":"sk-star","models":["*"],"model_tpm":{"bge":1000}},` +
		`{"name":"search","key":"sk-search","models":["bge","text-embedding-3-small"],"model_tpm":{"text-embedding-3-small":500,"e5":0}},` +
		`{"name":"none","key":"sk-none","models":[]},{"name":"nulled","key":"sk-nulled","models":null}]}`
	want := []Key{
		{Name: "all"},
		{Name: "star", Models: []string{"*"}, ModelTPM: map[string]int{"bge": 1000}},
		{Name: "search", Models: []string{"bge", "text-embedding-3-small"}, ModelTPM: map[string]int{"text-embedding-3-small": 500, "e5": 0}},
		{Name: "none", Models: []string{}},
		{Name: "nulled"},
	}
	dir := t.TempDir()
	for _, tt := range []struct{ file, content string }{{"keys.yaml", modelsYAML}, {"keys.json", modelsJSON}} {
		t.Run(tt.file, func(t *testing.T) {
			entries, err := LoadFile(writeFile(t, dir, tt.file, tt.content))
			if err != nil {
				t.Fatal(err)
			}
			for i, e := range entries {
				if !reflect.DeepEqual(e.Key, want[i]) {
					t.Errorf("entry %d = %#v, want %#v", i, e.Key, want[i])
				}
			}
			// The difference that matters: absent allows all, [] none.
			if entries[3].Models == nil || entries[0].Models != nil || entries[4].Models != nil {
				t.Errorf("models: [] and absent are not told apart: %#v, %#v, %#v", entries[3].Models, entries[0].Models, entries[4].Models)
			}
		})
	}
}

func TestMayUseAndTPMFor(t *testing.T) {
	keys, err := FromFile(writeFile(t, t.TempDir(), "keys.yaml", modelsYAML))
	if err != nil {
		t.Fatal(err)
	}
	key := func(secret string) Key {
		k, err := keys.Match(secret)
		if err != nil {
			t.Fatalf("Match(%s): %v", secret, err)
		}
		return k
	}
	bge := []string{"bge", "bge-small-en-v1.5"}
	openai := []string{"bge-large", "text-embedding-3-small"} // allowed by alias
	e5 := []string{"e5"}
	tests := []struct {
		key     string
		names   []string
		mayUse  bool
		wantTPM int
	}{
		{"sk-all", bge, true, 0},
		{"sk-all", e5, true, 0},
		{"sk-all", nil, true, 0},
		{"sk-star", bge, true, 1000},
		{"sk-star", e5, true, 0},
		{"sk-search", bge, true, 0},
		{"sk-search", openai, true, 500},
		{"sk-search", e5, false, 0},
		{"sk-search", []string{"BGE"}, false, 0}, // exact names
		{"sk-search", nil, false, 0},
		{"sk-none", bge, false, 0},
		{"sk-none", e5, false, 0},
		{"sk-nulled", e5, true, 0},
	}
	for _, tt := range tests {
		k := key(tt.key)
		if got := k.MayUse(tt.names); got != tt.mayUse {
			t.Errorf("%s.MayUse(%q) = %v, want %v", k.Name, tt.names, got, tt.mayUse)
		}
		if got := k.TPMFor(tt.names); got != tt.wantTPM {
			t.Errorf("%s.TPMFor(%q) = %d, want %d", k.Name, tt.names, got, tt.wantTPM)
		}
	}
	// The first of the names with a limit wins: the name before aliases.
	k := Key{ModelTPM: map[string]int{"alias": 5, "name": 7}}
	if got := k.TPMFor([]string{"name", "alias"}); got != 7 {
		t.Errorf("TPMFor(name, alias) = %d, want the name's 7", got)
	}
}

// TestReloadModels: a SIGHUP reload replaces the allow-lists and
// per-model limits with the file's new ones.
func TestReloadModels(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "keys.yaml", modelsYAML)
	keys, err := FromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "keys.yaml", `keys:
  - {name: search, key: sk-search, models: [e5], model_tpm: {e5: 50}}
  - {name: none, key: sk-none}
`)
	if err := keys.Reload(path); err != nil {
		t.Fatal(err)
	}
	search, err := keys.Match("sk-search")
	if err != nil {
		t.Fatal(err)
	}
	if search.MayUse([]string{"bge"}) || !search.MayUse([]string{"e5"}) || search.TPMFor([]string{"e5"}) != 50 {
		t.Errorf("after reload: search = %+v, want only e5 with tpm 50", search)
	}
	if none, _ := keys.Match("sk-none"); !none.MayUse([]string{"bge"}) {
		t.Errorf("after reload: none = %+v, want every model (models absent)", none)
	}
}
