package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

func TestLossyUTF8(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"valid", "héllo", "héllo"},
		{"lone continuation", "a\x80b", "a\uFFFDb"},
		{"truncated 3-byte is one subpart", "a\xE2\x82b", "a\uFFFDb"},
		{"truncated 4-byte", "\xF0\x9F\x98", "\uFFFD"},
		{"surrogate is three", "\xED\xA0\x80", "\uFFFD\uFFFD\uFFFD"},
		{"overlong", "\xC0\x80", "\uFFFD\uFFFD"},
		{"E0 overlong", "\xE0\x80\x80", "\uFFFD\uFFFD\uFFFD"},
		{"above U+10FFFF", "\xF4\x90\x80\x80", "\uFFFD\uFFFD\uFFFD\uFFFD"},
		{"FF", "x\xFFy", "x\uFFFDy"},
		{"truncated then ascii", "\xF1\x80x", "\uFFFDx"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, pos := lossyUTF8(tt.in, nil, nil)
			if got != tt.want {
				t.Errorf("lossyUTF8(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if len(pos) != len(got)+1 || int(pos[len(got)]) != len(tt.in) {
				t.Errorf("lossyUTF8(%q) positions %v do not cover the input", tt.in, pos)
			}
		})
	}
}

// TestEncodeBERT pins behaviours the Go libraries we evaluated got wrong
// (see the tokenizer notes): Unicode whitespace, format characters, accents
// in NFC, U+FFFD removal, CJK padding, byte offsets after multi-byte
// characters, and special tokens written in the text.
func TestEncodeBERT(t *testing.T) {
	tk := loadTestTokenizer(t, "minilm")
	tests := []struct {
		name        string
		text        string
		wantTokens  []string
		wantOffsets [][2]int
	}{
		{"nbsp is whitespace", "hello\u00a0world", []string{"hello", "world"}, [][2]int{{0, 5}, {7, 12}}},
		{"format chars removed", "\u200eLRM mark\u200e", []string{"l", "##rm", "mark"}, [][2]int{{3, 4}, {4, 6}, {7, 11}}},
		{"accents stripped", "Für zurück", []string{"fur", "zur", "##uck"}, [][2]int{{0, 4}, {5, 8}, {8, 12}}},
		{"invalid byte removed", "hello \xff world", []string{"hello", "world"}, [][2]int{{0, 5}, {8, 13}}},
		{"cjk split per char", "中文ok", []string{"中", "文", "ok"}, [][2]int{{0, 3}, {3, 6}, {6, 8}}},
		{"special token in text", "a [MASK] b", []string{"a", "[MASK]", "b"}, [][2]int{{0, 1}, {2, 8}, {9, 10}}},
		{"empty", "", nil, nil},
		{"only controls", "\x00\x01\ufffd", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tk.Encode(tt.text, EncodeOptions{Offsets: true})
			if len(got.Tokens) != 0 || len(tt.wantTokens) != 0 {
				if !reflect.DeepEqual(got.Tokens, tt.wantTokens) {
					t.Errorf("Encode(%q) tokens = %q, want %q", tt.text, got.Tokens, tt.wantTokens)
				}
				if !reflect.DeepEqual(got.Offsets, tt.wantOffsets) {
					t.Errorf("Encode(%q) offsets = %v, want %v", tt.text, got.Offsets, tt.wantOffsets)
				}
			}
		})
	}
}

