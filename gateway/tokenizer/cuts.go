package tokenizer

import (
	"bytes"
	"strings"
	"unicode/utf8"

	"github.com/rivo/uniseg"
)

// A cut is a byte position c of a text at which encoding comes apart: the
// tokens of the text are those of text[:c] followed by those of text[c:]
// (tokenized with spans into the whole text, as a continuation of its
// segment). A bounded encode (bound.go) tokenizes only the part it keeps,
// up to or from a cut.
//
// Cuts are the spaces that follow a printable ASCII character:
// text[c-1] in '!'..'~', text[c] == ' ' (plain text has them every few
// words). Whether the pipeline comes apart there is decided once, at load,
// component by component (newCutRule); a tokenizer with a component whose
// reach across such a space we cannot bound has no cuts and is always
// encoded whole. Why each component keeps to its side:
//
//   - Added tokens on the raw text: a match that touches c is excluded at
//     run time (addedTouches). Otherwise lstrip and rstrip stop at
//     text[c-1], which is not whitespace, and single_word looks at
//     characters on the match's own side.
//   - Normalizers work character by character (BERT, Lowercase,
//     StripAccents), or by runs of combining marks, which a space ends
//     (NFC, NFD, NFKC, NFKD), or by grapheme clusters, checked at run time
//     (Precompiled). Replace may only turn the space into '▁' or squeeze
//     runs of spaces; Prepend and a left Strip act at a segment's start,
//     which a window's continued first segment is not (normString.cont).
//     One effect reaches across: Precompiled, as Rust's change list does,
//     loses the alignment of characters it removes at a segment's start
//     and shifts every later offset of the segment; a window from a cut is
//     only taken when no segment before the cut may start so (fromOK).
//   - Pre-tokenizers split before the space (BERT, Whitespace,
//     WhitespaceSplit, Metaspace with split, the GPT-2, Qwen and Llama-3
//     scanners: a match never runs from a non-space character into a
//     space); once split, every later step works split by split.
//   - Models work word by word. Unsplit, only a BPE whose vocabulary has
//     no token running from a printable ASCII character into the space
//     (Llama-2's '▁') comes apart: no merge can join the two sides.
type cutRule struct {
	graphemes bool     // a normalizer works on grapheme clusters
	added     *matcher // added tokens matched on the raw text; nil: none
	maxAdded  int      // longest added-token pattern, bytes
	inAdded   [256]bool
	firsts    []byte // the first bytes of the added tokens
	// leading is a first normalizer that may remove a segment's first
	// characters, losing their alignment (see fromOK); noFrom: such a
	// normalizer runs after another, so no window starts at a cut.
	leading *precompiled
	noFrom  bool
}

// newCutRule returns where t's texts may be cut, or nil if nowhere.
func newCutRule(t *Tokenizer) *cutRule {
	if !t.normMatch.empty() {
		return nil // matches on normalized text: not analysed, encode whole
	}
	r := &cutRule{}
	sp, ok := r.normalizerCut(t.norm, " ", true)
	if !ok {
		return nil
	}
	split, ok := preTokenizerCut(t.pre, sp, false)
	if !ok || (!split && !bpeSeparates(t.model, sp)) {
		return nil
	}
	if !t.rawMatch.empty() {
		r.added = t.rawMatch
		for _, p := range t.rawMatch.patterns {
			r.maxAdded = max(r.maxAdded, len(p))
			for i := 0; i < len(p); i++ {
				r.inAdded[p[i]] = true
			}
			if !bytes.Contains(r.firsts, []byte{p[0]}) {
				r.firsts = append(r.firsts, p[0])
			}
			// fromOK reads raw text that may decode to U+FFFD
			r.noFrom = r.noFrom || strings.ContainsRune(p, utf8.RuneError)
		}
	}
	return r
}

// normalizerCut follows the space at a cut through n: sp is what the
// space has become so far ("" and false: n may carry text across the cut).
// Only " " and "▁" are followed. first: n is the first to see the text.
func (r *cutRule) normalizerCut(n normalizer, sp string, first bool) (string, bool) {
	switch n := n.(type) {
	case nil:
		return sp, true
	case *bertNormalizer, lowercaseNormalizer, stripAccentsNormalizer, nfdNormalizer, unicodeNormalizer:
		// Printable ASCII maps to printable ASCII; ' ' and '▁' map to
		// themselves and compose with nothing.
		return sp, true
	case stripNormalizer, prependNormalizer:
		return sp, true
	case *replaceNormalizer:
		return replaceCut(n, sp)
	case *precompiled:
		r.graphemes = true
		if first {
			r.leading = n
		} else {
			r.noFrom = true
		}
		return sp, sp == " " && n.keepsCut()
	case sequenceNormalizer:
		ok := true
		for i, x := range n {
			if sp, ok = r.normalizerCut(x, sp, first && i == 0); !ok {
				return "", false
			}
		}
		return sp, true
	}
	return "", false
}

