package tokenizer

import (
	"fmt"
	"io"
	"math"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// expectedPairLine is one line of testdata/expected-pairs/<name>.jsonl.gz:
// the pair of corpus items a (first) and b (second) in every oracle
// configuration.
type expectedPairLine struct {
	ID   int          `json:"id"`
	A    int          `json:"a"`
	B    int          `json:"b"`
	Pair *expectedEnc `json:"pair"`
	R128 *expectedEnc `json:"r128"`
	L128 *expectedEnc `json:"l128"`
	R512 *expectedEnc `json:"r512"`
}

// pairConfigs are the pair oracle's configurations (oracle-pairs.js): no
// truncation, LongestFirst to 128 from the right and from the left, to 512
// from the right; all with special tokens.
var pairConfigs = []struct {
	name string
	exp  func(*expectedPairLine) *expectedEnc
	opts EncodeOptions
}{
	{"pair", func(l *expectedPairLine) *expectedEnc { return l.Pair }, EncodeOptions{AddSpecialTokens: true}},
	{"r128", func(l *expectedPairLine) *expectedEnc { return l.R128 }, EncodeOptions{AddSpecialTokens: true, MaxLength: 128}},
	{"l128", func(l *expectedPairLine) *expectedEnc { return l.L128 }, EncodeOptions{AddSpecialTokens: true, MaxLength: 128, TruncateLeft: true}},
	{"r512", func(l *expectedPairLine) *expectedEnc { return l.R512 }, EncodeOptions{AddSpecialTokens: true, MaxLength: 512}},
}

// loadExpectedPairs decodes a pairs file; a configuration no field holds is
// an error, so none is silently left unchecked.
func loadExpectedPairs(t *testing.T, name string) []expectedPairLine {
	return loadJSONLines[expectedPairLine](t, filepath.Join("testdata", "expected-pairs", name+".jsonl.gz"))
}

// TestPairParity compares EncodePair on every oracle pair, in every
// configuration, with the Hugging Face tokenizers output: ids, type ids,
// and where given attention and special-tokens masks.
func TestPairParity(t *testing.T) {
	corpus := loadCorpus(t)
	text := make(map[int]string, len(corpus))
	for _, it := range corpus {
		text[it.ID] = it.raw
	}
	for _, name := range []string{"minilm", "bert-cased-wp", "roberta-bpe", "xlmr-unigram"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel() // each subtest has its own tokenizer and expectations
			tk := loadTestTokenizer(t, name)
			want := loadExpectedPairs(t, name)
			if len(want) != 1500 {
				t.Fatalf("%s: %d expected pairs, want 1500", name, len(want))
			}
			reports := 0
			for _, cfg := range pairConfigs {
				pass := 0
				for i := range want {
					l := &want[i]
					exp := cfg.exp(l)
					a, okA := text[l.A]
					b, okB := text[l.B]
					if exp == nil || !okA || !okB {
						t.Fatalf("%s pair %d: no %s expectation or no corpus item %d/%d", name, l.ID, cfg.name, l.A, l.B)
					}
					got := tk.EncodePair(a, b, cfg.opts)
					diff := compareEncoding(&got, exp, "")
					if diff == "" {
						pass++
						continue
					}
					if reports < 15 {
						reports++
						t.Errorf("%s/%s pair %d: EncodePair(%q, %q): %s", name, cfg.name, l.ID, clip(a), clip(b), diff)
					}
				}
				t.Logf("%s %-4s pair parity %d/%d (%.2f%%)", name, cfg.name, pass, len(want), 100*float64(pass)/float64(len(want)))
				if pass != len(want) {
					t.Errorf("%s %s: %d of %d pairs differ, want 100%% parity", name, cfg.name, len(want)-pass, len(want))
				}
			}
		})
	}
}

