package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp/syntax"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
)

// replaceNormalizer is the Replace normalizer: every non-overlapping match
// of the pattern, leftmost first, becomes content. As in Rust's
// NormalizedString::replace, the inserted characters all take the span of
// the last character of the match (an empty match: of the character
// before it), so offsets never point into the middle of a replaced run.
//
// String patterns, and regexes that are a plain literal or a repeated
// single character (the XLM-R " {2,}"), are matched without a regex
// engine; other regexes run on regexp2, whose backtracking semantics
// (lookaround, possessive and lazy quantifiers) are those of the Oniguruma
// engine Rust uses.
type replaceNormalizer struct {
	literal []byte         // plain pattern; empty: see rep and re
	rep     *repeatPattern // r{min,max}
	re      *regexp2.Regexp
	content string
}

// repeatPattern is a greedy run of one character, min to max (max < 0:
// unbounded) times.
type repeatPattern struct {
	r        rune
	min, max int
}

func buildReplace(raw json.RawMessage) (*replaceNormalizer, error) {
	var c struct {
		Pattern struct {
			String *string `json:"String"`
			Regex  *string `json:"Regex"`
		} `json:"pattern"`
		Content string `json:"content"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("tokenizer: Replace: %w", err)
	}
	r := &replaceNormalizer{content: c.Content}
	switch {
	case c.Pattern.String != nil:
		r.literal = []byte(*c.Pattern.String)
	case c.Pattern.Regex != nil:
		pat := *c.Pattern.Regex
		if lit, rep, ok := simpleRegex(pat); ok {
			r.literal, r.rep = []byte(lit), rep
			break
		}
		re, err := regexp2.Compile(pat, regexp2.None)
		if err != nil {
			return nil, fmt.Errorf("tokenizer: Replace: pattern %q: %w", pat, err)
		}
		re.MatchTimeout = regexTimeout // as for Split: a runaway pattern gives up, it does not hang
		r.re = re
	default:
		return nil, fmt.Errorf("tokenizer: Replace: pattern must be String or Regex")
	}
	return r, nil
}

// simpleRegex recognizes a regex that is a literal string or a greedy
// repetition of one literal character, which mean the same in every regex
// dialect and can be matched by a scan.
func simpleRegex(pat string) (string, *repeatPattern, bool) {
	re, err := syntax.Parse(pat, syntax.Perl)
	if err != nil || re.Flags&(syntax.FoldCase|syntax.NonGreedy) != 0 {
		return "", nil, false
	}
	switch re.Op {
	case syntax.OpLiteral:
		if len(re.Rune) > 0 {
			return string(re.Rune), nil, true
		}
	case syntax.OpPlus, syntax.OpRepeat:
		sub := re.Sub[0]
		if sub.Op != syntax.OpLiteral || len(sub.Rune) != 1 || sub.Flags&syntax.FoldCase != 0 {
			return "", nil, false
		}
		rp := &repeatPattern{r: sub.Rune[0], min: 1, max: -1}
		if re.Op == syntax.OpRepeat {
			rp.min, rp.max = re.Min, re.Max
		}
		if rp.min < 1 {
			return "", nil, false // can match empty: leave it to the engine
		}
		return "", rp, true
	}
	return "", nil, false
}

func (r *replaceNormalizer) normalize(n *normString, from int) {
	seg := n.s[from:]
	switch {
	case r.re != nil:
		r.replaceRegex(n, from)
		return
	case r.rep != nil:
		if bytes.IndexRune(seg, r.rep.r) < 0 {
			return
		}
	default:
		if len(r.literal) == 0 || !bytes.Contains(seg, r.literal) {
			return
		}
	}
	n.begin()
	last := from
	for pos := from; pos < len(n.s); {
		s, e, ok := r.next(n.s, pos)
		if !ok {
			break
		}
		r.emit(n, from, last, s, e)
		last, pos = e, e
	}
	r.finish(n, from, last)
}

// next finds the next match at or after pos (literal and repeat patterns).
func (r *replaceNormalizer) next(s []byte, pos int) (int, int, bool) {
	if r.rep == nil {
		i := bytes.Index(s[pos:], r.literal)
		if i < 0 {
			return 0, 0, false
		}
		return pos + i, pos + i + len(r.literal), true
	}
	rp := r.rep
	for pos < len(s) {
		i := bytes.IndexRune(s[pos:], rp.r)
		if i < 0 {
			return 0, 0, false
		}
		start := pos + i
		end, count := start, 0
		for end < len(s) && (rp.max < 0 || count < rp.max) {
			c, size := utf8.DecodeRune(s[end:])
			if c != rp.r {
				break
			}
			end += size
			count++
		}
		if count >= rp.min {
			return start, end, true
		}
		pos = end
	}
	return 0, 0, false
}

// emit copies n.s[last:s] and writes content for the match [s, e).
func (r *replaceNormalizer) emit(n *normString, from, last, s, e int) {
	n.ts = append(n.ts, n.s[last:s]...)
	n.talign = append(n.talign, n.align[last:s]...)
	var sp span
	switch {
	case e > from:
		sp = n.align[e-1]
	case from < len(n.s):
		sp = span{n.align[from].start, n.align[from].start}
	}
	for _, c := range r.content {
		n.put(c, sp)
	}
}

func (r *replaceNormalizer) finish(n *normString, from, last int) {
	n.ts = append(n.ts, n.s[last:]...)
	n.talign = append(n.talign, n.align[last:]...)
	n.commit(from)
}

// replaceRegex runs the regexp2 engine, which works on runes: match
// positions are mapped back to bytes.
func (r *replaceNormalizer) replaceRegex(n *normString, from int) {
	text := string(n.s[from:])
	m, err := r.re.FindStringMatch(text)
	if err != nil || m == nil {
		return
	}
	// byte offset of each rune index (plus the end)
	offs := make([]int, 0, len(text)+1)
	for i := range text {
		offs = append(offs, i)
	}
	offs = append(offs, len(text))
	n.begin()
	last := from
	for m != nil {
		s, e := from+offs[m.Index], from+offs[m.Index+m.Length]
		r.emit(n, from, last, s, e)
		last = e
		m, err = r.re.FindNextMatch(m)
		if err != nil {
			break
		}
	}
	r.finish(n, from, last)
}

// stripNormalizer is the Strip normalizer: leading and/or trailing
// whitespace (char::is_whitespace) is removed; the rest keeps its spans.
type stripNormalizer struct{ left, right bool }

func (st stripNormalizer) normalize(n *normString, from int) {
	a, b := from, len(n.s)
	if st.left && !n.cont {
		for a < b {
			r, size := n.runeAt(a)
			if !isWhitespace(r) {
				break
			}
			a += size
		}
	}
	if st.right {
		for b > a {
			r, size := lastRune(n.s[a:b])
			if !isWhitespace(r) {
				break
			}
			b -= size
		}
	}
	if a == from && b == len(n.s) {
		return
	}
	n.s = append(n.s[:from], n.s[a:b]...)
	n.align = append(n.align[:from], n.align[a:b]...)
}

// prependNormalizer is the Prepend normalizer: non-empty text gets the
// prefix, which takes the span of the first character (Rust's
// NormalizedString::prepend).
type prependNormalizer struct{ prefix string }

func (p prependNormalizer) normalize(n *normString, from int) {
	if from >= len(n.s) || p.prefix == "" || n.cont {
		return
	}
	sp := n.align[from]
	n.begin()
	for _, c := range p.prefix {
		n.put(c, sp)
	}
	n.ts = append(n.ts, n.s[from:]...)
	n.talign = append(n.talign, n.align[from:]...)
	n.commit(from)
}
