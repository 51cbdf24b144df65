package tokenizer

import (
	"sync"
	"unicode"
	"unicode/utf8"
)

// split is one piece of the pre-tokenized text: a byte range of the
// normalized buffer to be tokenized by the model (id < 0), or a token
// already decided by the added vocabulary (id >= 0) with its original span.
type split struct {
	start, end int32 // range in normString.s (empty for added tokens matched before normalization)
	id         int32 // added token id, or -1
	orig       span  // original span of an added token
}

// preTokenizer refines the splits: it reads in (ranges of n.s) and appends
// the refined splits to out, passing splits with id >= 0 through unchanged.
//
// Pre-tokenizers that rewrite text (ByteLevel's byte-to-char mapping,
// Metaspace's '▁') are added by appending the rewritten pieces to the end of
// n (with alignments) and emitting splits over the new bytes; the model only
// ever sees ranges of n.s, so nothing else changes. Split (regex, Qwen) and
// Whitespace/Punctuation/Digits (wordsplit.go) are further preTokenizer
// types; Metaspace is in metaspace.go.
type preTokenizer interface {
	preTokenize(n *normString, in []split, out []split) []split
}

// eachText is the loop of every pre-tokenizer but the sequence: added
// tokens (id >= 0) pass through unchanged, and splitText refines each split
// of text, appending its pieces to out.
func eachText(n *normString, in, out []split, splitText func(n *normString, sp split, out []split) []split) []split {
	for _, sp := range in {
		if sp.id >= 0 {
			out = append(out, sp)
			continue
		}
		out = splitText(n, sp, out)
	}
	return out
}

// bertPreTokenizer splits on Unicode whitespace (removed) and isolates each
// punctuation character, as Rust's BertPreTokenizer.
type bertPreTokenizer struct{}

func (bertPreTokenizer) preTokenize(n *normString, in []split, out []split) []split {
	return eachText(n, in, out, func(n *normString, sp split, out []split) []split {
		return splitWords(n, sp, out, true)
	})
}

// isBertPunct is ASCII punctuation (which includes symbols such as $ + < = >
// ^ ` | ~) or any Unicode punctuation (P*).
func isBertPunct(r rune) bool {
	if r < utf8.RuneSelf {
		return (r >= '!' && r <= '/') || (r >= ':' && r <= '@') || (r >= '[' && r <= '`') || (r >= '{' && r <= '~')
	}
	return unicode.IsPunct(r)
}

// whitespaceSplit is the WhitespaceSplit pre-tokenizer: split on Unicode
// whitespace, removing it.
type whitespaceSplit struct{}

func (whitespaceSplit) preTokenize(n *normString, in []split, out []split) []split {
	return eachText(n, in, out, func(n *normString, sp split, out []split) []split {
		return splitWords(n, sp, out, false)
	})
}

// splitWords appends the words of sp, split on Unicode whitespace (removed)
// and, with punct, around each punctuation character (isolated): the one
// loop of whitespaceSplit and bertPreTokenizer.
func splitWords(n *normString, sp split, out []split, punct bool) []split {
	word := int32(-1)
	for i := sp.start; i < sp.end; {
		r, size := n.runeAt(int(i))
		switch {
		case isWhitespace(r):
			if word >= 0 {
				out = append(out, split{start: word, end: i, id: -1})
				word = -1
			}
		case punct && isBertPunct(r):
			if word >= 0 {
				out = append(out, split{start: word, end: i, id: -1})
				word = -1
			}
			out = append(out, split{start: i, end: i + int32(size), id: -1})
		default:
			if word < 0 {
				word = i
			}
		}
		i += int32(size)
	}
	if word >= 0 {
		out = append(out, split{start: word, end: sp.end, id: -1})
	}
	return out
}

// sequencePreTokenizer applies pre-tokenizers in order. Intermediate split
// lists come from a pool owned by the sequence, so nested sequences and
// concurrent encodes never share them.
type sequencePreTokenizer struct {
	steps []preTokenizer
	bufs  *sync.Pool // *[]split
}

func newSequencePreTokenizer(steps []preTokenizer) *sequencePreTokenizer {
	return &sequencePreTokenizer{steps: steps, bufs: &sync.Pool{}}
}

func (s *sequencePreTokenizer) preTokenize(n *normString, in []split, out []split) []split {
	if len(s.steps) == 0 {
		return append(out, in...)
	}
	if len(s.steps) == 1 {
		return s.steps[0].preTokenize(n, in, out)
	}
	a, b := s.getBuf(), s.getBuf()
	defer s.bufs.Put(a)
	defer s.bufs.Put(b)
	cur := in
	for k, p := range s.steps {
		if k == len(s.steps)-1 {
			return p.preTokenize(n, cur, out)
		}
		*a = p.preTokenize(n, cur, (*a)[:0])
		cur = *a
		a, b = b, a
	}
	return out
}

func (s *sequencePreTokenizer) getBuf() *[]split {
	if b, ok := s.bufs.Get().(*[]split); ok {
		return b
	}
	return new([]split)
}
