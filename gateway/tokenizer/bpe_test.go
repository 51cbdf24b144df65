package tokenizer

import (
	"encoding/json"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
)

// bpeFamilies are the BPE tokenizers of the parity data.
var bpeFamilies = []string{"roberta-bpe", "qwenstyle-bpe", "qwen3emb", "llama2", "llama3"}

// tinyBPE builds a tokenizer.json around a BPE model given as JSON fields
// (vocab, merges, flags), with no normalizer or pre-tokenizer unless given.
func tinyBPE(t *testing.T, model map[string]any, preTokenizer string) *Tokenizer {
	t.Helper()
	model["type"] = "BPE"
	m, err := json.Marshal(model)
	if err != nil {
		t.Fatal(err)
	}
	file, err := json.Marshal(map[string]any{"model": json.RawMessage(m), "pre_tokenizer": json.RawMessage(preTokenizer)})
	if err != nil {
		t.Fatal(err)
	}
	tk, err := Load(file)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return tk
}

func vocabOf(tokens ...string) map[string]int32 {
	v := map[string]int32{}
	for _, s := range tokens {
		v[s] = int32(len(v))
	}
	return v
}

// TestBPE pins the BPE model rules of Rust's bpe/model.rs and word.rs.
func TestBPE(t *testing.T) {
	bytes := make([]string, 0, 256)
	for b := 0; b < 256; b++ {
		bytes = append(bytes, "<0x"+strings.ToUpper(string("0123456789abcdef"[b>>4])+string("0123456789abcdef"[b&15]))+">")
	}
	tests := []struct {
		name        string
		model       map[string]any
		text        string
		wantTokens  []string
		wantOffsets [][2]int
	}{
		{
			name:       "lowest rank first, string merges",
			model:      map[string]any{"vocab": vocabOf("a", "b", "c", "ab", "bc", "abc"), "merges": []string{"b c", "a b", "a bc"}},
			text:       "abc",
			wantTokens: []string{"abc"}, wantOffsets: [][2]int{{0, 3}},
		},
		{
			name:       "lowest rank first, pair merges",
			model:      map[string]any{"vocab": vocabOf("a", "b", "c", "ab", "bc", "abc"), "merges": [][]string{{"a", "b"}, {"b", "c"}}},
			text:       "abc",
			wantTokens: []string{"ab", "c"}, wantOffsets: [][2]int{{0, 2}, {2, 3}},
		},
		{
			name:       "equal ranks merge leftmost first",
			model:      map[string]any{"vocab": vocabOf("a", "aa"), "merges": []string{"a a"}},
			text:       "aaaaa",
			wantTokens: []string{"aa", "aa", "a"},
		},
		{
			name:       "a later repeat of a merge keeps the later rank",
			model:      map[string]any{"vocab": vocabOf("a", "b", "c", "ab", "bc"), "merges": []string{"a b", "b c", "a b"}},
			text:       "abc",
			wantTokens: []string{"a", "bc"},
		},
		{
			name:       "ignore_merges takes a whole-word match",
			model:      map[string]any{"vocab": vocabOf("a", "b", "c", "ab", "abc"), "merges": []string{"a b"}, "ignore_merges": true},
			text:       "abc",
			wantTokens: []string{"abc"},
		},
		{
			name:       "unknown characters become unk, one each",
			model:      map[string]any{"vocab": vocabOf("<unk>", "a"), "merges": []string{}, "unk_token": "<unk>"},
			text:       "xya",
			wantTokens: []string{"<unk>", "<unk>", "a"}, wantOffsets: [][2]int{{0, 1}, {1, 2}, {2, 3}},
		},
		{
			name:       "fuse_unk joins consecutive unknowns",
			model:      map[string]any{"vocab": vocabOf("<unk>", "a"), "merges": []string{}, "unk_token": "<unk>", "fuse_unk": true},
			text:       "xéa",
			wantTokens: []string{"<unk>", "a"}, wantOffsets: [][2]int{{0, 3}, {3, 4}},
		},
		{
			name:       "no unk token: unknown characters vanish and offsets shift as in Rust",
			model:      map[string]any{"vocab": vocabOf("a", "b"), "merges": []string{}},
			text:       "xab",
			wantTokens: []string{"a", "b"}, wantOffsets: [][2]int{{0, 1}, {1, 2}},
		},
		{
			name:       "byte fallback",
			model:      map[string]any{"vocab": vocabOf(append([]string{"<unk>", "a"}, bytes...)...), "merges": []string{}, "unk_token": "<unk>", "byte_fallback": true},
			text:       "aé",
			wantTokens: []string{"a", "<0xC3>", "<0xA9>"}, wantOffsets: [][2]int{{0, 1}, {1, 3}, {1, 3}},
		},
		{
			name:       "prefix and suffix",
			model:      map[string]any{"vocab": vocabOf("a", "##b", "##c</w>", "##bc</w>"), "merges": []string{"##b ##c</w>"}, "continuing_subword_prefix": "##", "end_of_word_suffix": "</w>"},
			text:       "abc",
			wantTokens: []string{"a", "##bc</w>"}, wantOffsets: [][2]int{{0, 1}, {1, 3}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tk := tinyBPE(t, tt.model, "null")
			got := tk.Encode(tt.text, EncodeOptions{Offsets: true})
			if !reflect.DeepEqual(got.Tokens, tt.wantTokens) {
				t.Errorf("Encode(%q) tokens = %q, want %q", tt.text, got.Tokens, tt.wantTokens)
			}
			if tt.wantOffsets != nil && !reflect.DeepEqual(got.Offsets, tt.wantOffsets) {
				t.Errorf("Encode(%q) offsets = %v, want %v", tt.text, got.Offsets, tt.wantOffsets)
			}
		})
	}
}

