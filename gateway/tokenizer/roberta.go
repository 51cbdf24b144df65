package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// buildRoberta reads RobertaProcessing: <s> A </s> like BertProcessing,
// <s> A </s> </s> B </s> for a pair, every type id 0, plus byte-level
// offset trimming of the sequence tokens.
func buildRoberta(raw json.RawMessage) (*postProcessor, error) {
	var c struct {
		Sep            [2]json.RawMessage `json:"sep"`
		Cls            [2]json.RawMessage `json:"cls"`
		TrimOffsets    *bool              `json:"trim_offsets"`
		AddPrefixSpace *bool              `json:"add_prefix_space"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("tokenizer: RobertaProcessing: %w", err)
	}
	cls, sep, err := clsSep("RobertaProcessing", c.Cls, c.Sep)
	if err != nil {
		return nil, err
	}
	p := newPostProcessor([]piece{cls, {sequence: true}, sep}, pairOf([]piece{cls}, []piece{sep, sep}, []piece{sep}, 0))
	p.trimOffsets, p.prefixSpace = boolOr(c.TrimOffsets, true), boolOr(c.AddPrefixSpace, true)
	return p, nil
}

// buildByteLevelPost reads the ByteLevel post-processor: no special tokens,
// only the offset trimming.
func buildByteLevelPost(raw json.RawMessage) (*postProcessor, error) {
	var c struct {
		TrimOffsets    *bool `json:"trim_offsets"`
		AddPrefixSpace *bool `json:"add_prefix_space"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("tokenizer: ByteLevel post_processor: %w", err)
	}
	p := plainPostProcessor()
	p.trimOffsets, p.prefixSpace = boolOr(c.TrimOffsets, true), boolOr(c.AddPrefixSpace, true)
	return p, nil
}

// buildSequencePost reads a Sequence of post-processors. Trimming only
// moves offsets and only the template adds tokens, so the sequence reduces
// to one template (at most one member may add special tokens) with the
// trimming of any member.
func buildSequencePost(raw json.RawMessage) (*postProcessor, error) {
	var c struct {
		Processors []json.RawMessage `json:"processors"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("tokenizer: post_processor Sequence: %w", err)
	}
	var out *postProcessor
	trim, prefix := false, false
	for _, r := range c.Processors {
		p, err := buildPostProcessor(r)
		if err != nil {
			return nil, err
		}
		if p == nil {
			continue
		}
		if p.trimOffsets {
			trim, prefix = true, prefix || p.prefixSpace
		}
		if hasSequenceOnly(p) {
			if out == nil {
				out = p
			}
			continue
		}
		if out != nil && !hasSequenceOnly(out) {
			return nil, errors.New("tokenizer: post_processor Sequence: more than one processor adds special tokens")
		}
		out = p
	}
	if out == nil {
		return nil, nil
	}
	out.trimOffsets, out.prefixSpace = trim, prefix
	return out, nil
}

// hasSequenceOnly reports whether p adds nothing around a sequence or a
// pair.
func hasSequenceOnly(p *postProcessor) bool {
	return p.nSpecial == 0 && p.nPairSpecial == 0 && len(p.single) == 1 && len(p.pair) == 2
}

func boolOr(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}

// trimByteLevelOffsets is Rust's byte_level::process_offsets for one token:
// the leading and trailing spaces of the token ('Ġ' or whitespace) are cut
// from its offsets, except the single space add_prefix_space added to the
// first token. Rust adds the number of characters to byte offsets; we add
// their byte length in the input (the same for 'Ġ', which stands for one
// byte) so that offsets stay on character boundaries.
func trimByteLevelOffsets(tok string, s, e int, first, prefixSpace bool) (int, int) {
	lead, leadBytes := 0, 0
	for i := 0; i < len(tok); {
		r, size := utf8.DecodeRuneInString(tok[i:])
		if r != 'Ġ' && !isWhitespace(r) {
			break
		}
		lead++
		leadBytes += spaceBytes(r, size)
		i += size
	}
	trail, trailBytes := 0, 0
	for j := len(tok); j > 0; {
		r, size := utf8.DecodeLastRuneInString(tok[:j])
		if r != 'Ġ' && !isWhitespace(r) {
			break
		}
		trail++
		trailBytes += spaceBytes(r, size)
		j -= size
	}
	if lead > 0 {
		if (first || s == 0) && prefixSpace && lead == 1 {
			leadBytes = 0
		}
		s = min(s+leadBytes, e)
	}
	if trail > 0 && e >= trailBytes {
		e = max(e-trailBytes, s)
	}
	return s, e
}

// spaceBytes is the input length of a space character of a token: 'Ġ' is
// the byte-level form of one space byte; other whitespace is itself.
func spaceBytes(r rune, size int) int {
	if r == 'Ġ' {
		return 1
	}
	return size
}

// floorBoundary moves i back to the start of the character it is in. Trimming
// the space add_prefix_space put before a multi-byte first character cuts
// that character's span (Rust returns the cut, mid-character offset; its
// character offsets then round down, as here).
func floorBoundary(src string, i int) int {
	for i > 0 && i < len(src) && !utf8.RuneStart(src[i]) {
		i--
	}
	return i
}
