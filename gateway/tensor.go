package gateway

// Tensor names of the model's graph, as optimum exports them: the inputs a
// Batch fills and the two outputs an OutputKind names. Every backend, the
// Triton config check and the generated test model use these, so that the
// names cannot drift apart.
const (
	TensorInputIDs      = "input_ids"      // Batch.InputIDs
	TensorAttentionMask = "attention_mask" // Batch.AttentionMask
	TensorTokenTypeIDs  = "token_type_ids" // Batch.TokenTypeIDs
	// TensorLastHiddenState is the Hidden output, [B, L, H].
	TensorLastHiddenState = "last_hidden_state"
	// TensorSentenceEmbedding is the Pooled output, [B, H].
	TensorSentenceEmbedding = "sentence_embedding"
	// TensorLogits is a cross-encoder's output, [B, num_labels].
	TensorLogits = "logits"
)