func TestBPELoadErrors(t *testing.T) {
	tests := []struct {
		name, model, want string
	}{
		{"merge token missing", `{"type":"BPE","vocab":{"a":0},"merges":["a b"]}`, "uses a token not in the vocabulary"},
		{"merge result missing", `{"type":"BPE","vocab":{"a":0,"b":1},"merges":["a b"]}`, `result "ab" is not in the vocabulary`},
		{"merge line not two tokens", `{"type":"BPE","vocab":{"a":0},"merges":["ab"]}`, "is not two tokens"},
		{"merge pair of three", `{"type":"BPE","vocab":{"a":0},"merges":[["a","a","a"]]}`, "has 3 tokens, want 2"},
		{"merges not a list", `{"type":"BPE","vocab":{"a":0},"merges":7}`, "tokenizer: BPE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load([]byte(`{"model":` + tt.model + `}`))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load(%s) error = %v, want it to contain %q", tt.model, err, tt.want)
			}
		})
	}
}

// pieces runs a pre-tokenizer on text and returns the split texts.
func pieces(p preTokenizer, text string) []string {
	var n normString
	n.appendOriginal(text, 0)
	out := p.preTokenize(&n, []split{{start: 0, end: int32(len(n.s)), id: -1}}, nil)
	var got []string
	for _, sp := range out {
		got = append(got, string(n.s[sp.start:sp.end]))
	}
	return got
}