// TestLongestFirst checks the split against the Rust library's own test
// table (truncation.rs, max_length 7 and 0) and, for every pair of lengths
// up to 40 and every budget up to 40, the properties that define it.
func TestLongestFirst(t *testing.T) {
	// Sequences of 0, 2, 4 and 8 tokens (Rust's empty, short, medium, long).
	lens := []int{0, 2, 4, 8}
	rust7 := [4][4][2]int{
		{{0, 0}, {0, 2}, {0, 4}, {0, 7}},
		{{2, 0}, {2, 2}, {2, 4}, {2, 5}},
		{{4, 0}, {4, 2}, {3, 4}, {3, 4}},
		{{7, 0}, {5, 2}, {4, 3}, {3, 4}},
	}
	for i, n1 := range lens {
		for j, n2 := range lens {
			if k1, k2 := LongestFirst(n1, n2, 7); [2]int{k1, k2} != rust7[i][j] {
				t.Errorf("LongestFirst(%d, %d, 7) = %d, %d, want %v", n1, n2, k1, k2, rust7[i][j])
			}
			if k1, k2 := LongestFirst(n1, n2, 0); k1 != 0 || k2 != 0 {
				t.Errorf("LongestFirst(%d, %d, 0) = %d, %d, want 0, 0", n1, n2, k1, k2)
			}
		}
	}
	for maxLen := 0; maxLen <= 40; maxLen++ {
		for n1 := 0; n1 <= 40; n1++ {
			for n2 := 0; n2 <= 40; n2++ {
				if err := longestFirstProperties(n1, n2, maxLen); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if k1, k2 := LongestFirst(-1, 5, -3); k1 != 0 || k2 != 0 {
		t.Errorf("LongestFirst(-1, 5, -3) = %d, %d, want 0, 0", k1, k2)
	}
}

// longestFirstProperties checks what LongestFirst keeps of n1 and n2 tokens
// in maxLen: no more than each has, exactly as many as fit in total; the
// shorter whole if it takes at most half; else halves, the odd token to the
// longer (the second on a tie).
func longestFirstProperties(n1, n2, maxLen int) error {
	k1, k2 := LongestFirst(n1, n2, maxLen)
	bad := func(why string) error {
		return fmt.Errorf("LongestFirst(%d, %d, %d) = %d, %d: %s", n1, n2, maxLen, k1, k2, why)
	}
	switch short := min(n1, n2); {
	case k1 < 0 || k2 < 0 || k1 > n1 || k2 > n2:
		return bad("keeps more than a sequence has")
	case k1+k2 != min(n1+n2, maxLen):
		return bad("does not fill the budget")
	case n1+n2 <= maxLen:
		return nil
	case 2*short <= maxLen:
		if (n1 <= n2 && k1 != n1) || (n1 > n2 && k2 != n2) {
			return bad("does not keep the shorter whole")
		}
	case n1 > n2 && (k1 != maxLen/2+maxLen%2 || k2 != maxLen/2):
		return bad("does not give the longer first the odd token")
	case n1 <= n2 && (k1 != maxLen/2 || k2 != maxLen/2+maxLen%2):
		return bad("does not give the second the odd token")
	}
	return nil
}

// TestCappedLen checks where Rust's early exit stops on hand-made splits:
// F marks a token that starts its split, A an added token (its own split),
// f a token inside a split. A window (not whole) cannot tell whether its
// farthest token ends a split.
func TestCappedLen(t *testing.T) {
	toks := func(marks string) []tok {
		var out []tok
		for _, m := range marks {
			out = append(out, tok{first: m != 'f', added: m == 'A'})
		}
		return out
	}
	tests := []struct {
		marks       string
		maxLen      int
		left, whole bool
		want        int
		wantOK      bool
	}{
		{"FffFf", 2, false, true, 3, true},   // at the end of the first word
		{"FffFf", 4, false, true, 5, true},   // of the second
		{"FffFf", 5, false, true, 5, true},   // never: all
		{"FffFf", 5, false, false, 5, false}, // window: its last token may not end a word
		{"FfFff", 2, false, false, 2, true},
		{"AAFf", 1, false, true, 4, true}, // added tokens do not stop it
		{"AAFf", 1, true, true, 2, true},  // from the end: stops after the word Ff
		{"FffFf", 1, true, true, 2, true},
		{"FffFf", 3, true, true, 5, true},
		{"FffFf", 3, true, false, 5, false}, // window: its first token may start inside a word
		{"fFfFf", 3, true, false, 4, true},
		{"", 1, false, true, 0, true},
	}
	for _, tt := range tests {
		got, ok := cappedLen(toks(tt.marks), tt.maxLen, tt.left, tt.whole)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("cappedLen(%s, %d, left=%v, whole=%v) = %d, %v, want %d, %v", tt.marks, tt.maxLen, tt.left, tt.whole, got, ok, tt.want, tt.wantOK)
		}
	}
}

// pairReference encodes a pair the long way: each text tokenized whole
// (no bounded window), LongestFirst on the lengths Rust compares (cappedLen
// of the whole tokens), the pair template filled by hand.
func pairReference(tk *Tokenizer, a, b string, opts EncodeOptions) (ids, typeIDs []int32) {
	var seq [2][]int32
	var n [2]int
	for i, text := range [2]string{a, b} {
		r := newWholeRef(tk, text)
		for _, tk := range r.toks {
			seq[i] = append(seq[i], tk.id)
		}
		n[i] = len(r.toks)
		if opts.MaxLength > 0 {
			n[i], _ = cappedLen(r.toks, opts.MaxLength, opts.TruncateLeft, true)
		}
		r.close()
	}
	pieces, nSpecial := tk.post.templateFor(true, opts)
	if opts.MaxLength > 0 {
		n1, n2 := LongestFirst(n[0], n[1], opts.MaxLength-nSpecial)
		for i, k := range [2]int{n1, n2} {
			if opts.TruncateLeft {
				seq[i] = seq[i][len(seq[i])-k:]
			} else {
				seq[i] = seq[i][:k]
			}
		}
	}
	ids, typeIDs = []int32{}, []int32{}
	for _, p := range pieces {
		part := p.ids
		if p.sequence {
			part = seq[seqIndex(p)]
		}
		ids = append(ids, part...)
		for range part {
			typeIDs = append(typeIDs, p.typeID)
		}
	}
	return ids, typeIDs
}

// FuzzEncodePair checks that a truncated pair never exceeds its maximum
// length and keeps exactly what LongestFirst keeps of the whole texts, on
// tokenizers with and without cuts (so with and without bounded windows).
// The seeds include long texts under small odd and even budgets, where the
// bounded windows and the lengths' tie-break matter.
func FuzzEncodePair(f *testing.F) {
	names := []string{"minilm", "roberta-bpe", "xlmr-unigram", "llama3", "llama2"}
	tks := make([]*Tokenizer, len(names))
	for i, name := range names {
		tks[i] = loadTestTokenizer(f, name)
	}
	long := longText(f, 6000)
	for _, s := range []struct {
		a, b   string
		maxLen int
	}{
		{"what is a cross-encoder?", "A cross-encoder reads the query and the document together.", 12},
		{"short", long, 9},
		{long, "short", 9},
		{long, long[:len(long)-200], 10},
		{long, long[:len(long)-200], 9},
		{long, long[:len(long)-200], 11},
		{long[:len(long)-200], long, 9},
		{long[200:], long[:5800], 9},
		{long, long, 135},
		{long, long, 6},
		{"", "", 1},
		{"", long, 1},
		{"\xff\xfe invalid \xc3", long + "\xe2\x82", 40},
		{strings.Repeat("[SEP] <s> ", 100), strings.Repeat("x ", 2000), 64},
	} {
		for _, left := range []bool{false, true} {
			f.Add(s.a, s.b, s.maxLen, left, true)
		}
		f.Add(s.a, s.b, s.maxLen, false, false)
	}
	f.Fuzz(func(t *testing.T, a, b string, maxLen int, left, special bool) {
		if len(a)+len(b) > 1<<16 {
			return
		}
		maxLen %= 600
		if maxLen < 0 {
			maxLen = -maxLen
		}
		opts := EncodeOptions{AddSpecialTokens: special, MaxLength: maxLen, TruncateLeft: left}
		for i, tk := range tks {
			got := tk.EncodePair(a, b, opts)
			nSpecial := 0
			if special {
				nSpecial = tk.PairSpecialTokensCount()
			}
			if maxLen > 0 && got.Len() > max(maxLen, nSpecial) {
				t.Fatalf("%s: EncodePair(%q, %q, %+v) has %d tokens", names[i], clip(a), clip(b), opts, got.Len())
			}
			ids, typeIDs := pairReference(tk, a, b, opts)
			if !reflect.DeepEqual(nz(got.IDs), ids) || !reflect.DeepEqual(nz(got.TypeIDs), typeIDs) {
				t.Fatalf("%s: EncodePair(%q, %q, %+v) = %v %v, want %v %v", names[i], clip(a), clip(b), opts, got.IDs, got.TypeIDs, ids, typeIDs)
			}
			if len(got.AttentionMask) != got.Len() || len(got.SpecialTokensMask) != got.Len() {
				t.Fatalf("%s: masks of %d and %d for %d tokens", names[i], len(got.AttentionMask), len(got.SpecialTokensMask), got.Len())
			}
		}
	})
}

// extraPairLine is one encoding of testdata/expected-pairs-extra.jsonl.gz.
type extraPairLine struct {
	Tok     string  `json:"tok"`
	A       int     `json:"a"`
	B       int     `json:"b"`
	Max     int     `json:"max"`
	Left    bool    `json:"left"`
	Special bool    `json:"special"`
	IDs     []int32 `json:"ids"`
	TypeIDs []int32 `json:"type_ids"`
}

// TestPairParityExtra compares EncodePair with the oracle beyond the
// shared expectations (oracle-pairs-extra.js): every tokenizer here, both
// texts of any length, small odd and even budgets, both directions, with
// and without special tokens, and hand-made pairs where Rust's early exit
// decides which text keeps the odd token.
func TestPairParityExtra(t *testing.T) {
	dec := openJSONLines(t, filepath.Join("testdata", "expected-pairs-extra.jsonl.gz"))
	var head struct {
		Edge []string `json:"edge"`
	}
	if err := dec.Decode(&head); err != nil || len(head.Edge) == 0 {
		t.Fatalf("header: %v, %d edge texts", err, len(head.Edge))
	}
	corpus := loadCorpus(t)
	text := make(map[int]string, len(corpus))
	for _, it := range corpus {
		text[it.ID] = it.raw
	}
	get := func(id int) (string, bool) {
		if id < 0 {
			i := -1 - id
			return head.Edge[min(i, len(head.Edge)-1)], i < len(head.Edge)
		}
		s, ok := text[id]
		return s, ok
	}
	tks := map[string]*Tokenizer{}
	pass, total := map[string]int{}, map[string]int{}
	reports := 0
	for n := 1; ; n++ {
		var l extraPairLine
		err := dec.Decode(&l)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("line %d: %v", n, err)
		}
		tk := tks[l.Tok]
		if tk == nil {
			tk = loadTestTokenizer(t, l.Tok)
			tks[l.Tok] = tk
		}
		a, okA := get(l.A)
		b, okB := get(l.B)
		if !okA || !okB {
			t.Fatalf("line %d: no text %d or %d", n, l.A, l.B)
		}
		total[l.Tok]++
		opts := EncodeOptions{AddSpecialTokens: l.Special, MaxLength: l.Max, TruncateLeft: l.Left}
		got := tk.EncodePair(a, b, opts)
		if diff := compareEncoding(&got, &expectedEnc{IDs: l.IDs, TypeIDs: l.TypeIDs}, ""); diff != "" {
			if reports < 15 {
				reports++
				t.Errorf("%s %+v: EncodePair(%q, %q): %s", l.Tok, opts, clip(a), clip(b), diff)
			}
			continue
		}
		pass[l.Tok]++
	}
	if len(total) != 10 {
		t.Errorf("expectations for %d tokenizers, want 10", len(total))
	}
	for name, n := range total {
		t.Logf("%-18s extra pair parity %d/%d", name, pass[name], n)
		if pass[name] != n {
			t.Errorf("%s: %d of %d extra pairs differ, want 100%% parity", name, n-pass[name], n)
		}
	}
}

// TestEncodePairNoPostProcessor: a tokenizer without a post-processor adds
// no special tokens to a pair and gives the second text type id 1, as
// Rust's default processing does; MaxLength still truncates LongestFirst.
func TestEncodePairNoPostProcessor(t *testing.T) {
	tk, err := Load([]byte(`{"pre_tokenizer":{"type":"WhitespaceSplit"},"model":{"type":"WordPiece","unk_token":"[UNK]","vocab":{"[UNK]":0,"a":1,"b":2}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if n := tk.PairSpecialTokensCount(); n != 0 {
		t.Errorf("PairSpecialTokensCount() = %d, want 0", n)
	}
	for _, tt := range []struct {
		opts          EncodeOptions
		ids, typeIDs  []int32
		specialTokens []int32
	}{
		{EncodeOptions{AddSpecialTokens: true}, []int32{1, 2, 1, 2, 0}, []int32{0, 0, 0, 1, 1}, []int32{0, 0, 0, 0, 0}},
		{EncodeOptions{MaxLength: 3}, []int32{1, 2, 2}, []int32{0, 0, 1}, []int32{0, 0, 0}},
		{EncodeOptions{MaxLength: 3, TruncateLeft: true}, []int32{2, 1, 0}, []int32{0, 0, 1}, []int32{0, 0, 0}},
	} {
		e := tk.EncodePair("a b a", "b c", tt.opts)
		if !reflect.DeepEqual(e.IDs, tt.ids) || !reflect.DeepEqual(e.TypeIDs, tt.typeIDs) || !reflect.DeepEqual(e.SpecialTokensMask, tt.specialTokens) {
			t.Errorf("EncodePair(%+v) = %v %v %v, want %v %v %v", tt.opts, e.IDs, e.TypeIDs, e.SpecialTokensMask, tt.ids, tt.typeIDs, tt.specialTokens)
		}
	}
}

// TestEncodePairOffsets: the tokens and offsets of each text of a pair are
// those of the text encoded alone (offsets into its own text, byte-level
// trimming per text as Rust's RobertaProcessing does); special tokens have
// their token strings and offsets (0, 0).
func TestEncodePairOffsets(t *testing.T) {
	corpus := loadCorpus(t)
	for _, name := range []string{"minilm", "roberta-bpe", "xlmr-unigram"} {
		tk := loadTestTokenizer(t, name)
		for i := 0; i+1 < len(corpus) && i < 600; i += 2 {
			a, b := corpus[i].raw, corpus[i+1].raw
			got := tk.EncodePair(a, b, EncodeOptions{Offsets: true})
			ea, eb := tk.Encode(a, EncodeOptions{Offsets: true}), tk.Encode(b, EncodeOptions{Offsets: true})
			if !reflect.DeepEqual(nzs(got.Tokens), nzs(append(ea.Tokens, eb.Tokens...))) || !reflect.DeepEqual(got.Offsets, append(ea.Offsets, eb.Offsets...)) {
				t.Fatalf("%s: EncodePair(%q, %q) tokens/offsets %q %v, want those of each text alone %q %v %q %v", name, clip(a), clip(b), got.Tokens, got.Offsets, ea.Tokens, ea.Offsets, eb.Tokens, eb.Offsets)
			}
		}
		e := tk.EncodePair("hello", "world", EncodeOptions{AddSpecialTokens: true, Offsets: true})
		for k, special := range e.SpecialTokensMask {
			if special == 1 && (e.Offsets[k] != [2]int{} || e.Tokens[k] == "") {
				t.Errorf("%s: special token %d = %q at %v, want its string at (0, 0)", name, k, e.Tokens[k], e.Offsets[k])
			}
		}
	}
}

// TestEncodePairHugeMaxLength: a maximum length past any text truncates
// nothing, up to math.MaxInt (no overflow into a negative window).
func TestEncodePairHugeMaxLength(t *testing.T) {
	tk := loadTestTokenizer(t, "roberta-bpe")
	long := longText(t, 20000)
	want := tk.EncodePair(long, "short", EncodeOptions{AddSpecialTokens: true})
	for _, m := range []int{math.MaxInt, math.MaxInt/2 + 1, math.MaxInt/8 + 1} {
		for _, left := range []bool{false, true} {
			got := tk.EncodePair(long, "short", EncodeOptions{AddSpecialTokens: true, MaxLength: m, TruncateLeft: left})
			if !reflect.DeepEqual(got.IDs, want.IDs) {
				t.Errorf("EncodePair(MaxLength %d, left=%v): %d tokens, want all %d", m, left, got.Len(), want.Len())
			}
		}
	}
}
