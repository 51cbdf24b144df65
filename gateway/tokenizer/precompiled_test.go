package tokenizer

import (
	"encoding/base64"
	"encoding/binary"
	"reflect"
	"slices"
	"testing"
)

// buildCharsmap encodes rules (key → replacement) the way SentencePiece
// stores a precompiled charsmap: a darts-clone double array whose values
// are offsets of NUL-terminated replacements. The placement is a plain
// first-fit search, enough for a handful of keys.
func buildCharsmap(t *testing.T, rules map[string]string) []byte {
	t.Helper()
	type node struct {
		children map[byte]*node
		value    int // offset of the replacement, or -1
	}
	newNode := func() *node { return &node{children: map[byte]*node{}, value: -1} }
	root := newNode()
	var repl []byte
	keys := make([]string, 0, len(rules))
	for k := range rules {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		nd := root
		for i := 0; i < len(k); i++ {
			c := nd.children[k[i]]
			if c == nil {
				c = newNode()
				nd.children[k[i]] = c
			}
			nd = c
		}
		nd.value = len(repl)
		repl = append(append(repl, rules[k]...), 0)
	}
	units := []uint32{0}
	used := map[uint32]bool{0: true}
	set := func(pos, v uint32) {
		for uint32(len(units)) <= pos {
			units = append(units, 0)
		}
		units[pos] |= v
		used[pos] = true
	}
	var place func(nd *node, pos uint32)
	place = func(nd *node, pos uint32) {
		labels := make([]byte, 0, len(nd.children))
		for c := range nd.children {
			labels = append(labels, c)
		}
		slices.Sort(labels)
		off := uint32(1)
		for ; off < 1<<21; off++ {
			ok := !(nd.value >= 0 && used[pos^off])
			for _, c := range labels {
				if q := pos ^ off ^ uint32(c); q == 0 || used[q] {
					ok = false
				}
			}
			if ok {
				break
			}
		}
		set(pos, off<<10)
		if nd.value >= 0 {
			set(pos, 1<<8)
			set(pos^off, 1<<31|uint32(nd.value))
		}
		for _, c := range labels {
			set(pos^off^uint32(c), uint32(c))
		}
		for _, c := range labels {
			place(nd.children[c], pos^off^uint32(c))
		}
	}
	place(root, 0)
	// darts-clone arrays come in blocks of 256 units, so that a look-up
	// XORing any byte into a position stays inside the array.
	for len(units)%256 != 0 {
		units = append(units, 0)
	}
	blob := binary.LittleEndian.AppendUint32(nil, uint32(4*len(units)))
	for _, u := range units {
		blob = binary.LittleEndian.AppendUint32(blob, u)
	}
	return append(blob, repl...)
}

// testCharsmapRules exercise what real charsmaps (nmt_nfkc) do: one
// character to several, removal, keys that are prefixes of others, keys
// of several characters, and control characters.
var testCharsmapRules = map[string]string{
	"Ａ":             "A",
	"ﬁ":             "fi",
	"\u200b":        "",
	"ｶ":             "カ",
	"ﾞ":             "\u3099",
	"…":             "...",
	"\t":            " ",
	"\x01":          "",
	"e\u0301":       "é",
	"e\u0301\u0323": "X",
	"①":             "1",
}

func TestPrecompiledCharsmap(t *testing.T) {
	blob := buildCharsmap(t, testCharsmapRules)
	p, err := newPrecompiled(blob)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range testCharsmapRules {
		got, ok := p.lookup([]byte(k + "zz"))
		if k == "e\u0301\u0323" {
			v = "é" // the shortest key wins
		}
		if !ok || string(got) != v {
			t.Errorf("lookup(%q) = %q, %v, want %q", k, got, ok, v)
		}
	}
	if got, ok := p.lookup([]byte("zz")); ok {
		t.Errorf("lookup(zz) = %q, want no match", got)
	}
}

// TestPrecompiled checks the normalizer built on the test charsmap against
// the Rust library (tokenizers 0.23.2 loading the same charsmap): grapheme
// look-ups by shortest prefix (a mark after a mapped character goes with
// it), per-character look-ups for graphemes of 6 bytes or more, and the
// positional alignments of expansions and removals.
func TestPrecompiled(t *testing.T) {
	charsmap := base64.StdEncoding.EncodeToString(buildCharsmap(t, testCharsmapRules))
	normalizer := `{"type":"Precompiled","precompiled_charsmap":"` + charsmap + `"}`
	tests := []struct {
		name, text  string
		want        []string
		wantOffsets [][2]int
	}{
		{"mapped and expanded", "\uff21\uff22 \ufb01x", []string{"A", "\uff22", " ", "f", "i", "x"}, [][2]int{{0, 3}, {3, 6}, {6, 7}, {7, 10}, {7, 10}, {10, 11}}},
		{"removal inside", "a\u200bb", []string{"a", "b"}, [][2]int{{0, 1}, {4, 5}}},
		{"removal first", "\u200bab", []string{"a", "b"}, [][2]int{{0, 3}, {3, 4}}},
		{"removal last", "ab\u200b", []string{"a", "b"}, [][2]int{{0, 1}, {1, 2}}},
		{"six-byte grapheme per character", "\uff76\uff9e!", []string{"\u30ab", "\u3099", "!"}, [][2]int{{0, 3}, {3, 6}, {6, 7}}},
		{"grapheme replaced whole", "e\u0301\u0323z", []string{"\u00e9", "z"}, [][2]int{{0, 1}, {5, 6}}},
		{"mark dropped with mapped base", "\uff21\u0301z", []string{"A", "z"}, [][2]int{{0, 3}, {5, 6}}},
		{"expansion", "x\u2026y", []string{"x", ".", ".", ".", "y"}, [][2]int{{0, 1}, {1, 4}, {1, 4}, {1, 4}, {4, 5}}},
		{"controls", "\t\u0001a", []string{" ", "a"}, [][2]int{{0, 1}, {2, 3}}},
		{"circled", "\u2460\u2461", []string{"1", "\u2461"}, [][2]int{{0, 3}, {3, 6}}},
		{"crlf", "a\r\nb", []string{"a", "\r", "\n", "b"}, [][2]int{{0, 1}, {1, 2}, {2, 3}, {3, 4}}},
		{"long grapheme", "e\u0301\u0301\u0301", []string{"e", "\u0301", "\u0301", "\u0301"}, [][2]int{{0, 1}, {1, 3}, {3, 5}, {5, 7}}},
		{"nothing to do", "plain text", []string{"p", "l", "a", "i", "n", " ", "t", "e", "x", "t"}, [][2]int{{0, 1}, {1, 2}, {2, 3}, {3, 4}, {4, 5}, {5, 6}, {6, 7}, {7, 8}, {8, 9}, {9, 10}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tk := unigramTokenizer(t, normalizer, "", charVocab(tt.want), false)
			got := tk.Encode(tt.text, EncodeOptions{Offsets: true})
			if !reflect.DeepEqual(got.Tokens, tt.want) || !reflect.DeepEqual(got.Offsets, tt.wantOffsets) {
				t.Errorf("Encode(%q) = %q %v, want %q %v", tt.text, got.Tokens, got.Offsets, tt.want, tt.wantOffsets)
			}
		})
	}
}
