package tokenizer

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// boundTokenizers are the parity tokenizers, one per family we support.
var boundTokenizers = []string{"minilm", "bert-cased-wp", "roberta-bpe", "roberta-bpe-prefix", "qwenstyle-bpe",
	"qwen3emb", "llama2", "llama3", "xlmr-unigram", "xlmr-precompiled"}

// Windows of the tests: whole is encode-everything-then-truncate; tiny
// starts at one byte per kept token, so that even short texts are cut,
// and at many places as the window grows.
var (
	whole = window{perToken: -1}
	tiny  = window{perToken: 1}
)

// validText is text as Encode reads it: valid UTF-8, lossily decoded.
func validText(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	d, _ := lossyUTF8(s, nil, nil)
	return d
}

// cutTok is a sequence token with the text of a normalized-text token.
type cutTok struct {
	id   int32
	orig span
	kind int8
	norm string
}

func rangeToks(tk *Tokenizer, s string, lo, hi int) []cutTok {
	sc := tk.getScratch()
	defer tk.putScratch(sc)
	var out []cutTok
	for _, x := range tk.tokenizeRange(sc, s, lo, hi) {
		c := cutTok{id: x.id, orig: x.orig, kind: x.kind}
		if x.kind == 2 {
			c.norm = string(sc.ns.s[x.norm.start:x.norm.end])
		}
		out = append(out, c)
	}
	return out
}

// checkCuts checks the property bounded encodes rest on: at a cut c of s,
// the tokens of s are those of s[:c] followed by those of s[c:] (where
// fromOK allows a window from c; elsewhere, only that those of s[:c] come
// first). It checks up to maxCuts cuts, spread over s, and returns how many
// it checked.
func checkCuts(t *testing.T, tk *Tokenizer, name, s string, maxCuts int) int {
	t.Helper()
	s = validText(s)
	var cuts []int
	for c := 1; c < len(s); c++ {
		if tk.cuts.at(s, c) {
			cuts = append(cuts, c)
		}
	}
	if len(cuts) == 0 {
		return 0
	}
	all := rangeToks(tk, s, 0, len(s))
	n := min(len(cuts), maxCuts)
	for k := range n {
		c := cuts[k*(len(cuts)-1)/max(n-1, 1)]
		got := rangeToks(tk, s, 0, c)
		want := all[:min(len(got), len(all))]
		if tk.cuts.fromOK(s, c) {
			got, want = append(got, rangeToks(tk, s, c, len(s))...), all
		}
		if !slices.Equal(got, want) {
			i := 0
			for i < min(len(got), len(want)) && got[i] == want[i] {
				i++
			}
			t.Errorf("%s: cut at %d of %q: %d tokens, whole %d, first difference at %d", name, c, clip(s), len(got), len(want), i)
			return k
		}
	}
	return n
}

// TestCutsSplitEncoding checks every cut of every corpus item.
func TestCutsSplitEncoding(t *testing.T) {
	corpus := loadCorpus(t)
	for _, name := range boundTokenizers {
		t.Run(name, func(t *testing.T) {
			tk := loadTestTokenizer(t, name)
			if tk.cuts == nil {
				t.Fatalf("%s has no cuts", name)
			}
			cuts := 0
			for _, it := range corpus {
				cuts += checkCuts(t, tk, name, it.raw, 8)
			}
			for _, s := range longTexts(t) {
				cuts += checkCuts(t, tk, name, s, 4)
			}
			t.Logf("%s: %d cuts in %d corpus items and the long texts split the encoding exactly", name, cuts, len(corpus))
		})
	}
}

// boundCase compares a bounded encode of s with encode-everything-then-
// truncate, for each kept length, direction and special-token setting; it
// returns the encodes compared and those that a window smaller than the
// text answered.
func boundCase(t *testing.T, tk *Tokenizer, w window, s string, lengths []int) (cases, windowed int) {
	t.Helper()
	ref := newWholeRef(tk, s)
	defer ref.close()
	for _, n := range lengths {
		for _, left := range []bool{false, true} {
			for _, special := range []bool{false, true} {
				opts := EncodeOptions{AddSpecialTokens: special, MaxLength: n, TruncateLeft: left, Offsets: true}
				want := ref.encode(opts)
				got := tk.encode(s, opts, w)
				cases++
				if !reflect.DeepEqual(got, want) {
					t.Errorf("encode(%q, %+v):\n got %v %q %v\nwant %v %q %v", clip(s), opts,
						got.IDs, got.Tokens, got.Offsets, want.IDs, want.Tokens, want.Offsets)
					return cases, windowed
				}
				if windowedBy(tk, s, opts, w) {
					windowed++
				}
			}
		}
	}
	return cases, windowed
}