// replaceCut is normalizerCut for Replace.
func replaceCut(n *replaceNormalizer, sp string) (string, bool) {
	switch {
	case n.re != nil:
		return "", false
	case n.rep != nil:
		// " {2,}" → " ": a run starts at the cut, on both sides alike.
		return sp, n.rep.r == ' ' && sp == " " && n.content == " "
	}
	lit := string(n.literal)
	if lit == sp {
		return n.content, n.content == " " || n.content == "▁"
	}
	if strings.ContainsAny(lit, " ▁") {
		return "", false
	}
	// A match lies on one side; one just before the cut must leave a
	// printable ASCII character there.
	c := n.content
	if c == "" || strings.ContainsAny(c, " ▁") || !isVisibleASCII(c[len(c)-1]) {
		return "", false
	}
	for _, ch := range c {
		if isWhitespace(ch) {
			return "", false
		}
	}
	return sp, true
}

// keepsCut reports whether the charsmap leaves a cut in place: the space
// maps to itself and every printable ASCII character to text ending in one
// (neither removed, nor turned into whitespace).
func (p *precompiled) keepsCut() bool {
	if r := p.ascii[' ']; r.mapped && string(r.to) != " " {
		return false
	}
	for c := byte('!'); c <= '~'; c++ {
		r := p.ascii[c]
		if !r.mapped {
			continue
		}
		if len(r.to) == 0 || !isVisibleASCII(r.to[len(r.to)-1]) || strings.ContainsAny(string(r.to), " ▁") {
			return false
		}
		for _, ch := range string(r.to) {
			if isWhitespace(ch) {
				return false
			}
		}
	}
	return true
}

// preTokenizerCut reports whether p splits the text at a cut whose space
// has become sp (split), given whether an earlier step did; ok false: p
// may carry text across the cut.
func preTokenizerCut(p preTokenizer, sp string, done bool) (split, ok bool) {
	if done {
		return true, true // every pre-tokenizer works split by split
	}
	switch p := p.(type) {
	case nil:
		return false, true
	case bertPreTokenizer, whitespaceSplit, whitespacePre:
		return true, sp == " "
	case *metaspace:
		return true, p.split && (sp == " " || sp == string(p.rep))
	case *byteLevel:
		return true, p.useRegex && sp == " "
	case *splitPre:
		return true, p.scan != nil && p.behavior == behaviorIsolated && !p.invert && sp == " "
	case *sequencePreTokenizer:
		for _, s := range p.steps {
			if done, ok = preTokenizerCut(s, sp, done); !ok {
				return false, false
			}
		}
		return done, true
	}
	return false, false
}

// bpeSeparates reports whether m, given whole segments, still comes apart
// at a cut whose space has become sp: a BPE without word affixes, unknown
// characters dropped (which would shift offsets) or whole-word look-ups,
// with sp a token, and no token running from a printable ASCII character
// into sp, so no merge joins the two sides.
func bpeSeparates(m model, sp string) bool {
	b, ok := m.(*bpe)
	if !ok || b.prefix != "" || b.suffix != "" || b.ignoreMerges || b.unk < 0 {
		return false
	}
	if _, ok := b.vocab[sp]; !ok {
		return false
	}
	for tok := range b.vocab {
		for i := strings.Index(tok, sp); i >= 0; {
			if i > 0 && isVisibleASCII(tok[i-1]) {
				return false
			}
			j := strings.Index(tok[i+1:], sp)
			if j < 0 {
				break
			}
			i += 1 + j
		}
	}
	return true
}

func isVisibleASCII(c byte) bool { return c >= '!' && c <= '~' }

// at reports whether s (valid UTF-8) may be cut at c.
func (r *cutRule) at(s string, c int) bool {
	if c < 1 || c >= len(s) || s[c] != ' ' || !isVisibleASCII(s[c-1]) {
		return false
	}
	if r.graphemes && !clusterEdges(s, c) {
		return false
	}
	return !r.addedTouches(s, c)
}