// TestScanners checks the hand-written scanners on the cases that broke
// the Go libraries we evaluated (see the tokenizer notes).
func TestScanners(t *testing.T) {
	tests := []struct {
		name, pattern, text string
		want                []string
	}{
		{"gpt2 lookahead leaves one space", gpt2Pattern, "a        /*", []string{"a", "       ", " /*"}},
		{"gpt2 trailing spaces", gpt2Pattern, "a  ", []string{"a", "  "}},
		{"gpt2 contractions are case-sensitive", gpt2Pattern, "it's IT'S", []string{"it", "'s", " IT", "'", "S"}},
		{"gpt2 numbers and punctuation", gpt2Pattern, "2000,2001 ...x", []string{"2000", ",", "2001", " ...", "x"}},
		{"gpt2 tab before word", gpt2Pattern, "a\t\tb", []string{"a", "\t", "\t", "b"}},
		{"qwen contractions ignore case", qwenPattern, "IT'S we'Re", []string{"IT", "'S", " we", "'Re"}},
		{"qwen punctuation prefixes a word", qwenPattern, "bitbucket-cloud", []string{"bitbucket", "-cloud"}},
		{"qwen punctuation runs", qwenPattern, "git checkout [-f|--ours", []string{"git", " checkout", " [-", "f", "|--", "ours"}},
		{"qwen digits one by one", qwenPattern, "organization 123", []string{"organization", " ", "1", "2", "3"}},
		{"qwen newlines", qwenPattern, "a \n\n  b", []string{"a", " \n\n", " ", " b"}},
		{"qwen punctuation keeps newlines", qwenPattern, "x;\r\n\ty", []string{"x", ";\r\n", "\ty"}},
		{"llama3 digits by three", llama3Pattern, "1234567", []string{"123", "456", "7"}},
		{"unicode classes", qwenPattern, "\u00a0über ٣٤ 中文", []string{"\u00a0über", " ", "٣", "٤", " 中文"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := buildSplit(json.RawMessage(`{"pattern":{"Regex":` + jsonString(tt.pattern) + `},"behavior":"Isolated","invert":false}`))
			if err != nil {
				t.Fatal(err)
			}
			if p.scan == nil {
				t.Fatalf("pattern %q has no scanner", tt.pattern)
			}
			if got := pieces(p, tt.text); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Split(%q) = %q, want %q", tt.text, got, tt.want)
			}
		})
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestScannersMatchRegexp2 runs every corpus text through each scanner and
// through regexp2 with the same pattern: they must split identically.
func TestScannersMatchRegexp2(t *testing.T) {
	corpus := loadCorpus(t)
	for _, pattern := range []string{gpt2Pattern, qwenPattern, llama3Pattern} {
		re := regexp2.MustCompile(pattern, regexp2.None)
		sc := scannerFor(pattern)
		bad := 0
		for _, it := range corpus {
			if !utf8.ValidString(it.raw) {
				continue
			}
			var want []string
			runes := []rune(it.raw)
			m, _ := re.FindRunesMatch(runes)
			for m != nil {
				want = append(want, string(runes[m.Index:m.Index+m.Length]))
				m, _ = re.FindNextMatch(m)
			}
			var got []string
			s := []byte(it.raw)
			for i := 0; i < len(s); {
				j := sc.next(s, i)
				got = append(got, string(s[i:j]))
				i = j
			}
			if !reflect.DeepEqual(got, want) && bad < 5 {
				bad++
				t.Errorf("scanner %.20q on %q = %q, regexp2 %q", pattern, clip(it.raw), got, want)
			}
		}
	}
}

// TestSplitBehaviors follows the Split tests of Rust's pre_tokenizers/split.rs.
func TestSplitBehaviors(t *testing.T) {
	const text = "How are you doing?"
	tests := []struct {
		behavior, pattern string
		invert            bool
		want              []string
	}{
		{"Removed", `{"String":" "}`, false, []string{"How", "are", "you", "doing?"}},
		{"Isolated", `{"String":" "}`, false, []string{"How", " ", "are", " ", "you", " ", "doing?"}},
		{"MergedWithPrevious", `{"String":" "}`, false, []string{"How ", "are ", "you ", "doing?"}},
		{"MergedWithNext", `{"String":" "}`, false, []string{"How", " are", " you", " doing?"}},
		{"Contiguous", `{"String":"o"}`, false, []string{"H", "o", "w are y", "o", "u d", "o", "ing?"}},
		{"Removed", `{"Regex":"\\w+|[^\\w\\s]+"}`, true, []string{"How", "are", "you", "doing", "?"}},
		{"MergedWithPrevious", `{"Regex":"\\s+(?!\\S)"}`, false, []string{"How are you doing?"}},
	}
	for _, tt := range tests {
		t.Run(tt.behavior+" "+tt.pattern, func(t *testing.T) {
			p, err := buildSplit(json.RawMessage(`{"pattern":` + tt.pattern + `,"behavior":"` + tt.behavior + `","invert":` + map[bool]string{true: "true", false: "false"}[tt.invert] + `}`))
			if err != nil {
				t.Fatal(err)
			}
			if got := pieces(p, text); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Split(%q) = %q, want %q", text, got, tt.want)
			}
		})
	}
	if _, err := buildSplit(json.RawMessage(`{"pattern":{"Regex":"a"},"behavior":"Sideways"}`)); err == nil {
		t.Errorf("buildSplit(behavior Sideways) succeeded, want an error")
	}
}

