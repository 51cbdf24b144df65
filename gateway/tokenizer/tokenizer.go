// Package tokenizer provides a pure-Go implementation of the Hugging Face
// tokenizers `tokenizer.json` pipeline (added tokens, normalizer,
// pre-tokenizer, model, post-processor, truncation, padding, offsets) whose
// output matches the Rust library exactly, for single texts and for pairs
// (EncodePair, the input of cross-encoders). It imports the standard
// library, golang.org/x/text, github.com/dlclark/regexp2 (regex patterns,
// with the lookaround of Rust's Oniguruma) and github.com/rivo/uniseg
// (grapheme clusters, which the SentencePiece charsmap works on).
//
// Implemented: BertNormalizer, Lowercase, NFC, NFD, NFKC, NFKD,
// StripAccents, Replace, Prepend, Strip, Precompiled and Sequence
// normalizers; BertPreTokenizer, WhitespaceSplit, Whitespace, Punctuation,
// Digits, Metaspace, ByteLevel, Split and Sequence pre-tokenizers; the
// WordPiece, BPE and Unigram models; TemplateProcessing, BertProcessing,
// RobertaProcessing, ByteLevel and Sequence post-processors. That covers
// BERT, GPT-2/RoBERTa, Qwen2/3, Llama-2/3 and XLM-R style files. Loading a
// file that uses any other component fails with an error naming it.
//
// Input that is not valid UTF-8 is read the way Rust's
// String::from_utf8_lossy reads it (one U+FFFD per maximal invalid subpart);
// offsets always refer to the caller's bytes.
package tokenizer

import (
	"sync"
)

// Tokenizer encodes text with one tokenizer.json. It is immutable after
// Load and safe for concurrent use.
type Tokenizer struct {
	norm  normalizer   // nil: identity
	pre   preTokenizer // nil: the whole segment is one word
	model model
	post  *postProcessor // never nil: plainPostProcessor if the file has none

	added       map[string]*addedToken // by content
	addedByID   map[int32]*addedToken
	rawMatch    *matcher // added tokens matched on the original text
	normMatch   *matcher // added tokens matched on the normalized text
	vocab       map[string]int32
	idToTok     []string
	vocabSize   int
	padID       int32
	hasPad      bool
	literalUnk  int32     // model id whose token string is its text (Unigram unk), or -1
	cuts        *cutRule  // where a text may be cut for a bounded encode; nil: nowhere
	scratchPool sync.Pool // *scratch
}

// EncodeOptions choose what Encode does beyond tokenizing.
type EncodeOptions struct {
	AddSpecialTokens bool
	MaxLength        int  // 0 = no truncation; else total length incl. special tokens
	TruncateLeft     bool // cut from the start instead of the end
	Offsets          bool // also fill Offsets and Tokens
}

// tok is a token of the sequence before post-processing, with its span in
// the (lossy-decoded) input.
type tok struct {
	id   int32
	orig span
	norm span // normalized range of an added token matched after normalization
	kind int8 // 0 model token, 1 raw added token, 2 normalized added token
	// first: the token starts its pre-token split (a word, or an added
	// token); added: the split is an added token. Rust's truncated encode
	// stops at split ends (see cappedLen).
	first, added bool
}

// scratch is the per-call working memory, pooled per tokenizer so that
// encoding allocates little more than its result.
type scratch struct {
	ns      normString
	splits  []split
	splits2 []split
	matches []match
	mtoks   []mtok
	toks    []tok
	wbuf    []byte
	lossy   []byte
	lpos    []int32
}

func (t *Tokenizer) getScratch() *scratch {
	if s, ok := t.scratchPool.Get().(*scratch); ok {
		return s
	}
	return &scratch{}
}

func (t *Tokenizer) putScratch(s *scratch) {
	// Do not keep huge buffers (a 1 MB input) alive forever.
	if cap(s.ns.s) > 1<<20 || cap(s.toks) > 1<<18 {
		return
	}
	t.scratchPool.Put(s)
}

