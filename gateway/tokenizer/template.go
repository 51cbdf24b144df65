package tokenizer

// piece is one element of a template: either a sequence (the first, or with
// second the second of a pair) or a special token (possibly several ids),
// with its type id.
type piece struct {
	sequence bool
	second   bool // the sequence is the pair's second (Rust's Sequence::B)
	typeID   int32
	ids      []int32
	tokens   []string
}

// postProcessor adds the special tokens around one sequence or a pair.
// TemplateProcessing, BertProcessing and RobertaProcessing all reduce to a
// single and a pair template. Without special tokens only the templates'
// sequence pieces remain (plainSingle, plainPair), with their type ids: the
// template's for TemplateProcessing (Rust applies the template and skips
// its special tokens), 0 and 1 for BertProcessing (it returns the sequences
// as encoded, the second with type id 1), 0 for RobertaProcessing (it
// resets every type id to 0).
//
// RobertaProcessing is the template <s> A </s> (</s> B </s>) plus
// trim_offsets, applied to the sequence tokens' offsets in emitSequence;
// the ByteLevel post-processor is trim_offsets alone; a Sequence folds into
// one template (see roberta.go). A tokenizer without a post-processor has
// the one of plainPostProcessor.
type postProcessor struct {
	single, pair           []piece
	plainSingle, plainPair []piece
	nSpecial               int // ids added by the single template's special pieces
	nPairSpecial           int // ids added by the pair template's special pieces
	// trimOffsets: cut spaces from the offsets of the sequence tokens
	// (RobertaProcessing, ByteLevel), keeping the one add_prefix_space
	// added when prefixSpace; see trimByteLevelOffsets.
	trimOffsets, prefixSpace bool
}

func newPostProcessor(single, pair []piece) *postProcessor {
	p := &postProcessor{single: single, pair: pair}
	p.plainSingle, p.nSpecial = splitTemplate(single)
	p.plainPair, p.nPairSpecial = splitTemplate(pair)
	return p
}

// splitTemplate returns the sequence pieces of a template and the number
// of ids its special pieces add.
func splitTemplate(tmpl []piece) (seqs []piece, nSpecial int) {
	for _, pc := range tmpl {
		if pc.sequence {
			seqs = append(seqs, pc)
			continue
		}
		nSpecial += len(pc.ids)
	}
	return seqs, nSpecial
}

// plainPostProcessor is what a tokenizer without a post-processor does: no
// special tokens, the second sequence of a pair with type id 1 (Rust's
// default_process keeps the type ids the sequences were encoded with).
func plainPostProcessor() *postProcessor {
	return newPostProcessor([]piece{{sequence: true}}, pairOf(nil, nil, nil, 1))
}

// pairOf builds the pair template first A mid B last, A with type id 0 and B
// with typeB: the shape of BertProcessing, RobertaProcessing and the
// default pair template "$A:0 $B:1". The special pieces keep their own
// type ids.
func pairOf(first, mid, last []piece, typeB int32) []piece {
	out := append([]piece(nil), first...)
	out = append(out, piece{sequence: true})
	out = append(out, mid...)
	out = append(out, piece{sequence: true, second: true, typeID: typeB})
	return append(out, last...)
}

// templateFor returns the template Encode (pair false) or EncodePair uses
// with opts, and the number of special-token ids it adds.
func (p *postProcessor) templateFor(pair bool, opts EncodeOptions) ([]piece, int) {
	switch {
	case pair && opts.AddSpecialTokens:
		return p.pair, p.nPairSpecial
	case pair:
		return p.plainPair, 0
	case opts.AddSpecialTokens:
		return p.single, p.nSpecial
	}
	return p.plainSingle, 0
}
