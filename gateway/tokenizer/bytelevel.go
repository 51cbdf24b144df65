package tokenizer

import (
	"encoding/json"
	"fmt"
	"slices"
)

// byteChar is GPT-2's byte-to-unicode table: every byte becomes a printable
// character (printable Latin-1 bytes map to themselves, the others to
// U+0100 onwards, in byte order), stored UTF-8 encoded. Computed once and
// only read afterwards.
var byteChar = func() (t [256]struct {
	b [2]byte
	n uint8
}) {
	next := rune(256)
	for b := 0; b < 256; b++ {
		r := rune(b)
		printable := (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)
		if !printable {
			r = next
			next++
		}
		if r < 0x80 {
			t[b].b[0], t[b].n = byte(r), 1
		} else {
			// every mapped rune is below U+0800: two UTF-8 bytes
			t[b].b[0], t[b].b[1], t[b].n = byte(0xC0|r>>6), byte(0x80|r&0x3F), 2
		}
	}
	return t
}()

// byteLevel is the ByteLevel pre-tokenizer: optionally a leading space,
// optionally the GPT-2 split pattern, then every byte of every split is
// replaced by its byteChar. The rewritten splits are appended to the end of
// the normalized buffer, each byte keeping the span of the original
// character it came from, as Rust's transform does.
type byteLevel struct {
	addPrefixSpace bool
	useRegex       bool
}

func (b *byteLevel) preTokenize(n *normString, in []split, out []split) []split {
	return eachText(n, in, out, b.splitText)
}

func (b *byteLevel) splitText(n *normString, sp split, out []split) []split {
	if sp.end <= sp.start {
		return out
	}
	start, end := sp.start, sp.end
	if b.addPrefixSpace && n.s[start] != ' ' {
		// The scan must see the added space, so copy " "+split to the
		// end first; the space takes the span of the first character,
		// as Rust's prepend does.
		at := int32(len(n.s))
		n.s = append(n.s, ' ')
		n.align = append(n.align, n.align[start])
		n.s = append(n.s, n.s[start:end]...)
		n.align = append(n.align, n.align[start:end]...)
		start, end = at, int32(len(n.s))
	}
	k0 := len(out)
	if b.useRegex {
		seg := n.s[start:end]
		for i := 0; i < len(seg); {
			j := gpt2Scanner.next(seg, i)
			out = append(out, split{start: start + int32(i), end: start + int32(j), id: -1})
			i = j
		}
	} else {
		out = append(out, split{start: start, end: end, id: -1})
	}
	mapBytes(n, start, end, out[k0:])
	return out
}

// mapBytes appends the byte-level rewrite of n.s[start:end] to n and moves
// the contiguous splits parts (which cover [start, end) in order) onto it.
func mapBytes(n *normString, start, end int32, parts []split) {
	n.s = slices.Grow(n.s, 2*int(end-start))
	n.align = slices.Grow(n.align, 2*int(end-start))
	pos := int32(len(n.s))
	k := 0
	for p := start; p < end; p++ {
		for k < len(parts) && parts[k].start == p {
			parts[k].start = pos
			if k > 0 {
				parts[k-1].end = pos
			}
			k++
		}
		c := &byteChar[n.s[p]]
		sp := n.align[p]
		n.s = append(n.s, c.b[:c.n]...)
		n.align = append(n.align, sp)
		if c.n == 2 {
			n.align = append(n.align, sp)
		}
		pos += int32(c.n)
	}
	if len(parts) > 0 {
		parts[len(parts)-1].end = pos
	}
}

func buildByteLevel(raw json.RawMessage) (*byteLevel, error) {
	var c struct {
		AddPrefixSpace *bool `json:"add_prefix_space"`
		UseRegex       *bool `json:"use_regex"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("tokenizer: ByteLevel: %w", err)
	}
	return &byteLevel{addPrefixSpace: boolOr(c.AddPrefixSpace, true), useRegex: boolOr(c.UseRegex, true)}, nil
}