// Encode tokenizes text. It never fails: text that is not valid UTF-8 is
// decoded lossily first. A truncated encode (MaxLength > 0) of a long text
// tokenizes only a window of it when the tokenizer allows (see bound.go);
// the result is the same as tokenizing all of it and then truncating.
func (t *Tokenizer) Encode(text string, opts EncodeOptions) Encoding {
	return t.encode(text, opts, window{perToken: windowPerToken, extra: windowExtra})
}

// encode is Encode with the sizing of the bounded window.
func (t *Tokenizer) encode(text string, opts EncodeOptions, w window) Encoding {
	sc := t.getScratch()
	defer t.putScratch(sc)
	pieces, nSpecial := t.post.templateFor(false, opts)
	limit := -1 // sequence tokens to keep; -1: all
	if opts.MaxLength > 0 {
		limit = max(opts.MaxLength-nSpecial, 0)
	}
	seq := [1]seqInput{{sc: sc}}
	seq[0].src, seq[0].lpos, seq[0].toks = t.sequence(sc, text, limit, opts.TruncateLeft, w)
	return t.assemble(pieces, seq[:], opts)
}

// seqInput is one tokenized sequence to assemble: its tokens, read from src
// (whose bytes come from lpos in the input if not nil) with the scratch sc
// (whose normalized text the tokens' strings may come from).
type seqInput struct {
	sc   *scratch
	src  string
	lpos []int32
	toks []tok
}

// assemble builds the encoding of the template pieces, the sequence pieces
// filled from seqs (the first, and for a pair the second).
func (t *Tokenizer) assemble(pieces []piece, seqs []seqInput, opts EncodeOptions) Encoding {
	total := 0
	for _, p := range pieces {
		if p.sequence {
			total += len(seqs[seqIndex(p)].toks)
		} else {
			total += len(p.ids)
		}
	}
	buf := make([]int32, 4*total)
	e := Encoding{
		IDs:               buf[0:total:total],
		TypeIDs:           buf[total : 2*total : 2*total],
		AttentionMask:     buf[2*total : 3*total : 3*total],
		SpecialTokensMask: buf[3*total : 4*total : 4*total],
	}
	if opts.Offsets {
		e.Offsets = make([][2]int, total)
		e.Tokens = make([]string, total)
	}
	k := 0
	for _, p := range pieces {
		if p.sequence {
			s := &seqs[seqIndex(p)]
			t.emitSequence(&e, k, s, p.typeID)
			k += len(s.toks)
			continue
		}
		for j, id := range p.ids {
			e.IDs[k] = id
			e.TypeIDs[k] = p.typeID
			e.AttentionMask[k] = 1
			e.SpecialTokensMask[k] = 1
			if opts.Offsets {
				e.Tokens[k] = p.tokens[j]
			}
			k++
		}
	}
	return e
}

// seqIndex is the index in assemble's seqs of a sequence piece.
func seqIndex(p piece) int {
	if p.second {
		return 1
	}
	return 0
}

// emitSequence writes the tokens of s at position k of e. Offsets are into
// the sequence's own input.
func (t *Tokenizer) emitSequence(e *Encoding, k int, s *seqInput, typeID int32) {
	toks := s.toks
	for i, tk := range toks {
		e.IDs[k+i] = tk.id
		e.TypeIDs[k+i] = typeID
		e.AttentionMask[k+i] = 1
	}
	if e.Offsets == nil {
		return
	}
	for i, tk := range toks {
		a, b := int(tk.orig.start), int(tk.orig.end)
		switch tk.kind {
		case 0:
			e.Tokens[k+i] = t.idToTok[tk.id]
		case 1:
			e.Tokens[k+i] = s.src[a:b]
		case 2:
			e.Tokens[k+i] = string(s.sc.ns.s[tk.norm.start:tk.norm.end])
		}
		if t.post.trimOffsets {
			a, b = trimByteLevelOffsets(e.Tokens[k+i], a, b, i == 0, t.post.prefixSpace)
			a, b = floorBoundary(s.src, a), floorBoundary(s.src, b)
		}
		if s.lpos != nil {
			a, b = int(s.lpos[a]), int(s.lpos[b])
		}
		e.Offsets[k+i] = [2]int{a, b}
	}
}

