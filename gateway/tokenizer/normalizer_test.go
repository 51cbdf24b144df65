package tokenizer

import (
	"reflect"
	"testing"
)

// TestNormalizers checks the normalizers on their own, through a one-word
// WordPiece vocabulary: the expected token is the normalized text.
func TestNormalizers(t *testing.T) {
	tests := []struct {
		name, normalizer, text string
		want                   []string
		wantOffsets            [][2]int
	}{
		{"nfd reorders marks across characters", `{"type":"NFD"}`, "q\u0307\u0323", []string{"q\u0323\u0307"}, [][2]int{{0, 5}}},
		{"nfd decomposes", `{"type":"NFD"}`, "é", []string{"e\u0301"}, [][2]int{{0, 2}}},
		{"strip accents after nfd", `{"type":"Sequence","normalizers":[{"type":"NFD"},{"type":"StripAccents"}]}`, "éa", []string{"ea"}, [][2]int{{0, 3}}},
		{"lowercase dotted capital I is full lowercase", `{"type":"Lowercase"}`, "İ", []string{"i\u0307"}, [][2]int{{0, 2}}},
		{"lowercase final sigma is per character", `{"type":"Lowercase"}`, "ΟΔΟΣ", []string{"οδοσ"}, [][2]int{{0, 8}}},
		{"bert keeps unassigned code points", `{"type":"BertNormalizer","lowercase":false}`, "a\u0378b", []string{"a\u0378b"}, [][2]int{{0, 4}}},
		{"bert keeps noncharacters", `{"type":"BertNormalizer","lowercase":false}`, "a\uFFFEb", []string{"a\uFFFEb"}, [][2]int{{0, 5}}},
		{"bert removes format and private use", `{"type":"BertNormalizer","lowercase":false}`, "a\u200b\ue000b", []string{"ab"}, [][2]int{{0, 8}}},
		{"bert lowercase without strip", `{"type":"BertNormalizer","lowercase":true,"strip_accents":false}`, "ÉİA", []string{"éi\u0307a"}, [][2]int{{0, 5}}},
		{"bert strip without lowercase", `{"type":"BertNormalizer","lowercase":false,"strip_accents":true}`, "ÉA", []string{"EA"}, [][2]int{{0, 3}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tk := tinyTokenizer(t, tt.normalizer, `{"type":"WhitespaceSplit"}`, nil, tt.want...)
			got := tk.Encode(tt.text, EncodeOptions{Offsets: true})
			if !reflect.DeepEqual(got.Tokens, tt.want) || !reflect.DeepEqual(got.Offsets, tt.wantOffsets) {
				t.Errorf("Encode(%q) = %q %v, want %q %v", tt.text, got.Tokens, got.Offsets, tt.want, tt.wantOffsets)
			}
		})
	}
}