func TestEncodeOptions(t *testing.T) {
	tk := loadTestTokenizer(t, "minilm")
	text := "one two three four five"
	tests := []struct {
		name    string
		opts    EncodeOptions
		wantIDs []int32
		wantSTM []int32
	}{
		{"plain", EncodeOptions{}, []int32{2028, 2048, 2093, 2176, 2274}, []int32{0, 0, 0, 0, 0}},
		{"special", EncodeOptions{AddSpecialTokens: true}, []int32{101, 2028, 2048, 2093, 2176, 2274, 102}, []int32{1, 0, 0, 0, 0, 0, 1}},
		{"right 4", EncodeOptions{AddSpecialTokens: true, MaxLength: 4}, []int32{101, 2028, 2048, 102}, []int32{1, 0, 0, 1}},
		{"left 4", EncodeOptions{AddSpecialTokens: true, MaxLength: 4, TruncateLeft: true}, []int32{101, 2176, 2274, 102}, []int32{1, 0, 0, 1}},
		{"no room", EncodeOptions{AddSpecialTokens: true, MaxLength: 1}, []int32{101, 102}, []int32{1, 1}},
		{"plain right 2", EncodeOptions{MaxLength: 2}, []int32{2028, 2048}, []int32{0, 0}},
		{"longer than text", EncodeOptions{AddSpecialTokens: true, MaxLength: 100}, []int32{101, 2028, 2048, 2093, 2176, 2274, 102}, []int32{1, 0, 0, 0, 0, 0, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tk.Encode(text, tt.opts)
			if !reflect.DeepEqual(got.IDs, tt.wantIDs) {
				t.Errorf("Encode(%q, %+v) ids = %v, want %v", text, tt.opts, got.IDs, tt.wantIDs)
			}
			if !reflect.DeepEqual(got.SpecialTokensMask, tt.wantSTM) {
				t.Errorf("Encode(%q, %+v) special tokens mask = %v, want %v", text, tt.opts, got.SpecialTokensMask, tt.wantSTM)
			}
		})
	}
}

func TestPad(t *testing.T) {
	tk := loadTestTokenizer(t, "minilm")
	for _, left := range []bool{false, true} {
		e := tk.Encode("hello", EncodeOptions{AddSpecialTokens: true, Offsets: true})
		e.Pad(5, 0, 0, "[PAD]", left)
		want := Encoding{
			IDs: []int32{101, 7592, 102, 0, 0}, TypeIDs: []int32{0, 0, 0, 0, 0},
			AttentionMask: []int32{1, 1, 1, 0, 0}, SpecialTokensMask: []int32{1, 0, 1, 1, 1},
			Offsets: [][2]int{{0, 0}, {0, 5}, {0, 0}, {0, 0}, {0, 0}},
			Tokens:  []string{"[CLS]", "hello", "[SEP]", "[PAD]", "[PAD]"},
		}
		if left {
			want = Encoding{
				IDs: []int32{0, 0, 101, 7592, 102}, TypeIDs: []int32{0, 0, 0, 0, 0},
				AttentionMask: []int32{0, 0, 1, 1, 1}, SpecialTokensMask: []int32{1, 1, 1, 0, 1},
				Offsets: [][2]int{{0, 0}, {0, 0}, {0, 0}, {0, 5}, {0, 0}},
				Tokens:  []string{"[PAD]", "[PAD]", "[CLS]", "hello", "[SEP]"},
			}
		}
		if !reflect.DeepEqual(e, want) {
			t.Errorf("Pad(5, left=%v) = %+v, want %+v", left, e, want)
		}
		e.Pad(3, 0, 0, "[PAD]", left) // shorter than the encoding: no change
		if !reflect.DeepEqual(e, want) {
			t.Errorf("Pad(3) changed the encoding: %+v", e)
		}
	}
}

