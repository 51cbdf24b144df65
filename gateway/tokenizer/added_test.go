package tokenizer

import (
	"encoding/json"
	"reflect"
	"testing"
)

// tinyTokenizer builds a tokenizer.json around a small WordPiece vocabulary
// with the given normalizer, pre-tokenizer and added tokens.
func tinyTokenizer(t *testing.T, normalizer, preTokenizer string, added []addedTokenJSON, words ...string) *Tokenizer {
	t.Helper()
	vocab := map[string]int32{"[UNK]": 0}
	for _, w := range words {
		vocab[w] = int32(len(vocab))
	}
	for i := range added {
		added[i].ID = int32(len(vocab) + i)
	}
	model, err := json.Marshal(map[string]any{"type": "WordPiece", "unk_token": "[UNK]", "vocab": vocab})
	if err != nil {
		t.Fatal(err)
	}
	file, err := json.Marshal(map[string]any{
		"version":        "1.0",
		"added_tokens":   added,
		"normalizer":     json.RawMessage(normalizer),
		"pre_tokenizer":  json.RawMessage(preTokenizer),
		"model":          json.RawMessage(model),
		"post_processor": nil,
	})
	if err != nil {
		t.Fatal(err)
	}
	tk, err := Load(file)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return tk
}

// TestAddedTokens reproduces the added-vocabulary cases of the Rust
// library's own tests (added_vocabulary.rs): normalized matching, lstrip,
// rstrip and single_word.
func TestAddedTokens(t *testing.T) {
	tests := []struct {
		name        string
		added       []addedTokenJSON
		words       []string
		text        string
		wantTokens  []string
		wantOffsets [][2]int
	}{
		{
			name: "normalized lstrip rstrip and special",
			added: []addedTokenJSON{
				{Content: "my", LStrip: true, RStrip: true, Normalized: true},
				{Content: "name", Normalized: true},
				{Content: "ony", SingleWord: true, Normalized: true},
				{Content: "[CLS]", Special: true},
				{Content: "[SEP]", Special: true},
			},
			words:       []string{"is", "anthony"},
			text:        "[CLS] My name is Anthony [SEP]",
			wantTokens:  []string{"[CLS]", " my ", "name", "is", "anthony", "[SEP]"},
			wantOffsets: [][2]int{{0, 5}, {5, 9}, {9, 13}, {14, 16}, {17, 24}, {25, 30}},
		},
		{
			name:        "single word",
			added:       []addedTokenJSON{{Content: "<mask>", SingleWord: true, Normalized: true}},
			words:       []string{"my", "name", "a", "##<", "##mask", "##>", "<", "mask", ">", "##ony"},
			text:        "<mask> My name <mask> A<mask> <mask>ony <mask>",
			wantTokens:  []string{"<mask>", "my", "name", "<mask>", "a", "##<", "##mask", "##>", "<", "##mask", "##>", "##ony", "<mask>"},
			wantOffsets: [][2]int{{0, 6}, {7, 9}, {10, 14}, {15, 21}, {22, 23}, {23, 24}, {24, 28}, {28, 29}, {30, 31}, {31, 35}, {35, 36}, {36, 39}, {40, 46}},
		},
		{
			name:       "single word is unicode aware",
			added:      []addedTokenJSON{{Content: "<mask>", SingleWord: true, Normalized: true}},
			words:      []string{",", "-", "◌̰<mask>"},
			text:       "<mask>, <mask>- ◌̰<mask>",
			wantTokens: []string{"<mask>", ",", "<mask>", "-", "◌̰<mask>"},
		},
		{
			name:       "lstrip rstrip unicode spaces",
			added:      []addedTokenJSON{{Content: "<mask>", LStrip: true, RStrip: true, SingleWord: true, Normalized: true}},
			words:      []string{"hi", "there"},
			text:       "Hi <mask> there\t<mask>\t<mask>\u2000",
			wantTokens: []string{"hi", " <mask> ", "there", "\t<mask>\t", "<mask>\u2000"},
		},
		{
			name:       "leftmost longest",
			added:      []addedTokenJSON{{Content: "ab"}, {Content: "abc"}, {Content: "bcd"}},
			words:      []string{"d"},
			text:       "abcd",
			wantTokens: []string{"abc", "d"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tk := tinyTokenizer(t, `{"type":"Lowercase"}`, `{"type":"WhitespaceSplit"}`, tt.added, tt.words...)
			got := tk.Encode(tt.text, EncodeOptions{AddSpecialTokens: true, Offsets: true})
			if !reflect.DeepEqual(got.Tokens, tt.wantTokens) {
				t.Errorf("Encode(%q) tokens = %q, want %q", tt.text, got.Tokens, tt.wantTokens)
			}
			if tt.wantOffsets != nil && !reflect.DeepEqual(got.Offsets, tt.wantOffsets) {
				t.Errorf("Encode(%q) offsets = %v, want %v", tt.text, got.Offsets, tt.wantOffsets)
			}
		})
	}
}