// wholeRef is encode-everything-then-truncate with the whole text
// tokenized once: Encode's own steps without a window.
type wholeRef struct {
	tk   *Tokenizer
	sc   *scratch
	src  string
	lpos []int32
	toks []tok
}

func newWholeRef(tk *Tokenizer, s string) *wholeRef {
	r := &wholeRef{tk: tk, sc: tk.getScratch(), src: s}
	if !utf8.ValidString(s) {
		r.src, r.lpos = lossyUTF8(s, nil, nil)
	}
	r.toks = tk.tokenizeRange(r.sc, r.src, 0, len(r.src))
	return r
}

func (r *wholeRef) encode(opts EncodeOptions) Encoding {
	toks := r.toks
	pieces, nSpecial := r.tk.post.templateFor(false, opts)
	if opts.MaxLength > 0 {
		toks = truncate(toks, max(opts.MaxLength-nSpecial, 0), opts.TruncateLeft)
	}
	return r.tk.assemble(pieces, []seqInput{{sc: r.sc, src: r.src, lpos: r.lpos, toks: toks}}, opts)
}

func (r *wholeRef) close() { r.tk.putScratch(r.sc) }

// windowedBy reports whether the encode of s with opts reads less than all
// of the text.
func windowedBy(tk *Tokenizer, s string, opts EncodeOptions, w window) bool {
	limit := opts.MaxLength
	if opts.AddSpecialTokens {
		limit = max(limit-tk.SpecialTokensCount(), 0)
	}
	s = validText(s)
	if limit == 0 || tk.cuts == nil || len(s) <= w.first(limit) {
		return limit == 0
	}
	sc := tk.getScratch()
	defer tk.putScratch(sc)
	_, ok := tk.tokenizeBounded(sc, s, limit, opts.TruncateLeft, w)
	return ok
}

// TestBoundedEncodeCorpus: over the whole parity corpus, a truncated
// encode equals encode-everything-then-truncate, for 1 to 512 tokens, from
// both sides, with and without special tokens, offsets and tokens
// included.
func TestBoundedEncodeCorpus(t *testing.T) {
	corpus := loadCorpus(t)
	lengths := []int{1, 2, 5, 16, 64, 512}
	for _, name := range boundTokenizers {
		t.Run(name, func(t *testing.T) {
			tk := loadTestTokenizer(t, name)
			cases, windowed := 0, 0
			for _, it := range corpus {
				c, w := boundCase(t, tk, tiny, it.raw, lengths)
				cases, windowed = cases+c, windowed+w
				if t.Failed() {
					return
				}
			}
			t.Logf("%s: %d encodes equal (%d items × %d lengths × 2 sides × 2), %d of them from a window", name,
				cases, len(corpus), len(lengths), windowed)
		})
	}
}

// longTexts are long texts (repeated corpus sentences over 100 KB, the
// others 24 KB, several times Encode's 4 KB window) with what tends to
// defeat a window: no whitespace, only whitespace, CJK, emoji, combining
// marks (also after a space), grapheme prepend characters, added tokens
// next to spaces, runs of spaces, text that is not UTF-8, segments that
// start with characters a normalizer removes.
func longTexts(t *testing.T) map[string]string {
	rep := func(s string) string { return strings.Repeat(s, (24<<10)/len(s)+1) }
	return map[string]string{
		"corpus":         longText(t, 100<<10),
		"no whitespace":  rep("abcdefghij"),
		"punct no space": rep("ab.cd,ef;"),
		"only spaces":    rep(" "),
		"whitespace":     rep(" \t\n\u00a0\u3000\r\n"),
		"cjk":            rep("名称 usermod - 修改一个用户账户。大纲：登录描述 "),
		"cjk no space":   rep("東京都渋谷区１－２－３。修改一个用户账户"),
		"emoji":          rep("ok 😂 👍🏽. 👨‍👩‍👧 a🇫🇷 "),
		"combining":      rep("e\u0301. a\u0308 x \u0301y. o\u0302\u0323 "),
		"prepend":        rep("a\u0600b. \u0600c d. "),
		"added":          rep("[CLS] x. <s> y <mask> z </s>. <|endoftext|> w[SEP] <unk>. "),
		"invalid utf8":   rep("abc. \xff def. \xe2\x82 g. "),
		"invalid ends":   "\xff" + rep("abc def. ") + "\xe2\x82",
		"removed leads":  "\x04\u200b" + rep("abc def. ") + "<s>\x04" + rep("ghi jkl. "),
		"mixed":          rep("Привет, мир. Hello world! Ünïcödé ok. 123 456 7890. "),
		"spaces runs":    rep("a.    b;  \t c.     "),
	}
}

