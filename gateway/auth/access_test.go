package auth

import "testing"

func TestMayUse(t *testing.T) {
	e5 := []string{"e5", "text-embedding-3-small"}
	tests := []struct {
		name   string
		models []string
		want   bool
	}{
		{"no list", nil, true},
		{"star", []string{"bge", "*"}, true},
		{"by name", []string{"bge", "e5"}, true},
		{"by alias", []string{"text-embedding-3-small"}, true},
		{"other models", []string{"bge"}, false},
		{"empty list", []string{}, false},
		{"case matters", []string{"E5"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := (Key{Models: tt.models}).MayUse(e5); got != tt.want {
				t.Errorf("Key{Models: %q}.MayUse(%q) = %v, want %v", tt.models, e5, got, tt.want)
			}
		})
	}
}

func TestTPMFor(t *testing.T) {
	k := Key{ModelTPM: map[string]int{"e5": 100, "ada": 7}}
	for _, tt := range []struct {
		names []string
		want  int
	}{
		{[]string{"e5", "ada"}, 100}, // the name first
		{[]string{"e6", "ada"}, 7},   // else an alias
		{[]string{"bge"}, 0},
		{nil, 0},
	} {
		if got := k.TPMFor(tt.names); got != tt.want {
			t.Errorf("TPMFor(%q) = %d, want %d", tt.names, got, tt.want)
		}
	}
	if got := (Key{}).TPMFor([]string{"e5"}); got != 0 {
		t.Errorf("Key{}.TPMFor = %d, want 0", got)
	}
}
