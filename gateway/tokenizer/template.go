package tokenizer

// piece is one element of a single-sequence template: either the sequence
// itself or a special token (possibly several ids) with its type id.
type piece struct {
	sequence bool
	typeID   int32
	ids      []int32
	tokens   []string
}

// postProcessor adds the special tokens around one sequence. Both
// TemplateProcessing and BertProcessing reduce to a single-sequence template;
// they differ in the type id given to the sequence when special tokens are
// not added (the template's for TemplateProcessing, 0 for BertProcessing).
//
// RobertaProcessing is the same template (<s> A </s>) plus trim_offsets,
// applied to the sequence tokens' offsets in emitSequence; the ByteLevel
// post-processor is trim_offsets alone; a Sequence folds into one template
// (see roberta.go).
type postProcessor struct {
	single    []piece
	plainType int32 // type id of the sequence without special tokens
	nSpecial  int   // ids added by the special pieces
	// trimOffsets: cut spaces from the offsets of the sequence tokens
	// (RobertaProcessing, ByteLevel), keeping the one add_prefix_space
	// added when prefixSpace; see trimByteLevelOffsets.
	trimOffsets, prefixSpace bool
}

func newPostProcessor(single []piece, plainType int32) *postProcessor {
	p := &postProcessor{single: single, plainType: plainType}
	for _, pc := range single {
		if !pc.sequence {
			p.nSpecial += len(pc.ids)
		}
	}
	return p
}