func TestTokenizerInfo(t *testing.T) {
	tests := []struct {
		name      string
		vocab     int
		pad       int32
		nSpecial  int
		nPair     int
		tok       string
		wantTokID int32
	}{
		{"minilm", 30522, 0, 2, 3, "[SEP]", 102},
		{"bert-cased-wp", 8000, 0, 2, 3, "[CLS]", 2},
		{"roberta-bpe", 7961, 1, 2, 4, "<s>", 0},
		{"llama3", 128256, 128001, 0, 0, "<|begin_of_text|>", 128000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tk := loadTestTokenizer(t, tt.name)
			if got := tk.VocabSize(); got != tt.vocab {
				t.Errorf("VocabSize() = %d, want %d", got, tt.vocab)
			}
			if got, ok := tk.PadID(); !ok || got != tt.pad {
				t.Errorf("PadID() = %d, %v, want %d, true", got, ok, tt.pad)
			}
			if got := tk.SpecialTokensCount(); got != tt.nSpecial {
				t.Errorf("SpecialTokensCount() = %d, want %d", got, tt.nSpecial)
			}
			if got := tk.PairSpecialTokensCount(); got != tt.nPair {
				t.Errorf("PairSpecialTokensCount() = %d, want %d", got, tt.nPair)
			}
			if got, ok := tk.TokenToID(tt.tok); !ok || got != tt.wantTokID {
				t.Errorf("TokenToID(%q) = %d, %v, want %d, true", tt.tok, got, ok, tt.wantTokID)
			}
			if _, ok := tk.TokenToID("no such token, surely"); ok {
				t.Errorf("TokenToID(unknown) found a token")
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	model := `"model":{"type":"WordPiece","unk_token":"[UNK]","vocab":{"[UNK]":0}}`
	tests := []struct {
		name, json, want string
	}{
		{"not json", `{`, "tokenizer: parse tokenizer.json"},
		{"no model", `{"model":null}`, "tokenizer: tokenizer.json has no model"},
		{"normalizer", `{"normalizer":{"type":"Nmt"},` + model + `}`, `tokenizer: unsupported normalizer type "Nmt"`},
		{"nested normalizer", `{"normalizer":{"type":"Sequence","normalizers":[{"type":"NFKC"},{"type":"Nmt"}]},` + model + `}`, `tokenizer: unsupported normalizer type "Nmt"`},
		{"pre_tokenizer", `{"pre_tokenizer":{"type":"UnicodeScripts"},` + model + `}`, `tokenizer: unsupported pre_tokenizer type "UnicodeScripts"`},
		{"model", `{"model":{"type":"WordLevel","vocab":{}}}`, `tokenizer: unsupported model type "WordLevel"`},
		{"precompiled without charsmap", `{"normalizer":{"type":"Precompiled"},` + model + `}`, `tokenizer: Precompiled: no precompiled_charsmap`},
		{"precompiled truncated", `{"normalizer":{"type":"Precompiled","precompiled_charsmap":"EAAAAA=="},` + model + `}`, `tokenizer: Precompiled: charsmap trie of 16 bytes`},
		{"replace bad regex", `{"normalizer":{"type":"Replace","pattern":{"Regex":"(a"},"content":""},` + model + `}`, `tokenizer: Replace: pattern "(a"`},
		{"metaspace scheme", `{"pre_tokenizer":{"type":"Metaspace","prepend_scheme":"sometimes"},` + model + `}`, `unknown prepend_scheme "sometimes"`},
		{"unigram unk", `{"model":{"type":"Unigram","unk_id":3,"vocab":[["a",-1.0]]}}`, `tokenizer: Unigram: unk_id 3 is not in the vocabulary`},
		{"post_processor", `{"post_processor":{"type":"NoSuchProcessor"},` + model + `}`, `tokenizer: unsupported post_processor type "NoSuchProcessor"`},
		{"missing unk", `{"model":{"type":"WordPiece","unk_token":"[UNK]","vocab":{"a":0}}}`, `unk_token "[UNK]" is not in the vocabulary`},
		{"pair template without special", `{"post_processor":{"type":"TemplateProcessing","single":[],"pair":[{"SpecialToken":{"id":"[SEP]","type_id":0}}],"special_tokens":{}},` + model + `}`, `missing special token "[SEP]"`},
		{"template sequence id", `{"post_processor":{"type":"TemplateProcessing","single":[],"pair":[{"Sequence":{"id":"C","type_id":0}}],"special_tokens":{}},` + model + `}`, `pair: unknown sequence "C"`},
		{"template without special", `{"post_processor":{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"[CLS]","type_id":0}}],"special_tokens":{}},` + model + `}`, `missing special token "[CLS]"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load([]byte(tt.json))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load(%s) error = %v, want it to contain %q", tt.json, err, tt.want)
			}
		})
	}
	if _, err := LoadFile(filepath.Join(t.TempDir(), "missing.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadFile(missing) error = %v, want os.ErrNotExist", err)
	}
}

// TestPathological checks that inputs built to be slow finish (no timing
// assertion) and produce sane encodings.
func TestPathological(t *testing.T) {
	tests := []struct {
		name string
		text string
	}{
		{"1 MB word", strings.Repeat("a", 1<<20)},
		{"1 MB word of multibyte letters", strings.Repeat("ж", 1<<19)},
		{"100k spaces", strings.Repeat(" ", 100_000)},
		{"combining marks", "a" + strings.Repeat("\u0301", 200_000)},
		{"combining marks after CJK", strings.Repeat("中\u0301\u0323", 50_000)},
		{"punctuation run", strings.Repeat("!?", 200_000)},
		{"special tokens", strings.Repeat("[CLS][SEP]", 50_000)},
		{"almost special tokens", strings.Repeat("[CLS", 100_000)},
		{"invalid bytes", strings.Repeat("\xff\xe2\x82", 100_000)},
		{"99-char words", strings.Repeat(strings.Repeat("𝔘", 99)+" ", 2_000)},
	}
	for _, name := range []string{"minilm", "bert-cased-wp"} {
		tk := loadTestTokenizer(t, name)
		for _, tt := range tests {
			t.Run(name+"/"+tt.name, func(t *testing.T) {
				e := tk.Encode(tt.text, EncodeOptions{AddSpecialTokens: true, Offsets: true})
				checkEncoding(t, tk, tt.text, &e)
				e = tk.Encode(tt.text, EncodeOptions{AddSpecialTokens: true, MaxLength: 512, TruncateLeft: true})
				if len(e.IDs) > 512 {
					t.Errorf("Encode(%d bytes, MaxLength 512) = %d tokens", len(tt.text), len(e.IDs))
				}
			})
		}
	}
}

// checkEncoding checks the invariants every encoding has: parallel slices,
// ids in the vocabulary, offsets ordered and in range on character
// boundaries of the input.
func checkEncoding(t *testing.T, tk *Tokenizer, text string, e *Encoding) {
	t.Helper()
	n := len(e.IDs)
	if len(e.TypeIDs) != n || len(e.AttentionMask) != n || len(e.SpecialTokensMask) != n {
		t.Fatalf("Encode(%q): slice lengths %d/%d/%d/%d differ", clip(text), n, len(e.TypeIDs), len(e.AttentionMask), len(e.SpecialTokensMask))
	}
	if e.Offsets != nil && (len(e.Offsets) != n || len(e.Tokens) != n) {
		t.Fatalf("Encode(%q): %d ids, %d offsets, %d tokens", clip(text), n, len(e.Offsets), len(e.Tokens))
	}
	valid := utf8.ValidString(text)
	for i, id := range e.IDs {
		if id < 0 || int(id) >= tk.VocabSize() {
			t.Fatalf("Encode(%q): id %d out of vocabulary", clip(text), id)
		}
		if e.Offsets == nil {
			continue
		}
		o := e.Offsets[i]
		if o[0] < 0 || o[0] > o[1] || o[1] > len(text) {
			t.Fatalf("Encode(%q): offsets %v out of range (len %d)", clip(text), o, len(text))
		}
		if valid && (!boundary(text, o[0]) || !boundary(text, o[1])) {
			t.Fatalf("Encode(%q): offsets %v not on character boundaries", clip(text), o)
		}
	}
}

func boundary(s string, i int) bool { return i == len(s) || utf8.RuneStart(s[i]) }

func FuzzEncode(f *testing.F) {
	for _, it := range loadCorpus(f)[:200] {
		f.Add(it.raw, false, 0)
	}
	f.Add("a [MASK] b\xff", true, 5)
	f.Add("中\u0301文 \u200e", true, -1)
	f.Add("\u2581x  \uff76\uff9e e\u0301\u0323 <mask> \u2460\u200b\ufdfa \u1100\u1161\u11a8", false, 7)
	f.Add("x <mask>  <s>it's <|endoftext|><|im_start|>\r\n  12345 ▁<0x41>\u3000<mask>", true, 9)
	tks := []*Tokenizer{loadTestTokenizer(f, "minilm"), loadTestTokenizer(f, "bert-cased-wp")}
	for _, name := range bpeFamilies {
		tks = append(tks, loadTestTokenizer(f, name))
	}
	for _, name := range spmFamilies {
		tks = append(tks, loadTestTokenizer(f, name))
	}
	f.Fuzz(func(t *testing.T, text string, left bool, maxLen int) {
		for _, tk := range tks {
			opts := EncodeOptions{AddSpecialTokens: true, MaxLength: maxLen % 1024, TruncateLeft: left, Offsets: true}
			e := tk.Encode(text, opts)
			checkEncoding(t, tk, text, &e)
			if opts.MaxLength > tk.SpecialTokensCount() && len(e.IDs) > opts.MaxLength {
				t.Fatalf("Encode(%q, %+v) = %d tokens", clip(text), opts, len(e.IDs))
			}
			ids := tk.Encode(text, EncodeOptions{AddSpecialTokens: true, MaxLength: opts.MaxLength, TruncateLeft: left})
			if !reflect.DeepEqual(ids.IDs, e.IDs) {
				t.Fatalf("Encode(%q): ids differ with and without offsets", clip(text))
			}
		}
	})
}

// TestSequences checks that Sequence normalizers and pre-tokenizers compose:
// minilm rewritten with Sequence wrappers (and a redundant WhitespaceSplit)
// must encode the whole corpus exactly as the original.
func TestSequences(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "minilm.json"))
	if err != nil {
		t.Fatal(err)
	}
	var file map[string]json.RawMessage
	if err := json.Unmarshal(data, &file); err != nil {
		t.Fatal(err)
	}
	file["normalizer"] = json.RawMessage(`{"type":"Sequence","normalizers":[` + string(file["normalizer"]) + `]}`)
	file["pre_tokenizer"] = json.RawMessage(`{"type":"Sequence","pretokenizers":[{"type":"WhitespaceSplit"},` +
		`{"type":"Sequence","pretokenizers":[` + string(file["pre_tokenizer"]) + `,{"type":"WhitespaceSplit"}]}]}`)
	s, err := json.Marshal(file)
	if err != nil {
		t.Fatal(err)
	}
	seq, err := Load(s)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := seq.pre.(*sequencePreTokenizer); !ok {
		t.Fatalf("pre-tokenizer is %T, want a sequence", seq.pre)
	}
	orig := loadTestTokenizer(t, "minilm")
	opts := EncodeOptions{AddSpecialTokens: true, Offsets: true}
	for _, it := range loadCorpus(t) {
		got, want := seq.Encode(it.raw, opts), orig.Encode(it.raw, opts)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Encode(%q) with sequences = %v, want %v", clip(it.raw), got.Tokens, want.Tokens)
		}
	}
}

// TestConcurrentEncode shares one Tokenizer between goroutines (run with
// -race): pooled scratch must never leak between calls.
func TestConcurrentEncode(t *testing.T) {
	tk := loadTestTokenizer(t, "minilm")
	corpus := loadCorpus(t)
	opts := EncodeOptions{AddSpecialTokens: true, MaxLength: 128, Offsets: true}
	want := make([]Encoding, len(corpus))
	for i, it := range corpus {
		want[i] = tk.Encode(it.raw, opts)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < len(corpus); i += 2 {
				if got := tk.Encode(corpus[i].raw, opts); !reflect.DeepEqual(got, want[i]) {
					errs <- fmt.Sprintf("Encode(%q) concurrently = %v, want %v", clip(corpus[i].raw), got.IDs, want[i].IDs)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}
