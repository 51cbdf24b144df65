package tokenizer

import "unicode/utf8"

// A truncated encode keeps limit tokens of the sequence: the first (from
// the right) or the last (from the left). Tokenizing all of a 2 MB text to
// keep 512 tokens costs hundreds of milliseconds and hundreds of megabytes,
// so when the tokenizer has cuts (cuts.go) the bounded encode tokenizes a
// window only: text[:c] for the first tokens, text[c:] for the last, with c
// a cut. The tokens of the text are those of text[:c] followed by those of
// text[c:], so once the window has limit tokens, the ones kept are exactly
// those of the whole text. A window short of tokens grows geometrically
// (the work stays within a few times the final window); with no cut in
// reach, the whole text is tokenized.

// Window sizing of Encode: the first window holds windowPerToken bytes per
// kept token plus windowExtra (about twice what plain text needs, so one
// window usually suffices); a text no longer than that is tokenized whole.
const (
	windowPerToken = 8
	windowExtra    = 256
	// windowReach is how far past the wanted size a cut is looked for
	// (at least the size again): a text without cuts there is tokenized
	// whole.
	windowReach = 64 << 10
)

// window sizes a bounded encode. perToken < 0 turns bounding off (tests).
type window struct{ perToken, extra int }

func (w window) first(limit int) int { return w.perToken*limit + w.extra }

// sequence returns the tokens of the sequence of text, truncated to limit
// (< 0: all), the text they were read from (text, or its lossy decoding)
// and, for a lossy decoding, the positions in text of its bytes.
func (t *Tokenizer) sequence(sc *scratch, text string, limit int, left bool, w window) (string, []int32, []tok) {
	if limit == 0 {
		return text, nil, nil
	}
	bounded := limit > 0 && t.cuts != nil && w.perToken >= 0
	if bounded && len(text) > w.first(limit) {
		if toks, ok := t.tokenizeBounded(sc, text, limit, left, w); ok {
			return text, nil, toks
		}
	}
	src, lpos := text, []int32(nil)
	if !utf8.ValidString(text) {
		src, sc.lpos = lossyUTF8(text, sc.lossy, sc.lpos)
		lpos = sc.lpos
		if bounded && len(src) > w.first(limit) {
			if toks, ok := t.tokenizeBounded(sc, src, limit, left, w); ok {
				return src, lpos, toks
			}
		}
	}
	return src, lpos, truncate(t.tokenizeRange(sc, src, 0, len(src)), limit, left)
}

// tokenizeBounded tokenizes windows of src, growing, until one has limit
// tokens, and returns the limit kept. ok is false if a window would be all
// of src (no cut in reach), or is not valid UTF-8 (whose lossy decoding
// shifts positions, so src must be decoded whole): the caller then
// tokenizes src whole.
func (t *Tokenizer) tokenizeBounded(sc *scratch, src string, limit int, left bool, w window) (toks []tok, ok bool) {
	size := w.first(limit)
	fromChecked := false
	for size < len(src) {
		lo, hi := 0, len(src)
		reach := max(size, windowReach)
		if left {
			lo = t.cuts.before(src, len(src)-size, reach)
			// Later windows start before this one: what holds up to
			// this cut holds up to theirs.
			if lo > 0 && !fromChecked {
				if !t.cuts.fromOK(src, lo) {
					return nil, false
				}
				fromChecked = true
			}
		} else {
			hi = t.cuts.after(src, size, reach)
		}
		// The cut was chosen reading the text around it too.
		ctx := t.cuts.context()
		if hi-lo == len(src) || !validSpan(src, max(0, lo-ctx), min(len(src), hi+ctx)) {
			return nil, false
		}
		toks = t.tokenizeRange(sc, src, lo, hi)
		if len(toks) >= limit {
			return truncate(toks, limit, left), true
		}
		size = grow(hi-lo, len(toks), limit)
	}
	return nil, false
}

// validSpan reports whether s[a:b], widened to whole characters, is valid
// UTF-8.
func validSpan(s string, a, b int) bool {
	for k := 0; k < utf8.UTFMax && a > 0 && !utf8.RuneStart(s[a]); k++ {
		a--
	}
	for k := 0; k < utf8.UTFMax && b < len(s) && !utf8.RuneStart(s[b]); k++ {
		b++
	}
	return utf8.ValidString(s[a:b])
}

// grow sizes the next window after one of size bytes gave got of the limit
// tokens wanted: the bytes per token seen so far, with a quarter to spare,
// at least twice and at most sixteen times the size.
func grow(size, got, limit int) int {
	if got*16 <= limit {
		return 16 * size
	}
	return max(2*size, int(int64(size)*int64(limit)*5/(4*int64(got))))
}

// truncate keeps the first (or, left, the last) limit tokens; limit < 0
// keeps them all.
func truncate(toks []tok, limit int, left bool) []tok {
	if limit < 0 || len(toks) <= limit {
		return toks
	}
	if left {
		return toks[len(toks)-limit:]
	}
	return toks[:limit]
}