// tokenizeRange runs added-token extraction, normalization,
// pre-tokenization and the model on src[lo:hi], returning the tokens of the
// sequence (in sc.toks) with spans into src. A window that starts inside
// the text (lo > 0, at a cut: see cuts.go) does not start a segment.
func (t *Tokenizer) tokenizeRange(sc *scratch, src string, lo, hi int) []tok {
	ns := &sc.ns
	ns.reset()
	sc.splits = sc.splits[:0]
	sc.toks = sc.toks[:0]

	// 1. Added tokens on the original text; normalize the gaps one by one.
	sc.matches = sc.matches[:0]
	if !t.rawMatch.empty() {
		sc.matches = findMatches(t.rawMatch, src[lo:hi], sc.matches)
	}
	pos := lo
	for _, m := range sc.matches {
		start, end := lo+m.start, lo+m.end
		if start > pos {
			t.normalizeSegment(sc, src, pos, start, pos == lo && lo > 0)
		}
		at := int32(len(ns.s))
		sc.splits = append(sc.splits, split{start: at, end: at, id: m.tok.id, orig: span{int32(start), int32(end)}})
		pos = end
	}
	if pos < hi {
		t.normalizeSegment(sc, src, pos, hi, pos == lo && lo > 0)
	}

	// 2. Pre-tokenize.
	splits := sc.splits
	if t.pre != nil {
		sc.splits2 = t.pre.preTokenize(ns, sc.splits, sc.splits2[:0])
		splits = sc.splits2
	}

	// 3. Model.
	for _, sp := range splits {
		if sp.id >= 0 {
			kind := int8(1)
			if sp.end > sp.start {
				kind = 2
			}
			sc.toks = append(sc.toks, tok{id: sp.id, orig: sp.orig, norm: span{sp.start, sp.end}, kind: kind, first: true, added: true})
			continue
		}
		if sp.end <= sp.start {
			continue
		}
		sc.mtoks = t.model.tokenize(sc.mtoks[:0], ns.s[sp.start:sp.end], &sc.wbuf)
		for i, mt := range sc.mtoks {
			a, b := sp.start+mt.start, sp.start+mt.end
			tk := tok{id: mt.id, orig: span{ns.align[a].start, ns.align[b-1].end}, first: i == 0}
			if mt.id == t.literalUnk {
				tk.kind, tk.norm = 2, span{a, b}
			}
			sc.toks = append(sc.toks, tk)
		}
	}
	return sc.toks
}

// normalizeSegment appends src[a:b] to the normalized buffer, normalizes it
// and splits it on added tokens that match normalized text. cont: src[a:b]
// continues a segment that starts before a (a bounded window's first).
func (t *Tokenizer) normalizeSegment(sc *scratch, src string, a, b int, cont bool) {
	ns := &sc.ns
	from := len(ns.s)
	ns.appendOriginal(src[a:b], a)
	if t.norm != nil {
		ns.cont = cont
		t.norm.normalize(ns, from)
		ns.cont = false
	}
	if t.normMatch.empty() {
		sc.splits = append(sc.splits, split{start: int32(from), end: int32(len(ns.s)), id: -1})
		return
	}
	base := len(sc.matches)
	sc.matches = findMatches(t.normMatch, ns.s[from:], sc.matches)
	pos := from
	for _, m := range sc.matches[base:] {
		s, e := from+m.start, from+m.end
		if s > pos {
			sc.splits = append(sc.splits, split{start: int32(pos), end: int32(s), id: -1})
		}
		orig := span{}
		if e > s {
			orig = span{ns.align[s].start, ns.align[e-1].end}
		}
		sc.splits = append(sc.splits, split{start: int32(s), end: int32(e), id: m.tok.id, orig: orig})
		pos = e
	}
	sc.matches = sc.matches[:base]
	if pos < len(ns.s) {
		sc.splits = append(sc.splits, split{start: int32(pos), end: int32(len(ns.s)), id: -1})
	}
}

