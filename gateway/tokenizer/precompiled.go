package tokenizer

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/rivo/uniseg"
)

// precompiled is the Precompiled normalizer: SentencePiece's compiled
// normalization rules (`precompiled_charsmap`, e.g. nmt_nfkc in XLM-R,
// multilingual-e5 and bge-m3 files). The blob is a little-endian uint32
// byte size of a darts-clone double-array trie, the trie's uint32 units,
// then NUL-terminated replacement strings; a trie value is the offset of
// a replacement.
//
// Rust (spm_precompiled + tokenizers) applies it grapheme by grapheme: a
// grapheme shorter than 6 bytes whose start matches a key is replaced
// whole by the replacement of the shortest matching key (so a mark after a
// mapped character disappears with it); otherwise each character is looked
// up on its own. Alignments follow Rust's change lists: replacement
// characters beyond the count replaced are insertions, a shorter
// replacement folds the removal into the previous character.
type precompiled struct {
	units []uint32
	repl  []byte
	ascii [utf8.RuneSelf]asciiRule // look-ups of single ASCII bytes, precomputed
}

type asciiRule struct {
	mapped bool
	to     []byte
}

func buildPrecompiled(raw json.RawMessage) (normalizer, error) {
	var c struct {
		Charsmap *string `json:"precompiled_charsmap"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("tokenizer: Precompiled: %w", err)
	}
	if c.Charsmap == nil || *c.Charsmap == "" {
		return nil, errors.New("tokenizer: Precompiled: no precompiled_charsmap") // Rust refuses it too
	}
	blob, err := base64.StdEncoding.DecodeString(*c.Charsmap)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: Precompiled: precompiled_charsmap: %w", err)
	}
	p, err := newPrecompiled(blob)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: Precompiled: %w", err)
	}
	return p, nil
}

func newPrecompiled(blob []byte) (*precompiled, error) {
	if len(blob) < 4 {
		return nil, errors.New("charsmap shorter than its header")
	}
	size := binary.LittleEndian.Uint32(blob)
	blob = blob[4:]
	if uint64(size) > uint64(len(blob)) {
		return nil, fmt.Errorf("charsmap trie of %d bytes in a blob of %d", size, len(blob))
	}
	nUnits := int(size / 4)
	p := &precompiled{units: make([]uint32, nUnits)}
	for i := range p.units {
		p.units[i] = binary.LittleEndian.Uint32(blob[4*i:])
	}
	p.repl = blob[4*nUnits:]
	if !utf8.Valid(p.repl) {
		return nil, errors.New("charsmap replacements are not UTF-8")
	}
	if nUnits == 0 {
		return nil, errors.New("charsmap has an empty trie")
	}
	for b := range p.ascii {
		to, ok := p.lookup([]byte{byte(b)})
		p.ascii[b] = asciiRule{mapped: ok, to: to}
	}
	return p, nil
}

// lookup returns the replacement of the shortest key that is a prefix of
// key (darts-clone common prefix search, first result).
func (p *precompiled) lookup(key []byte) ([]byte, bool) {
	u := p.units
	pos := uint32(0)
	pos ^= unitOffset(u[0])
	for _, c := range key {
		if c == 0 {
			break
		}
		pos ^= uint32(c)
		if pos >= uint32(len(u)) {
			return nil, false
		}
		unit := u[pos]
		if unit&(1<<31|0xFF) != uint32(c) { // label
			return nil, false
		}
		pos ^= unitOffset(unit)
		if unit>>8&1 == 1 { // has a leaf
			if pos >= uint32(len(u)) {
				return nil, false
			}
			return p.replacement(int(u[pos] & (1<<31 - 1)))
		}
	}
	return nil, false
}

func unitOffset(unit uint32) uint32 { return (unit >> 10) << ((unit & (1 << 9)) >> 6) }

// replacement reads the NUL-terminated string at offset i.
func (p *precompiled) replacement(i int) ([]byte, bool) {
	if i > len(p.repl) || (i < len(p.repl) && !utf8.RuneStart(p.repl[i])) {
		return nil, false // Rust would panic slicing there
	}
	j := i
	for j < len(p.repl) && p.repl[j] != 0 {
		j++
	}
	return p.repl[i:j], true
}

func (p *precompiled) normalize(n *normString, from int) {
	cs := n.chg[:0]
	modified := false
	seg := n.s[from:]
	state := -1
	for i := 0; i < len(seg); {
		var g []byte
		if c := seg[i]; c < utf8.RuneSelf && (i+1 == len(seg) || (seg[i+1] < utf8.RuneSelf && !(c == '\r' && seg[i+1] == '\n'))) {
			// A lone ASCII byte is its own grapheme.
			state = -1
			if r := p.ascii[c]; r.mapped {
				cs, modified = replaceChars(cs, seg[i:i+1], r.to), true
			} else {
				cs = append(cs, change{r: rune(c)})
			}
			i++
			continue
		}
		g, _, _, state = uniseg.FirstGraphemeCluster(seg[i:], state)
		if len(g) == 0 {
			break
		}
		i += len(g)
		if len(g) < 6 {
			if to, ok := p.lookup(g); ok {
				cs, modified = replaceChars(cs, g, to), true
				continue
			}
		}
		for k := 0; k < len(g); {
			r, size := utf8.DecodeRune(g[k:])
			if to, ok := p.lookup(g[k : k+size]); ok {
				cs, modified = replaceChars(cs, g[k:k+size], to), true
			} else {
				cs = append(cs, change{r: r})
			}
			k += size
		}
	}
	n.chg = cs
	if modified {
		n.applyChanges(from, cs)
	}
}

// replaceChars appends the change list of replacing old by to, as the
// tokenizers crate's precompiled replace() builds it.
func replaceChars(cs []change, old, to []byte) []change {
	diff := utf8.RuneCount(to) - utf8.RuneCount(old)
	for _, r := range string(to) {
		cs = append(cs, change{r: r})
	}
	switch {
	case diff > 0:
		for k := len(cs) - diff; k < len(cs); k++ {
			cs[k].delta = 1
		}
	case diff < 0 && len(cs) > 0:
		cs[len(cs)-1].delta += int32(diff)
	}
	return cs
}
