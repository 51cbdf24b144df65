package tokenizer

import "unicode/utf8"

// span is a byte range [start, end) in the original input.
type span struct{ start, end int32 }

// normString is text under normalization together with, for every byte of
// the normalized text, the original span of the character it came from.
// This is the alignment model of the Rust NormalizedString: a normalized
// character that replaces an original one inherits its span, an inserted
// character inherits the span of the character before it, and removed
// characters simply disappear. Token offsets are then the start of the first
// byte's span and the end of the last byte's span.
//
// Normalizers work on the tail of the buffer from a given index so that the
// segments between added tokens can be normalized independently (as Rust
// does) while sharing one buffer.
type normString struct {
	s     []byte
	align []span
	// double buffers for transforms
	ts     []byte
	talign []span
	// dec is scratch for per-character decompositions
	dec []byte
	// chg is scratch for change lists (see applyChanges)
	chg []change
	// cont: the text being normalized continues a segment that started
	// before it (the first segment of a window a bounded encode cut out
	// of the text), so the segment-start edits of Prepend and Strip do
	// not apply.
	cont bool
}

func (n *normString) reset() {
	n.s = n.s[:0]
	n.align = n.align[:0]
}

// appendOriginal appends src (a slice of the input starting at byte base)
// with identity alignment.
func (n *normString) appendOriginal(src string, base int) {
	n.s = append(n.s, src...)
	for i := 0; i < len(src); {
		size := 1
		if src[i] >= utf8.RuneSelf {
			_, size = utf8.DecodeRuneInString(src[i:])
		}
		sp := span{int32(base + i), int32(base + i + size)}
		for k := 0; k < size; k++ {
			n.align = append(n.align, sp)
		}
		i += size
	}
}

// begin starts a transform of n.s[from:]: the output is written with put and
// committed with commit.
func (n *normString) begin() {
	n.ts = n.ts[:0]
	n.talign = n.talign[:0]
}

// put appends rune r with original span sp to the transform output.
func (n *normString) put(r rune, sp span) {
	if r < utf8.RuneSelf {
		n.ts = append(n.ts, byte(r))
		n.talign = append(n.talign, sp)
		return
	}
	n.ts = utf8.AppendRune(n.ts, r)
	for k := utf8.RuneLen(r); k > 0; k-- {
		n.talign = append(n.talign, sp)
	}
}

// commit replaces n.s[from:] with the transform output.
func (n *normString) commit(from int) {
	n.s = append(n.s[:from], n.ts...)
	n.align = append(n.align[:from], n.talign...)
}

// runeAt decodes the rune at byte i of the normalized text (always valid
// UTF-8: it is built from valid input and encoded runes).
func (n *normString) runeAt(i int) (rune, int) {
	if c := n.s[i]; c < utf8.RuneSelf {
		return rune(c), 1
	}
	return utf8.DecodeRune(n.s[i:])
}

// lossyUTF8 returns text decoded the way Rust's String::from_utf8_lossy does
// (one U+FFFD per maximal invalid subpart, as the WHATWG decoder) and, for
// every byte of the result plus one past the end, the byte position in text
// it came from. Only called for invalid input.
func lossyUTF8(text string, buf []byte, pos []int32) (string, []int32) {
	buf = buf[:0]
	pos = pos[:0]
	for i := 0; i < len(text); {
		c := text[i]
		if c < utf8.RuneSelf {
			buf = append(buf, c)
			pos = append(pos, int32(i))
			i++
			continue
		}
		n := validPrefix(text[i:])
		if n > 0 {
			buf = append(buf, text[i:i+n]...)
			for k := 0; k < n; k++ {
				pos = append(pos, int32(i+k))
			}
			i += n
			continue
		}
		// invalid: consume the maximal subpart (lead + valid continuations)
		m := invalidSubpart(text[i:])
		buf = append(buf, "\uFFFD"...)
		pos = append(pos, int32(i), int32(i), int32(i))
		i += m
	}
	pos = append(pos, int32(len(text)))
	return string(buf), pos
}

// validPrefix returns the length of the valid multi-byte sequence at the start
// of s, or 0 if it is not one.
func validPrefix(s string) int {
	r, size := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError && size <= 1 {
		return 0
	}
	return size
}

// invalidSubpart returns the length of the maximal subpart of an ill-formed
// sequence at the start of s (at least 1), per Unicode 3.9 / WHATWG.
func invalidSubpart(s string) int {
	c := s[0]
	var need int
	lo, hi := byte(0x80), byte(0xBF)
	switch {
	case c >= 0xC2 && c <= 0xDF:
		need = 1
	case c == 0xE0:
		need, lo = 2, 0xA0
	case c >= 0xE1 && c <= 0xEC, c == 0xEE, c == 0xEF:
		need = 2
	case c == 0xED:
		need, hi = 2, 0x9F
	case c == 0xF0:
		need, lo = 3, 0x90
	case c >= 0xF1 && c <= 0xF3:
		need = 3
	case c == 0xF4:
		need, hi = 3, 0x8F
	default:
		return 1
	}
	n := 1
	for k := 0; k < need && n < len(s); k++ {
		b := s[n]
		if b < lo || b > hi {
			break
		}
		lo, hi = 0x80, 0xBF
		n++
	}
	return n
}