// TestBoundedEncodeLong: long texts of every tokenizer, with Encode's own
// window and with a tiny one.
func TestBoundedEncodeLong(t *testing.T) {
	texts := longTexts(t)
	for _, name := range boundTokenizers {
		t.Run(name, func(t *testing.T) {
			tk := loadTestTokenizer(t, name)
			var report []string
			for label, s := range texts {
				cases, windowed := boundCase(t, tk, window{windowPerToken, windowExtra}, s, []int{1, 16, 512})
				c2, w2 := boundCase(t, tk, tiny, s, []int{5, 64})
				if t.Failed() {
					t.Fatalf("%s: %q", name, label)
				}
				report = append(report, fmt.Sprintf("%s %d/%d", label, windowed+w2, cases+c2))
			}
			t.Logf("%s: windowed/equal: %s", name, strings.Join(report, ", "))
		})
	}
}

// TestBoundedEncodePrompt: the engine encodes prompt+text; from the left,
// the window leaves the prompt out, as truncating the whole encode does.
func TestBoundedEncodePrompt(t *testing.T) {
	text := "query: " + longText(t, 50<<10)
	for _, name := range boundTokenizers {
		tk := loadTestTokenizer(t, name)
		opts := EncodeOptions{AddSpecialTokens: true, MaxLength: 512, TruncateLeft: true, Offsets: true}
		got, want := tk.Encode(text, opts), tk.encode(text, opts, whole)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: left-truncated prompt+text differs from the whole encode truncated", name)
		}
		if !windowedBy(tk, text, opts, window{windowPerToken, windowExtra}) {
			t.Errorf("%s: a 50 KB text was encoded whole", name)
		}
	}
}

// TestBoundedEncodeInvalidElsewhere: bytes that are not UTF-8 at the end
// the encode drops do not force a lossy decoding of the whole text.
func TestBoundedEncodeInvalidElsewhere(t *testing.T) {
	valid := strings.Repeat("abc def. ", 10000)
	for _, name := range boundTokenizers {
		tk := loadTestTokenizer(t, name)
		for _, left := range []bool{false, true} {
			text := valid + "\xe2\x82"
			if left {
				text = "abc \xff " + valid
			}
			sc := tk.getScratch()
			_, ok := tk.tokenizeBounded(sc, text, 100, left, window{windowPerToken, windowExtra})
			tk.putScratch(sc)
			if !ok {
				t.Errorf("%s (left %v): no window in valid text", name, left)
			}
			opts := EncodeOptions{AddSpecialTokens: true, MaxLength: 100, TruncateLeft: left, Offsets: true}
			if got, want := tk.Encode(text, opts), tk.encode(text, opts, whole); !reflect.DeepEqual(got, want) {
				t.Errorf("%s (left %v): bounded encode differs from the whole encode truncated", name, left)
			}
		}
	}
}

// FuzzBoundedEncode: a bounded encode of any text equals the whole encode
// truncated.
func FuzzBoundedEncode(f *testing.F) {
	f.Add("Hello world. This is a test, of cuts! [CLS] x <s> y", uint8(3), false)
	f.Add("a. \u0301b c! \u0600d e. 名称 f) 😂 g", uint8(2), true)
	f.Add("x.  \t y;\n z. <mask> w. \xff v.", uint8(1), true)
	f.Add("<s>\x04a b. c <mask>\u200b d. e", uint8(4), true)
	f.Add("\u200ba. b\x00 c. d", uint8(6), true)
	tks := make([]*Tokenizer, len(boundTokenizers))
	for i, name := range boundTokenizers {
		tks[i] = loadTestTokenizer(f, name)
	}
	f.Fuzz(func(t *testing.T, s string, n uint8, left bool) {
		for i, tk := range tks {
			opts := EncodeOptions{AddSpecialTokens: n%2 == 0, MaxLength: int(n%32) + 1, TruncateLeft: left, Offsets: true}
			if got, want := tk.encode(s, opts, tiny), tk.encode(s, opts, whole); !reflect.DeepEqual(got, want) {
				t.Fatalf("%s: encode(%q, %+v):\n got %v %q %v\nwant %v %q %v", boundTokenizers[i], s, opts,
					got.IDs, got.Tokens, got.Offsets, want.IDs, want.Tokens, want.Offsets)
			}
		}
	})
}
