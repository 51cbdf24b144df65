package testmodel

// jsonFiles returns the JSON side files of a sentence-transformers repo, by
// path. Structs (not maps) keep the key order fixed.
func jsonFiles(cfg Config) map[string]any {
	a := cfg.arch()
	return map[string]any{
		"config.json":                       bertConfig(a),
		"tokenizer_config.json":             tokenizerConfig(cfg.MaxSeqLength),
		"1_Pooling/config.json":             poolingConfig(a.Hidden, cfg.Pooling),
		"modules.json":                      modules(),
		"sentence_bert_config.json":         sentenceBertConfig(cfg.MaxSeqLength),
		"config_sentence_transformers.json": sentenceTransformersConfig(),
	}
}

// bertConfig is config.json: the transformers BertConfig of a.
func bertConfig(a Arch) any {
	type bertConfig struct {
		Architectures             []string `json:"architectures"`
		ModelType                 string   `json:"model_type"`
		VocabSize                 int      `json:"vocab_size"`
		HiddenSize                int      `json:"hidden_size"`
		NumHiddenLayers           int      `json:"num_hidden_layers"`
		NumAttentionHeads         int      `json:"num_attention_heads"`
		IntermediateSize          int      `json:"intermediate_size"`
		HiddenAct                 string   `json:"hidden_act"`
		HiddenDropoutProb         float64  `json:"hidden_dropout_prob"`
		AttentionProbsDropoutProb float64  `json:"attention_probs_dropout_prob"`
		MaxPositionEmbeddings     int      `json:"max_position_embeddings"`
		TypeVocabSize             int      `json:"type_vocab_size"`
		InitializerRange          float64  `json:"initializer_range"`
		LayerNormEps              float64  `json:"layer_norm_eps"`
		PadTokenID                int      `json:"pad_token_id"`
		PositionEmbeddingType     string   `json:"position_embedding_type"`
		TorchDtype                string   `json:"torch_dtype"`
	}
	return bertConfig{
		Architectures: []string{"BertModel"}, ModelType: "bert",
		VocabSize: a.Vocab, HiddenSize: a.Hidden, NumHiddenLayers: a.Layers,
		NumAttentionHeads: a.Heads, IntermediateSize: a.Intermediate, HiddenAct: "gelu",
		HiddenDropoutProb: 0.1, AttentionProbsDropoutProb: 0.1, MaxPositionEmbeddings: a.MaxPos,
		TypeVocabSize: 2, InitializerRange: 0.02, LayerNormEps: 1e-12,
		PositionEmbeddingType: "absolute", TorchDtype: "float32",
	}
}

// tokenizerConfig is tokenizer_config.json: BERT uncased, as the embedded
// tokenizer.json.
func tokenizerConfig(maxSeqLength int) any {
	return struct {
		DoLowerCase        bool   `json:"do_lower_case"`
		ModelMaxLength     int    `json:"model_max_length"`
		TokenizerClass     string `json:"tokenizer_class"`
		PadToken           string `json:"pad_token"`
		ClsToken           string `json:"cls_token"`
		SepToken           string `json:"sep_token"`
		UnkToken           string `json:"unk_token"`
		MaskToken          string `json:"mask_token"`
		TokenizeChineseChr bool   `json:"tokenize_chinese_chars"`
	}{true, maxSeqLength, "BertTokenizer", "[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]", true}
}

// poolingConfig is 1_Pooling/config.json for the pooling mode ("cls",
// "mean" or "lasttoken").
func poolingConfig(hidden int, mode string) any {
	type pooling struct {
		WordEmbeddingDimension int  `json:"word_embedding_dimension"`
		CLSToken               bool `json:"pooling_mode_cls_token"`
		MeanTokens             bool `json:"pooling_mode_mean_tokens"`
		MaxTokens              bool `json:"pooling_mode_max_tokens"`
		MeanSqrtLenTokens      bool `json:"pooling_mode_mean_sqrt_len_tokens"`
		WeightedMeanTokens     bool `json:"pooling_mode_weightedmean_tokens"`
		LastToken              bool `json:"pooling_mode_lasttoken"`
		IncludePrompt          bool `json:"include_prompt"`
	}
	return pooling{
		WordEmbeddingDimension: hidden, IncludePrompt: true,
		CLSToken: mode == "cls", MeanTokens: mode == "mean", LastToken: mode == "lasttoken",
	}
}

// modules is modules.json: Transformer, Pooling, Normalize.
func modules() any {
	type module struct {
		Idx  int    `json:"idx"`
		Name string `json:"name"`
		Path string `json:"path"`
		Type string `json:"type"`
	}
	return []module{
		{0, "0", "", "sentence_transformers.models.Transformer"},
		{1, "1", "1_Pooling", "sentence_transformers.models.Pooling"},
		{2, "2", "2_Normalize", "sentence_transformers.models.Normalize"},
	}
}

// sentenceBertConfig is sentence_bert_config.json, which sets the max
// input length.
func sentenceBertConfig(maxSeqLength int) any {
	return struct {
		MaxSeqLength int  `json:"max_seq_length"`
		DoLowerCase  bool `json:"do_lower_case"`
	}{maxSeqLength, false}
}

// sentenceTransformersConfig is config_sentence_transformers.json: two
// prompts and no default one.
func sentenceTransformersConfig() any {
	type prompts struct {
		Query   string `json:"query"`
		Passage string `json:"passage"`
	}
	type stConfig struct {
		Prompts           prompts `json:"prompts"`
		DefaultPromptName *string `json:"default_prompt_name"`
		SimilarityFnName  string  `json:"similarity_fn_name"`
	}
	return stConfig{
		Prompts:          prompts{Query: "query: ", Passage: "passage: "},
		SimilarityFnName: "cosine",
	}
}
