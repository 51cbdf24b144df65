package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// Hand-written scanners for the split patterns real tokenizers use. They
// reproduce Oniguruma's leftmost-first backtracking on these patterns (what
// Rust's tokenizers runs): Unicode \s (White_Space), \p{L}, \p{N}, the
// contractions, and the \s+(?!\S) lookahead that leaves the last whitespace
// character of a run to the next word. A regex engine per call would cost
// more than the whole rest of the pipeline.
const (
	gpt2Pattern   = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
	qwenPattern   = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	llama3Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

// charClass is the class of a character as the patterns see it.
type charClass uint8

const (
	clOther   charClass = iota // [^\s\p{L}\p{N}]
	clLetter                   // \p{L}
	clNumber                   // \p{N}
	clSpace                    // \s other than \r and \n
	clNewline                  // \r or \n
)

var asciiClass = func() (t [utf8.RuneSelf]charClass) {
	for c := range t {
		switch {
		case c == '\r' || c == '\n':
			t[c] = clNewline
		case c == ' ' || (c >= '\t' && c <= '\r'):
			t[c] = clSpace
		case (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'):
			t[c] = clLetter
		case c >= '0' && c <= '9':
			t[c] = clNumber
		}
	}
	return t
}()

// classAt returns the class and byte size of the character at s[i]. Bytes
// that are not valid UTF-8 (not produced by our decoding, but the scanner
// must not trust that) count as one "other" character each.
func classAt(s []byte, i int) (charClass, int) {
	if c := s[i]; c < utf8.RuneSelf {
		return asciiClass[c], 1
	}
	r, size := utf8.DecodeRune(s[i:])
	switch {
	case unicode.IsLetter(r):
		return clLetter, size
	case unicode.IsNumber(r):
		return clNumber, size
	case unicode.Is(unicode.White_Space, r):
		return clSpace, size
	}
	return clOther, size
}

// splitScanner finds the end of the match that starts at i (every character
// of the text starts a match for these patterns, so matches tile the text).
type splitScanner struct {
	qwen      bool // the Qwen2/Llama-3 pattern; false: GPT-2
	maxDigits int  // \p{N} (1) or \p{N}{1,3} (3); GPT-2: unbounded
}

var gpt2Scanner = &splitScanner{}

// scannerFor returns the scanner implementing pattern, or nil.
func scannerFor(pattern string) *splitScanner {
	switch pattern {
	case gpt2Pattern:
		return gpt2Scanner
	case qwenPattern:
		return &splitScanner{qwen: true, maxDigits: 1}
	case llama3Pattern:
		return &splitScanner{qwen: true, maxDigits: 3}
	}
	return nil
}

// run returns the end of the run of class c starting at i, at most max
// characters long (max <= 0: unbounded).
func run(s []byte, i int, c charClass, limit int) int {
	for k := 0; i < len(s) && (limit <= 0 || k < limit); k++ {
		cc, size := classAt(s, i)
		if cc != c {
			break
		}
		i += size
	}
	return i
}

func (sc *splitScanner) next(s []byte, i int) int {
	if s[i] == '\'' {
		if n := contraction(s[i+1:], sc.qwen); n > 0 {
			return i + 1 + n
		}
	}
	c, size := classAt(s, i)
	if sc.qwen {
		return sc.nextQwen(s, i, c, size)
	}
	// ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`
	if s[i] == ' ' && i+1 < len(s) {
		if c2, size2 := classAt(s, i+1); c2 == clLetter || c2 == clNumber || c2 == clOther {
			return run(s, i+1+size2, c2, 0)
		}
	}
	if c == clLetter || c == clNumber || c == clOther {
		return run(s, i+size, c, 0)
	}
	return spaceRun(s, i)
}

func (sc *splitScanner) nextQwen(s []byte, i int, c charClass, size int) int {
	// `[^\r\n\p{L}\p{N}]?\p{L}+`
	if c == clOther || c == clSpace {
		if i+size < len(s) {
			if c2, size2 := classAt(s, i+size); c2 == clLetter {
				return run(s, i+size+size2, clLetter, 0)
			}
		}
	}
	switch c {
	case clLetter:
		return run(s, i+size, clLetter, 0)
	case clNumber:
		if sc.maxDigits <= 1 {
			return i + size
		}
		return run(s, i+size, clNumber, sc.maxDigits-1)
	}
	// ` ?[^\s\p{L}\p{N}]+[\r\n]*`
	if s[i] == ' ' && i+1 < len(s) {
		if c2, size2 := classAt(s, i+1); c2 == clOther {
			return run(s, run(s, i+1+size2, clOther, 0), clNewline, 0)
		}
	}
	if c == clOther {
		return run(s, run(s, i+size, clOther, 0), clNewline, 0)
	}
	// `\s*[\r\n]+`: the whitespace run up to its last \r or \n
	j, lastNL := i, -1
	for j < len(s) {
		cc, sz := classAt(s, j)
		if cc != clSpace && cc != clNewline {
			break
		}
		if cc == clNewline {
			lastNL = j
		}
		j += sz
	}
	if lastNL >= 0 {
		return lastNL + 1
	}
	return spaceRun(s, i)
}

// spaceRun matches `\s+(?!\S)|\s+` at i (a whitespace character): the whole
// run at the end of the text, else the run minus its last character (which
// then prefixes the next word), else the single character.
func spaceRun(s []byte, i int) int {
	j, last := i, 0
	for j < len(s) {
		cc, sz := classAt(s, j)
		if cc != clSpace && cc != clNewline {
			break
		}
		j, last = j+sz, sz
	}
	if j == len(s) || j-last == i {
		return j
	}
	return j - last
}

// contraction returns the length of the contraction suffix ('s, 't, 're,
// 've, 'm, 'll, 'd without the apostrophe) at the start of s, or 0.
// Case-insensitive matching follows Unicode simple case folding, under
// which U+017F (long s) is an s.
func contraction(s []byte, fold bool) int {
	lower := func(k int) byte {
		if k >= len(s) {
			return 0
		}
		c := s[k]
		if fold && c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		return c
	}
	switch lower(0) {
	case 's', 't', 'm', 'd':
		return 1
	case 'r', 'v':
		if lower(1) == 'e' {
			return 2
		}
	case 'l':
		if lower(1) == 'l' {
			return 2
		}
	case 0xC5:
		if fold && len(s) > 1 && s[1] == 0xBF { // U+017F
			return 2
		}
	}
	return 0
}
