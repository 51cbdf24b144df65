package tokenizer

import (
	"slices"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// normalizer rewrites n.s[from:] in place (keeping alignments). Implementations
// are immutable after loading and safe for concurrent use; any scratch space
// lives in the normString.
//
// Other normalizers live in their own files: NFC/NFKC/NFKD in
// unicodenorm.go, Replace/Strip/Prepend in replace.go, Precompiled (the
// SentencePiece charsmap) in precompiled.go. Those that move characters
// describe their output as a Rust change list (normString.applyChanges),
// which reproduces Rust's positional alignments.
type normalizer interface {
	normalize(n *normString, from int)
}

// bertNormalizer is Rust's BertNormalizer: clean_text, CJK padding,
// strip_accents (NFD then drop Mn) and lowercase, applied per character in
// that order.
type bertNormalizer struct {
	cleanText   bool
	chineseChar bool
	stripAccent bool
	lowercase   bool
}

func (b *bertNormalizer) normalize(n *normString, from int) {
	n.begin()
	for i := from; i < len(n.s); {
		r, size := n.runeAt(i)
		sp := n.align[i]
		src := n.s[i : i+size]
		i += size
		if r < utf8.RuneSelf {
			// ASCII fast path: no decomposition, no CJK.
			if b.cleanText {
				if r == 0 || (isControl(r)) {
					continue
				}
				if r == '\t' || r == '\n' || r == '\r' || r == ' ' {
					r = ' '
				}
			}
			if b.lowercase && r >= 'A' && r <= 'Z' {
				r += 'a' - 'A'
			}
			n.put(r, sp)
			continue
		}
		if b.cleanText {
			if r == utf8.RuneError || isControl(r) {
				continue
			}
			if isWhitespace(r) {
				r = ' '
			}
		}
		if b.chineseChar && isChineseChar(r) {
			n.put(' ', sp)
			n.put(r, sp)
			n.put(' ', sp)
			continue
		}
		if b.stripAccent && r >= 0xC0 {
			// NFD of this one character, then drop nonspacing marks.
			n.dec = norm.NFD.Append(n.dec[:0], src...)
			for j := 0; j < len(n.dec); {
				d, ds := utf8.DecodeRune(n.dec[j:])
				j += ds
				if unicode.Is(unicode.Mn, d) {
					continue
				}
				b.putLower(n, d, sp)
			}
			continue
		}
		b.putLower(n, r, sp)
	}
	n.commit(from)
}

func (b *bertNormalizer) putLower(n *normString, r rune, sp span) {
	if b.lowercase {
		putLower(n, r, sp)
		return
	}
	n.put(r, sp)
}

// putLower writes Rust's char::to_lowercase of r: the simple mapping except
// U+0130, whose full lowercase is "i\u0307".
func putLower(n *normString, r rune, sp span) {
	if r == 0x130 {
		n.put('i', sp)
		n.put(0x307, sp)
		return
	}
	n.put(unicode.ToLower(r), sp)
}

// isWhitespace is Rust's char::is_whitespace (Unicode White_Space).
func isWhitespace(r rune) bool {
	if r < utf8.RuneSelf {
		return r == ' ' || (r >= '\t' && r <= '\r')
	}
	return unicode.Is(unicode.White_Space, r)
}

// isControl mirrors the BertNormalizer's is_control: the unicode_categories
// crate's is_other, which is Cc, Cf and Co only (not Cn: unassigned code
// points and noncharacters are kept), except tab, newline and carriage
// return, which count as whitespace.
func isControl(r rune) bool {
	if r == '\t' || r == '\n' || r == '\r' {
		return false
	}
	if r < utf8.RuneSelf {
		return r < 0x20 || r == 0x7F
	}
	if r <= 0x9F {
		return true
	}
	return unicode.In(r, unicode.Cf, unicode.Co)
}

// isChineseChar is the CJK ideograph test of the BERT normalizer (the blocks
// the original BERT code pads with spaces).
func isChineseChar(r rune) bool {
	switch {
	case r >= 0x4E00 && r <= 0x9FFF,
		r >= 0x3400 && r <= 0x4DBF,
		r >= 0x20000 && r <= 0x2A6DF,
		r >= 0x2A700 && r <= 0x2B73F,
		r >= 0x2B740 && r <= 0x2B81F,
		r >= 0x2B920 && r <= 0x2CEAF,
		r >= 0xF900 && r <= 0xFAFF,
		r >= 0x2F800 && r <= 0x2FA1F:
		return true
	}
	return false
}

// lowercaseNormalizer is the Lowercase normalizer (Rust char::to_lowercase).
type lowercaseNormalizer struct{}

func (lowercaseNormalizer) normalize(n *normString, from int) {
	n.begin()
	for i := from; i < len(n.s); {
		r, size := n.runeAt(i)
		putLower(n, r, n.align[i])
		i += size
	}
	n.commit(from)
}

// nfdNormalizer is the NFD normalizer: each character is decomposed (all
// pieces keep its span), then runs of combining marks are put in canonical
// order across characters; reordered marks take the spans by position, as
// Rust's alignments do.
type nfdNormalizer struct{}

func (nfdNormalizer) normalize(n *normString, from int) {
	n.begin()
	reorder := false
	for i := from; i < len(n.s); {
		r, size := n.runeAt(i)
		sp := n.align[i]
		if r < 0xC0 {
			n.put(r, sp)
		} else {
			n.dec = norm.NFD.Append(n.dec[:0], n.s[i:i+size]...)
			for j := 0; j < len(n.dec); {
				d, ds := utf8.DecodeRune(n.dec[j:])
				j += ds
				n.put(d, sp)
			}
			reorder = true
		}
		i += size
	}
	n.commit(from)
	if reorder {
		canonicalOrder(n, from)
	}
}

// canonicalOrder stably sorts each run of non-starters (ccc > 0) of
// n.s[from:] by combining class; the run's spans keep their positions.
func canonicalOrder(n *normString, from int) {
	type mark struct {
		ccc uint8
		r   rune
		sp  span
	}
	var run []mark
	var spans []span
	flush := func(end int) {
		if len(run) < 2 {
			run = run[:0]
			return
		}
		sorted := true
		for k := 1; k < len(run); k++ {
			if run[k].ccc < run[k-1].ccc {
				sorted = false
				break
			}
		}
		if !sorted {
			// insertion sort: stable, runs are short
			for k := 1; k < len(run); k++ {
				for j := k; j > 0 && run[j].ccc < run[j-1].ccc; j-- {
					run[j], run[j-1] = run[j-1], run[j]
				}
			}
			at := end
			for _, m := range run {
				at -= utf8.RuneLen(m.r)
			}
			// Spans stay in place (the k-th character of the run takes the
			// k-th span), as Rust's positional alignment does.
			spans = spans[:0]
			for _, m := range run {
				spans = append(spans, m.sp)
			}
			slices.SortStableFunc(spans, func(a, b span) int { return int(a.start) - int(b.start) })
			for k, m := range run {
				w := utf8.EncodeRune(n.s[at:], m.r)
				for j := 0; j < w; j++ {
					n.align[at+j] = spans[k]
				}
				at += w
			}
		}
		run = run[:0]
	}
	for i := from; i < len(n.s); {
		r, size := n.runeAt(i)
		ccc := norm.NFD.Properties(n.s[i : i+size]).CCC()
		if ccc == 0 {
			flush(i)
		} else {
			run = append(run, mark{ccc: ccc, r: r, sp: n.align[i]})
		}
		i += size
	}
	flush(len(n.s))
}

// stripAccentsNormalizer is the StripAccents normalizer: it only removes
// nonspacing marks (use after NFD/NFKD, as Rust does).
type stripAccentsNormalizer struct{}

func (stripAccentsNormalizer) normalize(n *normString, from int) {
	n.begin()
	for i := from; i < len(n.s); {
		r, size := n.runeAt(i)
		if !unicode.Is(unicode.Mn, r) {
			n.put(r, n.align[i])
		}
		i += size
	}
	n.commit(from)
}

// sequenceNormalizer applies normalizers in order.
type sequenceNormalizer []normalizer

func (s sequenceNormalizer) normalize(n *normString, from int) {
	for _, x := range s {
		x.normalize(n, from)
	}
}
