package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// Metaspace prepend schemes.
const (
	prependAlways = iota
	prependFirst
	prependNever
)

// metaspace is the Metaspace pre-tokenizer (SentencePiece style): spaces
// become the replacement character ('▁'), the replacement is prepended to
// each word (always, only to the word at the start of the input, or never)
// unless the word already starts with it, and the word is cut before every
// replacement character (Rust's split with MergedWithNext).
//
// As in Rust, a replaced space keeps its own span and a prepended '▁'
// takes the span of the word's first character. The rewritten word is
// appended to the end of the normalized buffer; the splits point there.
type metaspace struct {
	rep     []byte // the replacement character, UTF-8
	prepend int
	split   bool
}

func buildMetaspace(raw json.RawMessage) (*metaspace, error) {
	var c struct {
		Replacement    *string `json:"replacement"`
		PrependScheme  *string `json:"prepend_scheme"`
		AddPrefixSpace *bool   `json:"add_prefix_space"` // files before prepend_scheme
		Split          *bool   `json:"split"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("tokenizer: Metaspace: %w", err)
	}
	m := &metaspace{rep: []byte("▁"), prepend: prependAlways, split: true}
	if c.Replacement != nil {
		if utf8.RuneCountInString(*c.Replacement) != 1 {
			return nil, fmt.Errorf("tokenizer: Metaspace: replacement %q is not one character", *c.Replacement)
		}
		m.rep = []byte(*c.Replacement)
	}
	switch {
	case c.PrependScheme != nil:
		switch *c.PrependScheme {
		case "always":
			m.prepend = prependAlways
		case "first":
			m.prepend = prependFirst
		case "never":
			m.prepend = prependNever
		default:
			return nil, fmt.Errorf("tokenizer: Metaspace: unknown prepend_scheme %q", *c.PrependScheme)
		}
	case c.AddPrefixSpace != nil && !*c.AddPrefixSpace:
		m.prepend = prependNever
	}
	if c.Split != nil {
		m.split = *c.Split
	}
	return m, nil
}

func (m *metaspace) preTokenize(n *normString, in []split, out []split) []split {
	return eachText(n, in, out, m.splitText)
}

func (m *metaspace) splitText(n *normString, sp split, out []split) []split {
	if sp.end <= sp.start {
		return append(out, sp)
	}
	a, b := sp.start, sp.end
	word := n.s[a:b]
	// The prepend test looks at the word after spaces are replaced.
	startsWithRep := word[0] == ' ' || bytes.HasPrefix(word, m.rep)
	prepend := !startsWithRep && (m.prepend == prependAlways ||
		(m.prepend == prependFirst && n.align[a].start == 0))
	if prepend || (m.rep[0] != ' ' && bytes.IndexByte(word, ' ') >= 0) {
		start := int32(len(n.s))
		if prepend {
			n.appendSpan(m.rep, n.align[a])
		}
		for i := a; i < b; i++ {
			if c := n.s[i]; c == ' ' {
				n.appendSpan(m.rep, n.align[i])
			} else {
				n.s = append(n.s, c)
				n.align = append(n.align, n.align[i])
			}
		}
		a, b = start, int32(len(n.s))
	}
	return m.cut(n, a, b, out)
}

// cut splits n.s[a:b] before every replacement character.
func (m *metaspace) cut(n *normString, a, b int32, out []split) []split {
	if !m.split {
		return append(out, split{start: a, end: b, id: -1})
	}
	start := a
	for i := a; i < b; {
		j := bytes.Index(n.s[i:b], m.rep)
		if j < 0 {
			break
		}
		pos := i + int32(j)
		if pos > start {
			out = append(out, split{start: start, end: pos, id: -1})
			start = pos
		}
		i = pos + int32(len(m.rep))
	}
	return append(out, split{start: start, end: b, id: -1})
}

// appendSpan appends b to the buffer, every byte with span sp.
func (n *normString) appendSpan(b []byte, sp span) {
	n.s = append(n.s, b...)
	for range b {
		n.align = append(n.align, sp)
	}
}
