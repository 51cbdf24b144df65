package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/embedgate/embedgate/gateway/tokenizer"
)

// runTokenize is `embedgate tokenize`: JSON lines {"text": ...} in, one JSON
// line per input out, so operators can see exactly what the model is fed.
// A line {"text": ..., "pair": ...} is a pair, encoded with the pair
// template as a cross-encoder reads it (query, document). It truncates only
// with --max-length (a pair LongestFirst, as Hugging Face tokenizers does)
// and never pads (the tokenizer.json's own truncation and padding sections
// are ignored, as in serving).
func runTokenize(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("embedgate tokenize", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("tokenizer", "", "path to a tokenizer.json (required)")
	noSpecial := fs.Bool("no-special-tokens", false, "do not add the post-processor's special tokens")
	maxLength := fs.Int("max-length", 0, "truncate to this many tokens, special tokens included, a pair longest text first (0: no truncation)")
	direction := fs.String("truncation-direction", "right", "which end --max-length cuts: left or right")
	offsets := fs.Bool("offsets", false, "also write tokens and byte offsets")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("tokenize: unexpected argument %q", fs.Arg(0))
	}
	if *path == "" {
		return errors.New("tokenize: --tokenizer is required")
	}
	if *maxLength < 0 {
		return fmt.Errorf("tokenize: --max-length must be >= 0, got %d", *maxLength)
	}
	opts := tokenizer.EncodeOptions{AddSpecialTokens: !*noSpecial, MaxLength: *maxLength, Offsets: *offsets}
	switch strings.ToLower(*direction) {
	case "right":
	case "left":
		opts.TruncateLeft = true
	default:
		return fmt.Errorf("tokenize: --truncation-direction must be left or right, got %q", *direction)
	}
	tok, err := tokenizer.LoadFile(*path)
	if err != nil {
		return fmt.Errorf("tokenize: %w", err)
	}

	type line struct {
		Text *string `json:"text"`
		Pair *string `json:"pair"`
	}
	type result struct {
		IDs           []int32  `json:"ids"`
		TypeIDs       []int32  `json:"type_ids"`
		AttentionMask []int32  `json:"attention_mask"`
		Tokens        []string `json:"tokens,omitempty"`
		Offsets       [][2]int `json:"offsets,omitempty"`
	}
	in := bufio.NewScanner(stdin)
	in.Buffer(make([]byte, 64*1024), 64*1024*1024)
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	for n := 1; in.Scan(); n++ {
		if len(strings.TrimSpace(in.Text())) == 0 {
			continue
		}
		var l line
		if err := json.Unmarshal(in.Bytes(), &l); err != nil {
			return fmt.Errorf("tokenize: line %d: %w", n, err)
		}
		if l.Text == nil {
			return fmt.Errorf(`tokenize: line %d: want {"text": "..."} or {"text": "...", "pair": "..."}`, n)
		}
		var e tokenizer.Encoding
		if l.Pair != nil {
			e = tok.EncodePair(*l.Text, *l.Pair, opts)
		} else {
			e = tok.Encode(*l.Text, opts)
		}
		if err := enc.Encode(result{IDs: e.IDs, TypeIDs: e.TypeIDs, AttentionMask: e.AttentionMask, Tokens: e.Tokens, Offsets: e.Offsets}); err != nil {
			return err
		}
	}
	if err := in.Err(); err != nil {
		return fmt.Errorf("tokenize: reading input: %w", err)
	}
	return nil
}