// setVocab records the model vocabulary plus added tokens for id/token
// lookups.
func (t *Tokenizer) setVocab(vocab map[string]int32, added []addedTokenJSON) {
	t.vocab = vocab
	maxID := int32(-1)
	for _, id := range vocab {
		maxID = max(maxID, id)
	}
	for _, a := range added {
		maxID = max(maxID, a.ID)
	}
	t.vocabSize = int(maxID) + 1
	t.idToTok = make([]string, t.vocabSize)
	for s, id := range vocab {
		if id >= 0 {
			t.idToTok[id] = s
		}
	}
	for _, a := range added {
		if a.ID >= 0 {
			t.idToTok[a.ID] = a.Content
		}
	}
}

// buildAdded prepares the two added-token matchers. Tokens with
// normalized=true are matched on normalized text, against their own
// normalized content, as Rust's AddedVocabulary does.
func (t *Tokenizer) buildAdded(added []addedTokenJSON) {
	t.added = make(map[string]*addedToken, len(added))
	t.addedByID = make(map[int32]*addedToken, len(added))
	var rawPat, normPat []string
	var rawTok, normTok []*addedToken
	for _, a := range added {
		if a.Content == "" || a.ID < 0 {
			continue
		}
		at := &addedToken{id: a.ID, content: a.Content, singleWord: a.SingleWord, lstrip: a.LStrip,
			rstrip: a.RStrip, normalized: a.Normalized, special: a.Special}
		t.added[a.Content] = at
		t.addedByID[a.ID] = at
		if !a.Normalized {
			rawPat, rawTok = append(rawPat, a.Content), append(rawTok, at)
			continue
		}
		content := a.Content
		if t.norm != nil {
			var ns normString
			ns.appendOriginal(content, 0)
			t.norm.normalize(&ns, 0)
			content = string(ns.s)
		}
		normPat, normTok = append(normPat, content), append(normTok, at)
	}
	t.rawMatch = newMatcher(rawPat, rawTok)
	t.normMatch = newMatcher(normPat, normTok)
}

// findPad picks the padding id: the file's padding section, else the first
// of the usual pad tokens present in the vocabulary.
func (t *Tokenizer) findPad(p *paddingJSON) (int32, bool) {
	if p != nil {
		if p.PadToken != "" {
			if id, ok := t.TokenToID(p.PadToken); ok {
				return id, true
			}
		}
		return p.PadID, true
	}
	for _, s := range []string{"[PAD]", "<pad>", "<|endoftext|>", "<|end_of_text|>", "<|finetune_right_pad_id|>", "<unk>"} {
		if id, ok := t.TokenToID(s); ok {
			return id, true
		}
	}
	return 0, false
}

// PadID is the id to pad with: the file's padding section, else [PAD],
// <pad>, <|endoftext|>, <|end_of_text|>, <|finetune_right_pad_id|> or <unk>,
// whichever the vocabulary has first.
func (t *Tokenizer) PadID() (int32, bool) { return t.padID, t.hasPad }

// SpecialTokensCount is the number of tokens the post-processor adds to one
// sequence.
func (t *Tokenizer) SpecialTokensCount() int { return t.post.nSpecial }

// PairSpecialTokensCount is the number of tokens the post-processor adds to
// a pair (3 for BERT, 4 for RoBERTa and XLM-R): a pair truncated to
// MaxLength keeps MaxLength minus this many tokens of its two texts.
func (t *Tokenizer) PairSpecialTokensCount() int { return t.post.nPairSpecial }

// VocabSize is the size of the id space: model vocabulary plus added tokens
// (highest id + 1).
func (t *Tokenizer) VocabSize() int { return t.vocabSize }

// TokenToID looks a token up in the added tokens, then the model vocabulary.
func (t *Tokenizer) TokenToID(s string) (int32, bool) {
	if a, ok := t.added[s]; ok {
		return a.id, true
	}
	id, ok := t.vocab[s]
	return id, ok
}

// IDToToken returns the token string of id.
func (t *Tokenizer) IDToToken(id int32) (string, bool) {
	if id < 0 || int(id) >= len(t.idToTok) {
		return "", false
	}
	return t.idToTok[id], true
}
