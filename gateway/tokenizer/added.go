package tokenizer

import (
	"sort"
	"unicode"
	"unicode/utf8"
)

// addedToken is one entry of the file's added_tokens.
type addedToken struct {
	id         int32
	content    string
	singleWord bool
	lstrip     bool
	rstrip     bool
	normalized bool
	special    bool
}

// matcher finds added tokens leftmost-longest, like the aho-corasick
// LeftmostLongest automaton Rust uses: at the first position where any
// pattern matches, the longest pattern wins, and the search resumes after it.
// Patterns are bucketed by first byte, longest first.
type matcher struct {
	patterns []string
	tokens   []*addedToken // parallel to patterns
	byFirst  [256][]int32
}

func newMatcher(patterns []string, tokens []*addedToken) *matcher {
	m := &matcher{patterns: patterns, tokens: tokens}
	for i, p := range patterns {
		if p == "" {
			continue
		}
		m.byFirst[p[0]] = append(m.byFirst[p[0]], int32(i))
	}
	for b := range m.byFirst {
		l := m.byFirst[b]
		sort.SliceStable(l, func(i, j int) bool { return len(patterns[l[i]]) > len(patterns[l[j]]) })
	}
	return m
}

func (m *matcher) empty() bool { return m == nil || len(m.patterns) == 0 }

// match is an added token found in a text: the token and its byte range
// (after lstrip/rstrip widening).
type match struct {
	tok        *addedToken
	start, end int
}

// findMatches appends to dst the added tokens found in s, applying the
// single_word, lstrip and rstrip rules of Rust's AddedVocabulary::find_matches.
func findMatches[T ~string | ~[]byte](m *matcher, s T, dst []match) []match {
	startOffset := 0
	for i := 0; i < len(s); {
		cands := m.byFirst[s[i]]
		pi := int32(-1)
		for _, c := range cands {
			p := m.patterns[c]
			if len(s)-i >= len(p) && string(s[i:i+len(p)]) == p {
				pi = c
				break
			}
		}
		if pi < 0 {
			i++
			continue
		}
		start, stop := i, i+len(m.patterns[pi])
		i = stop // the automaton resumes after the match, whatever we do with it
		tok := m.tokens[pi]
		if tok.singleWord {
			startSpace := start == 0 || !endsWithWord(s[:start])
			stopSpace := stop == len(s) || !startsWithWord(s[stop:])
			if !startSpace || !stopSpace {
				continue
			}
		}
		if tok.lstrip {
			ns := start
			for ns > 0 {
				r, size := lastRune(s[:ns])
				if !isWhitespace(r) {
					break
				}
				ns -= size
			}
			start = max(ns, startOffset)
		}
		if tok.rstrip {
			for stop < len(s) {
				r, size := firstRune(s[stop:])
				if !isWhitespace(r) {
					break
				}
				stop += size
			}
		}
		if start < startOffset {
			start = startOffset
		}
		dst = append(dst, match{tok: tok, start: start, end: stop})
		startOffset = stop
		if i < stop {
			i = stop
		}
	}
	return dst
}

func firstRune[T ~string | ~[]byte](s T) (rune, int) {
	if s[0] < utf8.RuneSelf {
		return rune(s[0]), 1
	}
	n := min(len(s), utf8.UTFMax)
	var b [utf8.UTFMax]byte
	copy(b[:], string(s[:n]))
	return utf8.DecodeRune(b[:n])
}

func lastRune[T ~string | ~[]byte](s T) (rune, int) {
	j := len(s) - 1
	for j > 0 && j > len(s)-utf8.UTFMax && !utf8.RuneStart(s[j]) {
		j--
	}
	var b [utf8.UTFMax]byte
	n := copy(b[:], string(s[j:]))
	r, size := utf8.DecodeRune(b[:n])
	if size != n {
		return utf8.RuneError, 1
	}
	return r, size
}

// isWordChar is the regex \w of Rust's regex crate (Unicode): alphabetic,
// marks, decimal digits, connector punctuation and join controls.
func isWordChar(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsMark(r) || unicode.Is(unicode.Nd, r) ||
		unicode.Is(unicode.Pc, r) || unicode.Is(unicode.Nl, r) ||
		unicode.Is(unicode.Other_Alphabetic, r) || unicode.Is(unicode.Join_Control, r)
}

func endsWithWord[T ~string | ~[]byte](s T) bool {
	if len(s) == 0 {
		return false
	}
	r, _ := lastRune(s)
	return isWordChar(r)
}

func startsWithWord[T ~string | ~[]byte](s T) bool {
	if len(s) == 0 {
		return false
	}
	r, _ := firstRune(s)
	return isWordChar(r)
}