// TestByteLevel follows pre_tokenizers/byte_level.rs.
func TestByteLevel(t *testing.T) {
	tests := []struct {
		name, config, text string
		want               []string
	}{
		{"gpt2 split and byte map", `{"add_prefix_space":false}`, "Hello my friend, how is your day going?",
			[]string{"Hello", "Ġmy", "Ġfriend", ",", "Ġhow", "Ġis", "Ġyour", "Ġday", "Ġgoing", "?"}},
		{"prefix space", `{"add_prefix_space":true}`, "Hello", []string{"ĠHello"}},
		{"no prefix on a leading space", `{"add_prefix_space":true}`, " Hello", []string{"ĠHello"}},
		{"multibyte characters", `{"add_prefix_space":false}`, "i⭢j", []string{"i", "âŃ¢", "j"}},
		{"no regex", `{"add_prefix_space":false,"use_regex":false}`, "a b\n", []string{"aĠbĊ"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := buildByteLevel(json.RawMessage(tt.config))
			if err != nil {
				t.Fatal(err)
			}
			if got := pieces(p, tt.text); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ByteLevel(%q) = %q, want %q", tt.text, got, tt.want)
			}
		})
	}
}

func TestTrimByteLevelOffsets(t *testing.T) {
	tests := []struct {
		name, tok     string
		s, e          int
		first, prefix bool
		want          [2]int
	}{
		{"leading space cut", "Ġhello", 5, 11, false, false, [2]int{6, 11}},
		{"first token keeps the added space", "Ġhello", 0, 6, true, true, [2]int{0, 6}},
		{"two leading spaces are not the added one", "ĠĠhello", 0, 7, true, true, [2]int{2, 7}},
		{"trailing spaces", "aĠĠ", 3, 6, false, false, [2]int{3, 4}},
		{"all spaces", "ĠĠĠ", 3, 6, false, false, [2]int{6, 6}},
		{"lstrip added token", " <mask>", 3, 10, false, false, [2]int{4, 10}},
		{"wide whitespace moves by its bytes", "\u3000<mask>", 0, 9, false, false, [2]int{3, 9}},
		{"no spaces", "hello", 2, 7, false, false, [2]int{2, 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, e := trimByteLevelOffsets(tt.tok, tt.s, tt.e, tt.first, tt.prefix)
			if got := [2]int{s, e}; got != tt.want {
				t.Errorf("trimByteLevelOffsets(%q, %d, %d) = %v, want %v", tt.tok, tt.s, tt.e, got, tt.want)
			}
		})
	}
}

