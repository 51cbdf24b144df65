package tokenizer

import (
	"slices"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// change is one output character of a Rust-style transformation together
// with its alignment change, as Rust's NormalizedString::transform takes
// them: 0 replaces the next source character, -k replaces it and removes k
// more, +1 is inserted after the previous source character.
type change struct {
	r     rune
	delta int32
	ccc   uint8 // combining class, used while normalizing
}

// applyChanges replaces n.s[from:] by cs with the alignment rules of Rust's
// NormalizedString::transform_range (initial offset 0): a character with a
// non-positive change takes the span of the source character at the
// current position and consumes it (and -delta more); an inserted one takes
// the span of the last consumed source character. Alignment is therefore
// positional, which is what makes offsets match after composition and
// reordering. Source characters left over at the end are removed.
func (n *normString) applyChanges(from int, cs []change) {
	n.begin()
	idx := from
	end := len(n.s)
	for _, c := range cs {
		var sp span
		switch {
		case c.delta > 0 && idx > from:
			sp = n.align[idx-1]
		case c.delta > 0:
			// Rust aligns a character inserted before everything to the
			// segment's start.
			if from < end {
				sp = span{n.align[from].start, n.align[from].start}
			}
		default:
			switch {
			case idx < end:
				sp = n.align[idx]
			case idx > from:
				sp = n.align[idx-1] // more outputs than inputs: never panic
			}
			for k := int32(0); k < 1-c.delta && idx < end; k++ {
				_, size := n.runeAt(idx)
				idx += size
			}
		}
		n.put(c.r, sp)
	}
	n.commit(from)
}

// unicodeNormalizer is NFC, NFKC or NFKD with the alignments of the Rust
// crate unicode-normalization-alignments: every character is decomposed on
// its own (the first character of a decomposition has change 0, the others
// +1), runs of non-starters are stably sorted by combining class with their
// changes, and composition (for the C forms) turns a composed pair into one
// character whose change is the sum of both minus one. Text already in the
// normal form is left untouched: the changes would all be 0.
//
// Whole strings are never normalized with x/text/unicode/norm directly: it
// inserts U+034F after 30 non-starters (stream-safe format) and Rust does
// not. It is only used per character and for pair composition.
type unicodeNormalizer struct {
	compat  bool // K forms
	compose bool // C forms
}

func (u unicodeNormalizer) form() norm.Form {
	switch {
	case u.compat && u.compose:
		return norm.NFKC
	case u.compat:
		return norm.NFKD
	case u.compose:
		return norm.NFC
	}
	return norm.NFD
}

func (u unicodeNormalizer) normalize(n *normString, from int) {
	seg := n.s[from:]
	if isASCII(seg) || u.form().IsNormal(seg) {
		return
	}
	dform := norm.NFD
	if u.compat {
		dform = norm.NFKD
	}
	cs := n.chg[:0]
	for i := from; i < len(n.s); {
		r, size := n.runeAt(i)
		if r < utf8.RuneSelf {
			cs = append(cs, change{r: r})
			i += size
			continue
		}
		p := dform.Properties(n.s[i : i+size])
		if p.Decomposition() == nil && (r < 0xAC00 || r > 0xD7A3) { // x/text reports no decomposition for Hangul syllables
			cs = append(cs, change{r: r, ccc: p.CCC()})
			i += size
			continue
		}
		n.dec = dform.Append(n.dec[:0], n.s[i:i+size]...)
		for j, k := 0, 0; j < len(n.dec); k++ {
			d, ds := utf8.DecodeRune(n.dec[j:])
			c := change{r: d, ccc: norm.NFD.Properties(n.dec[j : j+ds]).CCC()}
			if k > 0 {
				c.delta = 1
			}
			cs = append(cs, c)
			j += ds
		}
		i += size
	}
	sortMarks(cs)
	if u.compose {
		cs = recompose(cs)
	}
	n.chg = cs
	n.applyChanges(from, cs)
}

// sortMarks stably sorts every run of non-starters by combining class
// (canonical ordering); changes travel with their characters.
func sortMarks(cs []change) {
	for i := 0; i < len(cs); {
		if cs[i].ccc == 0 {
			i++
			continue
		}
		j := i
		for j < len(cs) && cs[j].ccc != 0 {
			j++
		}
		run := cs[i:j]
		if len(run) > 1 && !slices.IsSortedFunc(run, cmpCCC) {
			slices.SortStableFunc(run, cmpCCC)
		}
		i = j
	}
}

func cmpCCC(a, b change) int { return int(a.ccc) - int(b.ccc) }

// recompose is the canonical composition state machine of
// unicode-normalization-alignments, in place over the decomposed stream:
// a starter (the composee) absorbs each following character it composes
// with unless that character is blocked by an earlier one of equal or
// higher class; blocked marks are emitted after the composee.
func recompose(cs []change) []change {
	out := cs[:0] // writes never overtake reads
	var buf [8]change
	pending := buf[:0] // blocked marks waiting for the composee
	var composee change
	have := false
	lastCCC := -1 // -1: nothing blocked since the composee
	flush := func() {
		if have {
			out = append(out, composee)
		}
		out = append(out, pending...)
		pending = pending[:0]
	}
	for _, c := range cs {
		if !have {
			if c.ccc != 0 {
				out = append(out, c)
				continue
			}
			composee, have = c, true
			continue
		}
		if lastCCC >= 0 && lastCCC >= int(c.ccc) {
			// blocked from the composee
			if c.ccc == 0 {
				flush()
				composee, lastCCC = c, -1
				continue
			}
			pending = append(pending, c)
			lastCCC = int(c.ccc)
			continue
		}
		if r, ok := composePair(composee.r, c.r); ok {
			composee.r = r
			composee.delta += c.delta - 1
			continue
		}
		if lastCCC < 0 && c.ccc == 0 {
			out = append(out, composee)
			composee = c
			continue
		}
		pending = append(pending, c)
		lastCCC = int(c.ccc)
	}
	flush()
	return out
}

// composePair returns the primary composite of a and b (Hangul included).
// Every second character of a composition is at or above U+0300, which
// keeps the common case free of the table look-up.
func composePair(a, b rune) (rune, bool) {
	if b < 0x300 {
		return 0, false
	}
	var in [2 * utf8.UTFMax]byte
	k := utf8.EncodeRune(in[:], a)
	k += utf8.EncodeRune(in[k:], b)
	var out [4 * utf8.UTFMax]byte
	res := norm.NFC.Append(out[:0], in[:k]...)
	r, size := utf8.DecodeRune(res)
	if size != len(res) || size == 0 {
		return 0, false
	}
	return r, true
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
