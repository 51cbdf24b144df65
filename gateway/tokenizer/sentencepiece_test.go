package tokenizer

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// unigramTokenizer builds a tokenizer.json around a Unigram model with
// the given normalizer, pre-tokenizer (JSON, "" for none) and vocabulary
// (JSON list of [piece, score]; "<unk>" is prepended with id 0).
func unigramTokenizer(t *testing.T, normalizer, preTokenizer, vocab string, byteFallback bool) *Tokenizer {
	t.Helper()
	var pieces []json.RawMessage
	if err := json.Unmarshal([]byte(vocab), &pieces); err != nil {
		t.Fatal(err)
	}
	pieces = append([]json.RawMessage{json.RawMessage(`["<unk>", 0]`)}, pieces...)
	raw := func(s string) json.RawMessage {
		if s == "" {
			return json.RawMessage("null")
		}
		return json.RawMessage(s)
	}
	file, err := json.Marshal(map[string]any{
		"version":       "1.0",
		"added_tokens":  []any{},
		"normalizer":    raw(normalizer),
		"pre_tokenizer": raw(preTokenizer),
		"model":         map[string]any{"type": "Unigram", "unk_id": 0, "vocab": pieces, "byte_fallback": byteFallback},
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

// charVocab is a Unigram vocabulary of the distinct characters of tokens.
func charVocab(tokens []string) string {
	seen := map[rune]bool{}
	var v [][2]any
	for _, tok := range tokens {
		for _, r := range tok {
			if !seen[r] {
				seen[r] = true
				v = append(v, [2]any{string(r), -1})
			}
		}
	}
	b, _ := json.Marshal(v)
	if v == nil {
		return "[]"
	}
	return string(b)
}

// TestComponents checks the normalizers and pre-tokenizers of the
// SentencePiece families against the Rust library (expectations made with
// tokenizers 0.23.2). perChar rows use a vocabulary of single characters,
// so every normalized character shows its own span; the others use only
// <unk>, so each pre-tokenized word comes out as one fused token.
func TestComponents(t *testing.T) {
	tests := []struct {
		name, normalizer, pre, text string
		perChar                     bool
		want                        []string
		wantOffsets                 [][2]int
	}{
		{"nfkc composes across characters", `{"type": "NFKC"}`, "", "e\u0301 a\u0323\u0302x", true, []string{"é", " ", "ậ", "x"}, [][2]int{{0, 1}, {3, 4}, {4, 5}, {9, 10}}},
		{"nfkc compatibility", `{"type": "NFKC"}`, "", "ﬁ ｶﾞ ①", true, []string{"f", "i", " ", "ガ", " ", "1"}, [][2]int{{0, 3}, {0, 3}, {3, 4}, {4, 7}, {10, 11}, {11, 14}}},
		{"nfkc ligature expands", `{"type": "NFKC"}`, "", "xǄy", true, []string{"x", "D", "Ž", "y"}, [][2]int{{0, 1}, {1, 3}, {1, 3}, {3, 4}}},
		{"nfkc hangul", `{"type": "NFKC"}`, "", "\u1100\u1161\u11a8 한", true, []string{"각", " ", "한"}, [][2]int{{0, 3}, {9, 10}, {10, 13}}},
		{"nfkc reorder", `{"type": "NFKC"}`, "", "q\u0307\u0323 ḋ\u0323", true, []string{"q", "\u0323", "\u0307", " ", "ḍ", "\u0307"}, [][2]int{{0, 1}, {1, 3}, {3, 5}, {5, 6}, {6, 9}, {9, 11}}},
		{"nfc keeps compatibility", `{"type": "NFC"}`, "", "ﬁ e\u0301", true, []string{"ﬁ", " ", "é"}, [][2]int{{0, 3}, {3, 4}, {4, 5}}},
		{"nfkd", `{"type": "NFKD"}`, "", "ﬁé 한", true, []string{"f", "i", "e", "\u0301", " ", "ᄒ", "\u1161", "\u11ab"}, [][2]int{{0, 3}, {0, 3}, {3, 5}, {3, 5}, {5, 6}, {6, 9}, {6, 9}, {6, 9}}},
		{"nfkc leading mark", `{"type": "NFKC"}`, "", "\u0344a", true, []string{"\u0308", "\u0301", "a"}, [][2]int{{0, 2}, {0, 2}, {2, 3}}},
		{"replace string", `{"type": "Replace", "pattern": {"String": "ab"}, "content": "x"}`, "", "zabab abc", true, []string{"z", "x", "x", " ", "x", "c"}, [][2]int{{0, 1}, {2, 3}, {4, 5}, {5, 6}, {7, 8}, {8, 9}}},
		{"replace regex runs", `{"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": "_"}`, "", "a  b c     d", true, []string{"a", "_", "b", " ", "c", "_", "d"}, [][2]int{{0, 1}, {2, 3}, {3, 4}, {4, 5}, {5, 6}, {10, 11}, {11, 12}}},
		{"replace regex engine", `{"type": "Replace", "pattern": {"Regex": "(?<=a)b+"}, "content": "XY"}`, "", "abbb cb ab", true, []string{"a", "X", "Y", " ", "c", "b", " ", "a", "X", "Y"}, [][2]int{{0, 1}, {3, 4}, {3, 4}, {4, 5}, {5, 6}, {6, 7}, {7, 8}, {8, 9}, {9, 10}, {9, 10}}},
		{"replace to nothing", `{"type": "Replace", "pattern": {"String": "-"}, "content": ""}`, "", "a-b -c", true, []string{"a", "b", " ", "c"}, [][2]int{{0, 1}, {2, 3}, {3, 4}, {5, 6}}},
		{"strip", `{"type": "Sequence", "normalizers": [{"type": "Strip", "strip_left": true, "strip_right": true}, {"type": "Replace", "pattern": {"String": " "}, "content": "_"}]}`, "", "  a b \u00a0", true, []string{"a", "_", "b"}, [][2]int{{2, 3}, {3, 4}, {4, 5}}},
		{"prepend", `{"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}`, "", "héllo world", true, []string{"▁", "h", "é", "l", "l", "o", "▁", "w", "o", "r", "l", "d"}, [][2]int{{0, 1}, {0, 1}, {1, 3}, {3, 4}, {4, 5}, {5, 6}, {6, 7}, {7, 8}, {8, 9}, {9, 10}, {10, 11}, {11, 12}}},
		{"metaspace always", "", `{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true}`, "Hey  friend ▁x", false, []string{"▁Hey", "▁", "▁friend", "▁", "▁x"}, [][2]int{{0, 3}, {3, 4}, {4, 11}, {11, 12}, {12, 16}}},
		{"metaspace first", "", `{"type": "Sequence", "pretokenizers": [{"type": "WhitespaceSplit"}, {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": true}]}`, "Hey friend", false, []string{"▁Hey", "friend"}, [][2]int{{0, 3}, {4, 10}}},
		{"metaspace never no split", "", `{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "never", "split": false}`, "Hey friend  x", false, []string{"Hey▁friend▁▁x"}, [][2]int{{0, 13}}},
		{"metaspace legacy", "", `{"type": "Metaspace", "replacement": "▁", "add_prefix_space": true}`, "Hey friend", false, []string{"▁Hey", "▁friend"}, [][2]int{{0, 3}, {3, 10}}},
		{"whitespace", "", `{"type": "Whitespace"}`, "Hey, you_2!! é-x\u00a0y", false, []string{"Hey", ",", "you_2", "!!", "é", "-", "x", "y"}, [][2]int{{0, 3}, {3, 4}, {5, 10}, {10, 12}, {13, 15}, {15, 16}, {16, 17}, {19, 20}}},
		{"punctuation", "", `{"type": "Punctuation"}`, "a,,b!?c.", false, []string{"a", ",", ",", "b", "!", "?", "c", "."}, [][2]int{{0, 1}, {1, 2}, {2, 3}, {3, 4}, {4, 5}, {5, 6}, {6, 7}, {7, 8}}},
		{"punctuation merged previous", "", `{"type": "Punctuation", "behavior": "MergedWithPrevious"}`, "a,,b!c", false, []string{"a,", ",", "b!", "c"}, [][2]int{{0, 2}, {2, 3}, {3, 5}, {5, 6}}},
		{"punctuation merged next", "", `{"type": "Punctuation", "behavior": "MergedWithNext"}`, "a,,b!c", false, []string{"a", ",", ",b", "!c"}, [][2]int{{0, 1}, {1, 2}, {2, 4}, {4, 6}}},
		{"punctuation removed", "", `{"type": "Punctuation", "behavior": "Removed"}`, "a,,b!c", false, []string{"a", "b", "c"}, [][2]int{{0, 1}, {3, 4}, {5, 6}}},
		{"digits contiguous", "", `{"type": "Digits", "individual_digits": false}`, "a123b4٣", false, []string{"a", "123", "b", "4٣"}, [][2]int{{0, 1}, {1, 4}, {4, 5}, {5, 8}}},
		{"digits individual", "", `{"type": "Digits", "individual_digits": true}`, "a123b", false, []string{"a", "1", "2", "3", "b"}, [][2]int{{0, 1}, {1, 2}, {2, 3}, {3, 4}, {4, 5}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vocab := "[]"
			if tt.perChar {
				vocab = charVocab(tt.want)
			}
			tk := unigramTokenizer(t, tt.normalizer, tt.pre, vocab, false)
			got := tk.Encode(tt.text, EncodeOptions{Offsets: true})
			if !reflect.DeepEqual(got.Tokens, tt.want) || !reflect.DeepEqual(got.Offsets, tt.wantOffsets) {
				t.Errorf("Encode(%q) = %q %v, want %q %v", tt.text, got.Tokens, got.Offsets, tt.want, tt.wantOffsets)
			}
		})
	}
}

// TestUnigram pins the best-path rules of Rust's Unigram (expectations
// made with tokenizers 0.23.2): ties keep the earliest start, unknown
// characters fuse and keep their text as token, byte fallback.
func TestUnigram(t *testing.T) {
	tests := []struct {
		name, vocab  string
		byteFallback bool
		text         string
		wantIDs      []int32
		want         []string
		wantOffsets  [][2]int
	}{
		{"tie keeps the earliest start", `[["a", -1], ["b", -1], ["ab", -2], ["aa", -2]]`, false, "aab", []int32{1, 3}, []string{"a", "ab"}, [][2]int{{0, 1}, {1, 3}}},
		{"dash tie", `[["-", -3], ["--", -4]]`, false, "---", []int32{1, 2}, []string{"-", "--"}, [][2]int{{0, 1}, {1, 3}}},
		{"best path", `[["h", -5], ["e", -5], ["l", -5], ["o", -5], ["hell", -3], ["ello", -2.5], ["he", -2], ["llo", -2]]`, false, "hello", []int32{7, 8}, []string{"he", "llo"}, [][2]int{{0, 2}, {2, 5}}},
		{"unknowns fuse", `[["x", -1], ["y", -1]]`, false, "x中文y中", []int32{1, 0, 2, 0}, []string{"x", "中文", "y", "中"}, [][2]int{{0, 1}, {1, 7}, {7, 8}, {8, 11}}},
		{"unknown beside a longer piece", `[["ab", -1], ["b", -1]]`, false, "abab aab", []int32{1, 1, 0, 1}, []string{"ab", "ab", " a", "ab"}, [][2]int{{0, 2}, {2, 4}, {4, 6}, {6, 8}}},
		{"byte fallback", `[["x", -1], ["<0xE4>", -5], ["<0xB8>", -5], ["<0xAD>", -5]]`, true, "x中x文", []int32{1, 2, 3, 4, 1, 0}, []string{"x", "<0xE4>", "<0xB8>", "<0xAD>", "x", "文"}, [][2]int{{0, 1}, {1, 4}, {1, 4}, {1, 4}, {4, 5}, {5, 8}}},
		{"fused run found as piece", `[["ab", -100], ["c", -1]]`, false, "abc", []int32{1, 2}, []string{"ab", "c"}, [][2]int{{0, 2}, {2, 3}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tk := unigramTokenizer(t, "", "", tt.vocab, tt.byteFallback)
			got := tk.Encode(tt.text, EncodeOptions{Offsets: true})
			if !reflect.DeepEqual(got.IDs, tt.wantIDs) || !reflect.DeepEqual(got.Tokens, tt.want) || !reflect.DeepEqual(got.Offsets, tt.wantOffsets) {
				t.Errorf("Encode(%q) = %v %q %v, want %v %q %v", tt.text, got.IDs, got.Tokens, got.Offsets, tt.wantIDs, tt.want, tt.wantOffsets)
			}
		})
	}
}

// spmFamilies are the SentencePiece (Unigram) tokenizers of the parity
// data: xlmr-precompiled is xlmr-unigram with the real nmt_nfkc charsmap of
// XLM-R, multilingual-e5 and bge-m3 in place of NFKC.
var spmFamilies = []string{"xlmr-unigram", "xlmr-precompiled"}

// TestPathologicalSentencePiece feeds the SentencePiece pipeline inputs
// built to be slow: the Unigram search is O(length × longest piece), NFKC
// and the charsmap work per character or grapheme, so each must finish
// quickly (the time is logged) with a sane encoding.
func TestPathologicalSentencePiece(t *testing.T) {
	tests := []struct {
		name string
		text string
	}{
		{"1 MB word", strings.Repeat("a", 1<<20)},
		{"1 MB word of multibyte letters", strings.Repeat("ж", 1<<19)},
		{"1 MB word without pieces", strings.Repeat("\U0001F600", 1<<18)},
		{"100k spaces", strings.Repeat(" ", 100_000)},
		{"100k metaspaces", strings.Repeat("▁", 100_000)},
		{"combining marks", "a" + strings.Repeat("\u0301", 200_000)},
		{"mixed combining classes", "a" + strings.Repeat("\u0301\u0323\u031b", 70_000)},
		{"combining marks after CJK", strings.Repeat("中\u0301\u0323", 50_000)},
		{"compatibility expansions", strings.Repeat("\ufdfa", 50_000)},
		{"hangul jamo", strings.Repeat("\u1100\u1161\u11a8", 70_000)},
		{"emoji zwj graphemes", strings.Repeat("👩\u200d👩\u200d👧\u200d👦", 20_000)},
		{"special tokens", strings.Repeat("<s></s><mask>", 30_000)},
		{"invalid bytes", strings.Repeat("\xff\xe2\x82", 100_000)},
	}
	for _, name := range spmFamilies {
		tk := loadTestTokenizer(t, name)
		for _, tt := range tests {
			t.Run(name+"/"+tt.name, func(t *testing.T) {
				start := time.Now()
				e := tk.Encode(tt.text, EncodeOptions{AddSpecialTokens: true, Offsets: true})
				checkEncoding(t, tk, tt.text, &e)
				t.Logf("%d bytes: %d tokens in %v", len(tt.text), len(e.IDs), time.Since(start))
				e = tk.Encode(tt.text, EncodeOptions{AddSpecialTokens: true, MaxLength: 512, TruncateLeft: true})
				if len(e.IDs) > 512 {
					t.Errorf("Encode(%d bytes, MaxLength 512) = %d tokens", len(tt.text), len(e.IDs))
				}
			})
		}
	}
}