// TestEncodeBPE pins behaviours of the real BPE tokenizers that the Go
// libraries we evaluated got wrong (see the tokenizer notes).
func TestEncodeBPE(t *testing.T) {
	tests := []struct {
		name, tokenizer, text string
		wantTokens            []string
		wantOffsets           [][2]int
	}{
		{"mask with lstrip keeps its space in the token", "roberta-bpe", "a <mask> b",
			[]string{"<s>", "a", " <mask>", "Ġb", "</s>"}, [][2]int{{0, 0}, {0, 1}, {2, 8}, {9, 10}, {0, 0}}},
		{"repeated digits merge in rank order", "roberta-bpe", "(C) 2000,2001",
			[]string{"<s>", "(", "C", ")", "Ġ2000", ",", "2001", "</s>"}, nil},
		{"seven spaces are one token", "roberta-bpe", "a        /*",
			[]string{"<s>", "a", "ĠĠĠĠĠĠĠ", "Ġ/*", "</s>"}, nil},
		{"special tokens in text", "qwen3emb", "<|im_start|>hi<|im_end|>",
			[]string{"<|im_start|>", "hi", "<|im_end|>", "<|endoftext|>"}, [][2]int{{0, 12}, {12, 14}, {14, 24}, {0, 0}}},
		{"NFD input is composed, offsets as in Rust", "qwen3emb", "cafe\u0301",
			[]string{"ca", "fÃ©", "<|endoftext|>"}, [][2]int{{0, 2}, {2, 4}, {0, 0}}}, // é takes the span of e
		{"wide space before an lstrip token", "roberta-bpe", "x　 <mask>",
			[]string{"<s>", "x", "　 <mask>", "</s>"}, [][2]int{{0, 0}, {0, 1}, {5, 11}, {0, 0}}},
		{"byte fallback", "llama2", "a 𝔘",
			[]string{"<s>", "▁a", "▁", "<0xF0>", "<0x9D>", "<0x94>", "<0x98>"}, [][2]int{{0, 0}, {0, 1}, {1, 2}, {2, 6}, {2, 6}, {2, 6}, {2, 6}}},
		{"llama3 digits by three", "llama3", "1234567",
			[]string{"123", "456", "7"}, [][2]int{{0, 3}, {3, 6}, {6, 7}}},
	}
	tks := map[string]*Tokenizer{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tk := tks[tt.tokenizer]
			if tk == nil {
				tk = loadTestTokenizer(t, tt.tokenizer)
				tks[tt.tokenizer] = tk
			}
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

// TestPathologicalBPE checks that inputs built to be slow stay fast on the
// BPE tokenizers (the merge loop is O(n log n) per word) and give sane
// encodings.
func TestPathologicalBPE(t *testing.T) {
	tests := []struct {
		name string
		text string
	}{
		{"1 MB word", strings.Repeat("a", 1<<20)},
		{"1 MB word of two letters", strings.Repeat("ab", 1<<19)},
		{"1 MB word of multibyte letters", strings.Repeat("ж", 1<<19)},
		{"100k spaces", strings.Repeat(" ", 100_000)},
		{"100k newlines and spaces", strings.Repeat(" \n", 50_000)},
		{"combining marks", "a" + strings.Repeat("\u0301", 200_000)},
		{"combining marks after CJK", strings.Repeat("中\u0301\u0323", 50_000)},
		{"punctuation run", strings.Repeat("!?", 200_000)},
		{"digits", strings.Repeat("1234567890", 50_000)},
		{"emoji", strings.Repeat("👍🏽", 50_000)},
		{"special tokens", strings.Repeat("<s><|endoftext|><mask>", 20_000)},
		{"invalid bytes", strings.Repeat("\xff\xe2\x82", 100_000)},
	}
	for _, name := range bpeFamilies {
		tk := loadTestTokenizer(t, name)
		for _, tt := range tests {
			t.Run(name+"/"+tt.name, func(t *testing.T) {
				start := time.Now()
				e := tk.Encode(tt.text, EncodeOptions{AddSpecialTokens: true, Offsets: true})
				checkEncoding(t, tk, tt.text, &e)
				if d := time.Since(start); d > 20*time.Second {
					t.Errorf("Encode(%d bytes) took %v", len(tt.text), d)
				}
			})
		}
	}
}

// TestConcurrentEncodeBPE shares each BPE tokenizer between goroutines
// (run with -race): the model's and the Split's pools must not leak state
// between calls.
func TestConcurrentEncodeBPE(t *testing.T) {
	corpus := loadCorpus(t)
	opts := EncodeOptions{AddSpecialTokens: true, Offsets: true}
	for _, name := range []string{"roberta-bpe", "qwen3emb", "llama2"} {
		tk := loadTestTokenizer(t, name)
		want := make([]Encoding, len(corpus))
		for i, it := range corpus {
			want[i] = tk.Encode(it.raw, opts)
		}
		var wg sync.WaitGroup
		var failed atomic.Bool
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := g; i < len(corpus) && !failed.Load(); i += 2 {
					if got := tk.Encode(corpus[i].raw, opts); !reflect.DeepEqual(got, want[i]) {
						failed.Store(true)
						t.Errorf("%s: Encode(%q) concurrently = %v, want %v", name, clip(corpus[i].raw), got.IDs, want[i].IDs)
					}
				}
			}()
		}
		wg.Wait()
	}
}

// BenchmarkEncodePool encodes the benchmark texts with runtime.NumCPU()
// goroutines sharing one Tokenizer, as the gateway's workers do.
func BenchmarkEncodePool(b *testing.B) {
	texts := benchTexts(b)
	for _, name := range append([]string{"minilm"}, bpeFamilies...) {
		tk := loadTestTokenizer(b, name)
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			var tokens atomic.Int64
			workers := runtime.NumCPU()
			for b.Loop() {
				var next atomic.Int64
				var wg sync.WaitGroup
				for range workers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						n := 0
						for i := int(next.Add(1)) - 1; i < len(texts); i = int(next.Add(1)) - 1 {
							e := tk.Encode(texts[i], EncodeOptions{AddSpecialTokens: true})
							n += len(e.IDs)
						}
						tokens.Add(int64(n))
					}()
				}
				wg.Wait()
			}
			b.ReportMetric(float64(tokens.Load())/b.Elapsed().Seconds(), "tokens/s")
			b.ReportMetric(float64(workers), "goroutines")
		})
	}
}