// clusterEdges reports whether grapheme clusters end before s[c-1] and
// after s[c]: the only rules that join an ASCII character to its
// neighbour there are Prepend before it (GB9b) and Extend, ZWJ or
// SpacingMark after the space (GB9, GB9a); the space itself always starts
// a cluster after a printable ASCII character.
func clusterEdges(s string, c int) bool {
	if c >= 2 && s[c-2] >= utf8.RuneSelf {
		_, size := utf8.DecodeLastRuneInString(s[:c-1])
		if g, _, _, _ := uniseg.FirstGraphemeClusterInString(s[c-1-size:c], -1); len(g) != size {
			return false
		}
	}
	if c+1 < len(s) && s[c+1] >= utf8.RuneSelf {
		_, size := utf8.DecodeRuneInString(s[c+1:])
		if g, _, _, _ := uniseg.FirstGraphemeClusterInString(s[c:c+1+size], -1); len(g) != 1 {
			return false
		}
	}
	return true
}

// addedTouches reports whether an added token occurs in s over, ending at
// or starting at c.
func (r *cutRule) addedTouches(s string, c int) bool {
	if r.added == nil || (!r.inAdded[s[c-1]] && !r.inAdded[' ']) {
		return false
	}
	for j := max(0, c-r.maxAdded); j <= c; j++ {
		for _, k := range r.added.byFirst[s[j]] {
			p := r.added.patterns[k]
			if e := j + len(p); e >= c && e <= len(s) && s[j:e] == p {
				return true
			}
		}
	}
	return false
}

// fromOK reports whether a window may start at the cut c: no segment before
// c may start with characters the leading normalizer removes. Segments
// start at 0 and after added tokens (and the whitespace an rstrip token
// takes); every occurrence of an added token before c is taken as one.
func (r *cutRule) fromOK(s string, c int) bool {
	switch {
	case r.noFrom:
		return false
	case r.leading == nil:
		return true
	case r.leading.removesFirst(s, 0):
		return false
	}
	for i := r.nextFirst(s, 0, c); i >= 0; i = r.nextFirst(s, i+1, c) {
		for _, k := range r.added.byFirst[s[i]] {
			p := r.added.patterns[k]
			if !strings.HasPrefix(s[i:], p) {
				continue
			}
			e := i + len(p)
			if r.added.tokens[k].rstrip {
				e += len(s[e:]) - len(strings.TrimLeftFunc(s[e:], isWhitespace))
			}
			if e < c && r.leading.removesFirst(s, e) {
				return false
			}
		}
	}
	return true
}

// nextFirst returns the first position in s[i:end] where an added token
// may start, or -1.
func (r *cutRule) nextFirst(s string, i, end int) int {
	if r.added == nil || i >= end {
		return -1
	}
	if len(r.firsts) == 1 {
		if j := strings.IndexByte(s[i:end], r.firsts[0]); j >= 0 {
			return i + j
		}
		return -1
	}
	for ; i < end; i++ {
		if len(r.added.byFirst[s[i]]) > 0 {
			return i
		}
	}
	return -1
}

// removesFirst reports whether the charsmap may remove the first character
// of a segment of s starting at i: the replacement of the first grapheme's
// shortest key (looked up on graphemes of under 6 bytes; the segment may
// end inside the grapheme, so its first 5 bytes), or of the first
// character alone, is empty.
func (p *precompiled) removesFirst(s string, i int) bool {
	if i >= len(s) {
		return false
	}
	g, _, _, _ := uniseg.FirstGraphemeClusterInString(s[i:min(len(s), i+16)], -1)
	if to, ok := p.lookup([]byte(g[:min(len(g), 5)])); ok && len(to) == 0 {
		return true
	}
	r, size := utf8.DecodeRuneInString(s[i:])
	if r == utf8.RuneError && size == 1 {
		return true // read lossily as U+FFFD: ask the decoded text
	}
	to, ok := p.lookup([]byte(s[i : i+size]))
	return ok && len(to) == 0
}

// context is how far from a cut at reads the text: within it, the text
// must be what Encode reads (valid UTF-8, not a lossy decoding).
func (r *cutRule) context() int { return r.maxAdded + 2*utf8.UTFMax }

// after returns the first cut at or after from, or len(s) if there is none
// within limit bytes.
func (r *cutRule) after(s string, from, limit int) int {
	end := min(len(s), from+limit)
	for i := max(from, 1); i < end; {
		j := strings.IndexByte(s[i:end], ' ')
		if j < 0 {
			break
		}
		if r.at(s, i+j) {
			return i + j
		}
		i += j + 1
	}
	return len(s)
}

// before returns the last cut at or before from, or 0 if there is none
// within limit bytes.
func (r *cutRule) before(s string, from, limit int) int {
	stop := max(1, from-limit)
	for i := min(from, len(s)-1); i >= stop; {
		j := strings.LastIndexByte(s[stop:i+1], ' ')
		if j < 0 {
			break
		}
		if r.at(s, stop+j) {
			return stop + j
		}
		i = stop + j - 1
	}
	return 0
}
