package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
)

// splitBehavior is what Split does with the matches (Rust's
// SplitDelimiterBehavior).
type splitBehavior uint8

const (
	behaviorRemoved splitBehavior = iota
	behaviorIsolated
	behaviorMergedWithPrevious
	behaviorMergedWithNext
	behaviorContiguous
)

// parseBehavior reads the behavior field of Split.
func parseBehavior(s string) (splitBehavior, bool) {
	switch s {
	case "Removed":
		return behaviorRemoved, true
	case "Isolated":
		return behaviorIsolated, true
	case "MergedWithPrevious":
		return behaviorMergedWithPrevious, true
	case "MergedWithNext":
		return behaviorMergedWithNext, true
	case "Contiguous":
		return behaviorContiguous, true
	}
	return 0, false
}

// regexTimeout bounds one regexp2 search so that a pathological fallback
// pattern cannot hang an encode; the rest of the split is then one piece.
// (regexp2 runs one shared clock goroutine while timed searches run.)
const regexTimeout = 2 * time.Second

// splitPre is the Split pre-tokenizer. The patterns real tokenizers use
// (GPT-2, Qwen2/3, Llama-3) run on hand-written scanners; any other regex
// runs on regexp2, which has the lookaround Go's regexp lacks; a String
// pattern is a literal.
type splitPre struct {
	scan     *splitScanner
	re       *regexp2.Regexp
	literal  string
	behavior splitBehavior
	invert   bool
	bufs     *sync.Pool // *[]segment: the pieces of one split
}

// segment is a piece of a split: a range of n.s and whether it matched.
type segment struct {
	start, end int32
	match      bool
}

func buildSplit(raw json.RawMessage) (*splitPre, error) {
	var c struct {
		Pattern struct {
			Regex  *string `json:"Regex"`
			String *string `json:"String"`
		} `json:"pattern"`
		Behavior string `json:"behavior"`
		Invert   bool   `json:"invert"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("tokenizer: Split: %w", err)
	}
	b, ok := parseBehavior(c.Behavior)
	if !ok {
		return nil, fmt.Errorf("tokenizer: Split: unknown behavior %q", c.Behavior)
	}
	p := &splitPre{behavior: b, invert: c.Invert, bufs: &sync.Pool{}}
	switch {
	case c.Pattern.String != nil:
		p.literal = *c.Pattern.String
		if p.literal == "" {
			return nil, errors.New("tokenizer: Split: empty String pattern")
		}
	case c.Pattern.Regex != nil:
		if p.scan = scannerFor(*c.Pattern.Regex); p.scan != nil {
			break
		}
		re, err := regexp2.Compile(*c.Pattern.Regex, regexp2.None)
		if err != nil {
			return nil, fmt.Errorf("tokenizer: Split: pattern %q: %w", *c.Pattern.Regex, err)
		}
		re.MatchTimeout = regexTimeout
		p.re = re
	default:
		return nil, errors.New("tokenizer: Split: pattern is neither Regex nor String")
	}
	return p, nil
}

func (p *splitPre) preTokenize(n *normString, in []split, out []split) []split {
	return eachText(n, in, out, p.splitText)
}

func (p *splitPre) splitText(n *normString, sp split, out []split) []split {
	if sp.end <= sp.start {
		return out
	}
	if p.scan != nil && p.behavior == behaviorIsolated && !p.invert {
		// The common case: matches tile the text and each is a split.
		seg := n.s[sp.start:sp.end]
		for i := 0; i < len(seg); {
			j := p.scan.next(seg, i)
			out = append(out, split{start: sp.start + int32(i), end: sp.start + int32(j), id: -1})
			i = j
		}
		return out
	}
	buf := p.getBuf()
	segs := p.find(n.s[sp.start:sp.end], sp.start, (*buf)[:0])
	out = applyBehavior(segs, p.behavior, out)
	*buf = segs
	p.bufs.Put(buf)
	return out
}

func (p *splitPre) getBuf() *[]segment {
	if b, ok := p.bufs.Get().(*[]segment); ok {
		return b
	}
	return new([]segment)
}

// find lists the matched and unmatched pieces of s (which starts at base in
// n.s), in order, covering s, as Rust's Pattern::find_matches does; invert
// swaps the two kinds.
func (p *splitPre) find(s []byte, base int32, segs []segment) []segment {
	add := func(a, b int, m bool) {
		if b > a {
			segs = append(segs, segment{start: base + int32(a), end: base + int32(b), match: m != p.invert})
		}
	}
	prev := 0
	switch {
	case p.scan != nil:
		for i := 0; i < len(s); {
			j := p.scan.next(s, i)
			add(i, j, true)
			i = j
		}
		prev = len(s)
	case p.literal != "":
		for i := 0; i+len(p.literal) <= len(s); {
			if string(s[i:i+len(p.literal)]) != p.literal {
				i++
				continue
			}
			add(prev, i, false)
			add(i, i+len(p.literal), true)
			i += len(p.literal)
			prev = i
		}
	default:
		prev = p.findRegex(s, add)
	}
	add(prev, len(s), false)
	return segs
}

// findRegex reports the regexp2 matches of s to add and returns the end of
// the last one. regexp2 counts in runes; we convert back to bytes.
func (p *splitPre) findRegex(s []byte, add func(a, b int, m bool)) int {
	text := string(s)
	runeAt := make([]int, 0, len(text)+1) // byte offset of each rune
	for i := range text {
		runeAt = append(runeAt, i)
	}
	runeAt = append(runeAt, len(text))
	if utf8.RuneCountInString(text) != len(runeAt)-1 {
		return 0
	}
	prev := 0
	m, err := p.re.FindStringMatch(text)
	for err == nil && m != nil {
		a, b := runeAt[m.Index], runeAt[m.Index+m.Length]
		add(prev, a, false)
		add(a, b, true)
		prev = b
		m, err = p.re.FindNextMatch(m)
	}
	return prev
}

// applyBehavior turns the pieces of one split into splits, following
// NormalizedString::split in Rust.
func applyBehavior(segs []segment, b splitBehavior, out []split) []split {
	emit := func(a, e int32) {
		if e > a {
			out = append(out, split{start: a, end: e, id: -1})
		}
	}
	switch b {
	case behaviorRemoved:
		for _, s := range segs {
			if !s.match {
				emit(s.start, s.end)
			}
		}
	case behaviorIsolated:
		for _, s := range segs {
			emit(s.start, s.end)
		}
	case behaviorContiguous:
		for i := 0; i < len(segs); {
			j := i + 1
			for j < len(segs) && segs[j].match == segs[i].match {
				j++
			}
			emit(segs[i].start, segs[j-1].end)
			i = j
		}
	case behaviorMergedWithPrevious:
		// a match joins the piece before it (unless that was a match too)
		k0 := len(out)
		prevMatch := false
		for _, s := range segs {
			if s.match && !prevMatch && len(out) > k0 {
				out[len(out)-1].end = s.end
			} else {
				out = append(out, split{start: s.start, end: s.end, id: -1})
			}
			prevMatch = s.match
		}
	case behaviorMergedWithNext:
		// a match joins the piece after it (unless that is a match too)
		for i := 0; i < len(segs); {
			a, e := segs[i].start, segs[i].end
			if segs[i].match && i+1 < len(segs) && !segs[i+1].match {
				e = segs[i+1].end
				i++
			}
			i++
			emit(a, e)
		}
	}
	return out
}
