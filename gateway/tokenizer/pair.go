package tokenizer

// EncodePair encodes a pair of texts, first and second (a cross-encoder's
// query and document), with the post-processor's pair template: [CLS] A
// [SEP] B [SEP] with B of type id 1 for BERT, <s> A </s> </s> B </s> for
// RoBERTa and XLM-R. With MaxLength > 0 the pair is truncated to MaxLength
// tokens in total, special tokens included, with the LongestFirst strategy
// (see LongestFirst), each text losing its tokens from the end, or with
// TruncateLeft from the start. When both texts have MaxLength tokens or
// more, which keeps the odd token of an odd budget follows Rust, which
// compares their lengths counted up to the first word end past MaxLength
// tokens. A MaxLength below PairSpecialTokensCount keeps the special tokens
// only. Offsets of the second text's tokens are into second. Like Encode it
// never fails and reads text that is not valid UTF-8 lossily.
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
	// odd token: their capped lengths decide (capped reads further).
	limit := opts.MaxLength + 1 // overflows to < 0, "all", for math.MaxInt
	t.pairSequences(&seqs, first, second, limit, opts.TruncateLeft, w)
	n1, n2 := len(seqs[0].toks), len(seqs[1].toks)
	if budget%2 == 1 && n1 >= opts.MaxLength && n2 >= opts.MaxLength {
		n1 = t.capped(&seqs[0], first, opts, w)
		n2 = t.capped(&seqs[1], second, opts, w)
	}
	k1, k2 := LongestFirst(n1, n2, budget)
	seqs[0].toks = truncate(seqs[0].toks, k1, opts.TruncateLeft)
	seqs[1].toks = truncate(seqs[1].toks, k2, opts.TruncateLeft)
	return t.assemble(pieces, seqs[:], opts)
}

// capped tokenizes text into s again, far enough to find its cappedLen,
// and returns it: first a window of twice MaxLength tokens (a word rarely
// has more), then, if no word of it ends past MaxLength tokens, the whole
// text.
func (t *Tokenizer) capped(s *seqInput, text string, opts EncodeOptions, w window) int {
	limit := 2 * opts.MaxLength
	s.src, s.lpos, s.toks = t.sequence(s.sc, text, limit, opts.TruncateLeft, w)
	if n, ok := cappedLen(s.toks, opts.MaxLength, opts.TruncateLeft, len(s.toks) < limit); ok {
		return n
	}
	s.src, s.lpos, s.toks = t.sequence(s.sc, text, -1, false, w)
	n, _ := cappedLen(s.toks, opts.MaxLength, opts.TruncateLeft, true)
	return n
}

// cappedLen is the length Rust's truncated encode gives a sequence before
// LongestFirst reads it: it tokenizes pre-token splits from the start (from
// the end if left) and stops at the end of the first split (not an added
// token) with which it has maxLen tokens or more, maxLen being the whole
// maximum length, special tokens included
// (PreTokenizedString::tokenize_with_limit). Two texts both that long thus
// compare by where their words end, not by their whole lengths.
//
// toks are the sequence's first tokens (its last if left), all of them if
// whole; if not, the farthest one may end inside a split, and ok is false
// if the stop is not found before it.
func cappedLen(toks []tok, maxLen int, left, whole bool) (n int, ok bool) {
	k := len(toks)
	for i := range k {
		j, ends := i, i+1 < k && toks[i+1].first
		if left {
			j, ends = k-1-i, toks[k-1-i].first && i+1 < k
		}
		if i+1 == k && whole {
			ends = true
		}
		if ends && !toks[j].added && i+1 >= maxLen {
			return i + 1, true
		}
	}
	return k, whole
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
