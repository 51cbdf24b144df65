package tokenizer

// EncodePair encodes a pair of texts, first and second (a cross-encoder's
// query and document), with the post-processor's pair template: [CLS] A
// [SEP] B [SEP] with B of type id 1 for BERT, <s> A </s> </s> B </s> for
// RoBERTa and XLM-R. With MaxLength > 0 the pair is truncated to MaxLength
// tokens in total, special tokens included, with the LongestFirst strategy
// (see LongestFirst), each text losing its tokens from the end, or with
// TruncateLeft from the start. A MaxLength below PairSpecialTokensCount
// keeps the special tokens only. Offsets of the second text's tokens are
// into second. Like Encode it never fails and reads text that is not valid
// UTF-8 lossily.
func (t *Tokenizer) EncodePair(first, second string, opts EncodeOptions) Encoding {
	return t.encodePair(first, second, opts, window{perToken: windowPerToken, extra: windowExtra})
}

// encodePair is EncodePair with the sizing of the bounded windows.
func (t *Tokenizer) encodePair(first, second string, opts EncodeOptions, w window) Encoding {
	sa, sb := t.getScratch(), t.getScratch()
	defer t.putScratch(sa)
	defer t.putScratch(sb)
	pieces, nSpecial := t.post.templateFor(true, opts)
	seqs := [2]seqInput{{sc: sa}, {sc: sb}}
	if opts.MaxLength <= 0 {
		t.pairSequences(&seqs, first, second, -1, false, w)
		return t.assemble(pieces, seqs[:], opts)
	}
	budget := max(opts.MaxLength-nSpecial, 0)
	// Rust tokenizes a text to be truncated only until it has MaxLength
	// tokens (cappedLen) and LongestFirst reads those lengths. Knowing each
	// up to MaxLength+1 tokens is enough: a text shorter than MaxLength is
	// whole, and a text at least that long keeps at most budget tokens.
	// When both are that long and the budget is odd, the longer keeps the
	// odd token: their capped lengths decide, and they need whole texts.
	limit := opts.MaxLength + 1
	t.pairSequences(&seqs, first, second, limit, opts.TruncateLeft, w)
	n1, n2 := len(seqs[0].toks), len(seqs[1].toks)
	if budget%2 == 1 && n1 >= opts.MaxLength && n2 >= opts.MaxLength {
		t.pairSequences(&seqs, first, second, -1, false, w)
		n1 = cappedLen(seqs[0].toks, opts.MaxLength, opts.TruncateLeft)
		n2 = cappedLen(seqs[1].toks, opts.MaxLength, opts.TruncateLeft)
	}
	k1, k2 := LongestFirst(n1, n2, budget)
	seqs[0].toks = truncate(seqs[0].toks, k1, opts.TruncateLeft)
	seqs[1].toks = truncate(seqs[1].toks, k2, opts.TruncateLeft)
	return t.assemble(pieces, seqs[:], opts)
}

// cappedLen is the length Rust's truncated encode gives a sequence of toks
// before LongestFirst reads it: it tokenizes pre-token splits from the
// start (from the end if left) and stops at the end of the first split
// (not an added token) with which it has maxLen tokens or more, maxLen
// being the whole maximum length, special tokens included
// (PreTokenizedString::tokenize_with_limit). Two texts both that long thus
// compare by where their words end, not by their whole lengths.
func cappedLen(toks []tok, maxLen int, left bool) int {
	n := len(toks)
	for i := range n {
		j, ends := i, i == n-1 || toks[i+1].first
		if left {
			j, ends = n-1-i, toks[n-1-i].first
		}
		if ends && !toks[j].added && i+1 >= maxLen {
			return i + 1
		}
	}
	return n
}

// pairSequences tokenizes the two texts of a pair into seqs, each
// truncated to limit tokens (< 0: all), from the start if left.
func (t *Tokenizer) pairSequences(seqs *[2]seqInput, first, second string, limit int, left bool, w window) {
	for i, text := range [2]string{first, second} {
		s := &seqs[i]
		s.src, s.lpos, s.toks = t.sequence(s.sc, text, limit, left, w)
	}
}

// LongestFirst is how the Hugging Face tokenizers library's LongestFirst
// strategy (truncate_encodings) shares maxLen tokens between two sequences
// of n1 and n2 tokens; it returns how many each keeps. If both fit, both
// are kept whole. Otherwise the shorter is kept whole if it takes no more
// than half of maxLen and the longer gets the rest; else each gets half,
// the odd token going to the longer (to the second if they are equally
// long). A caller budgeting a pair passes maxLen without the pair's special
// tokens (PairSpecialTokensCount).
func LongestFirst(n1, n2, maxLen int) (int, int) {
	n1, n2, maxLen = max(n1, 0), max(n2, 0), max(maxLen, 0)
	if n1+n2 <= maxLen {
		return n1, n2
	}
	short, long := n1, n2
	swap := n1 > n2
	if swap {
		short, long = n2, n1
	}
	if short > maxLen {
		long = short
	} else {
		long = max(short, maxLen-short)
	}
	if short+long > maxLen {
		short = maxLen / 2
		long = short + maxLen%2
	}
	if swap {
		return long, short
	}
	return short, long
}
