package gateway

import "slices"

// Tensor names of the model's graph, as optimum exports them: the inputs a
// Batch fills and the outputs an OutputKind names. Every backend, the
// Triton config check and the generated test model use these, so that the
// names cannot drift apart.
const (
	TensorInputIDs      = "input_ids"      // Batch.InputIDs
	TensorAttentionMask = "attention_mask" // Batch.AttentionMask
	TensorTokenTypeIDs  = "token_type_ids" // Batch.TokenTypeIDs
	// TensorPositionIDs is a decoder's third input (optimum's export of
	// Qwen3 and other decoders has it): backends fill it with PositionIDs
	// whenever the model declares it (ModelSpec.HasPositionIDs).
	TensorPositionIDs = "position_ids"
	// TensorLastHiddenState is the Hidden output, [B, L, H].
	TensorLastHiddenState = "last_hidden_state"
	// TensorSentenceEmbedding is the Pooled output, [B, H].
	TensorSentenceEmbedding = "sentence_embedding"
	// TensorLogits is a cross-encoder's output, [B, num_labels].
	TensorLogits = "logits"
)

// PickOutput is which of a model's outputs (their names) a backend reads,
// and its kind; -1 when the model has none the gateway reads. The model's
// own pooling is preferred (then the gateway pools nothing), then token
// states; logits, a cross-encoder's only output, come last, so that an
// encoder that also exports a classifier head still embeds.
func PickOutput(names []string) (int, OutputKind) {
	for _, want := range []struct {
		name string
		kind OutputKind
	}{
		{TensorSentenceEmbedding, Pooled},
		{TensorLastHiddenState, Hidden},
		{TensorLogits, Logits},
	} {
		if i := slices.Index(names, want.name); i >= 0 {
			return i, want.kind
		}
	}
	return -1, 0
}

// PositionIDs is the position_ids input of a [rows, length] batch, row
// major: each row 0, 1, ..., length-1. That is what Hugging Face's
// decoders compute when the input is not given (arange over the sequence),
// and, for the real tokens of a right-padded row, what optimum's
// attention_mask cumsum gives too; padding positions differ there, but a
// causal model's real tokens never attend to the padding after them.
func PositionIDs(rows, length int) []int64 {
	ids := make([]int64, rows*length)
	for i := range ids {
		ids[i] = int64(i % length)
	}
	return ids
}
