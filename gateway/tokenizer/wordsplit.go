package tokenizer

import (
	"encoding/json"
	"fmt"
	"unicode"
)

// whitespacePre is the Whitespace pre-tokenizer, Rust's regex
// `\w+|[^\w\s]+` with everything else removed: maximal runs of word
// characters and maximal runs of other non-space characters.
type whitespacePre struct{}

func (p whitespacePre) preTokenize(n *normString, in []split, out []split) []split {
	return eachText(n, in, out, p.splitText)
}

func (whitespacePre) splitText(n *normString, sp split, out []split) []split {
	start, class := sp.start, 0 // class of the current run: 0 none, 1 word, 2 other
	for i := sp.start; i < sp.end; {
		r, size := n.runeAt(int(i))
		c := 2
		switch {
		case isWordChar(r):
			c = 1
		case isWhitespace(r):
			c = 0
		}
		if c != class {
			if class != 0 {
				out = append(out, split{start: start, end: i, id: -1})
			}
			start, class = i, c
		}
		i += int32(size)
	}
	if class != 0 {
		out = append(out, split{start: start, end: sp.end, id: -1})
	}
	return out
}

// charBehavior is how a pre-tokenizer that matches single characters
// treats them (Rust's SplitDelimiterBehavior).
type charBehavior int8

const (
	charRemoved charBehavior = iota
	charIsolated
	charMergedWithPrevious
	charMergedWithNext
	charContiguous
)

func parseCharBehavior(s string, def charBehavior) (charBehavior, error) {
	switch s {
	case "":
		return def, nil
	case "Removed":
		return charRemoved, nil
	case "Isolated":
		return charIsolated, nil
	case "MergedWithPrevious":
		return charMergedWithPrevious, nil
	case "MergedWithNext":
		return charMergedWithNext, nil
	case "Contiguous":
		return charContiguous, nil
	}
	return 0, fmt.Errorf("unknown behavior %q", s)
}

// charSplit splits on every character matching pred, with a behavior:
// the Punctuation and Digits pre-tokenizers.
type charSplit struct {
	pred     func(rune) bool
	behavior charBehavior
}

func buildPunctuation(raw json.RawMessage) (*charSplit, error) {
	var c struct {
		Behavior string `json:"behavior"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("tokenizer: Punctuation: %w", err)
	}
	b, err := parseCharBehavior(c.Behavior, charIsolated)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: Punctuation: %w", err)
	}
	return &charSplit{pred: isBertPunct, behavior: b}, nil
}

func buildDigits(raw json.RawMessage) (*charSplit, error) {
	var c struct {
		Individual bool `json:"individual_digits"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("tokenizer: Digits: %w", err)
	}
	b := charContiguous
	if c.Individual {
		b = charIsolated
	}
	return &charSplit{pred: isNumeric, behavior: b}, nil
}

// isNumeric is Rust's char::is_numeric: general categories Nd, Nl and No.
func isNumeric(r rune) bool {
	if r < 0x80 {
		return r >= '0' && r <= '9'
	}
	return unicode.IsNumber(r)
}

func (c *charSplit) preTokenize(n *normString, in []split, out []split) []split {
	return eachText(n, in, out, c.splitText)
}

func (c *charSplit) splitText(n *normString, sp split, out []split) []split {
	first := len(out)
	prevMatch := false // whether the last item (match or gap) was a match
	add := func(s, e int32, isMatch bool) {
		merge := false
		switch c.behavior {
		case charRemoved:
			if isMatch {
				prevMatch = true
				return
			}
		case charMergedWithPrevious:
			merge = isMatch && !prevMatch
		case charMergedWithNext:
			merge = !isMatch && prevMatch
		case charContiguous:
			merge = isMatch && prevMatch
		}
		if merge && len(out) > first {
			out[len(out)-1].end = e
		} else {
			out = append(out, split{start: s, end: e, id: -1})
		}
		prevMatch = isMatch
	}
	gap := int32(-1) // start of the current run of non-matching characters
	for i := sp.start; i < sp.end; {
		r, size := n.runeAt(int(i))
		if c.pred(r) {
			if gap >= 0 {
				add(gap, i, false)
				gap = -1
			}
			add(i, i+int32(size), true)
		} else if gap < 0 {
			gap = i
		}
		i += int32(size)
	}
	if gap >= 0 {
		add(gap, sp.end, false)
	}
	return out
}
