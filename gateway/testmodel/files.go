package testmodel

import "strconv"

// jsonFiles returns the JSON side files of a sentence-transformers repo, by
// path, or of a transformers cross-encoder repo, which has none of the
// sentence-transformers files (no pooling: its head scores the pair).
// Structs (not maps) keep the key order fixed.
func jsonFiles(cfg Config) map[string]any {
	if cfg.ModelType == Qwen3 {
		return qwen3Files(cfg)
	}
	a := cfg.arch()
	if cfg.NumLabels > 0 {
		return map[string]any{
			"config.json":           bertConfig(a, cfg.NumLabels),
			"tokenizer_config.json": tokenizerConfig(cfg.MaxSeqLength),
		}
	}
	return map[string]any{
		"config.json":                       bertConfig(a, 0),
		"tokenizer_config.json":             tokenizerConfig(cfg.MaxSeqLength),
		"1_Pooling/config.json":             poolingConfig(a.Hidden, cfg.Pooling),
		"modules.json":                      modules(),
		"sentence_bert_config.json":         sentenceBertConfig(cfg.MaxSeqLength),
		"config_sentence_transformers.json": sentenceTransformersConfig(),
	}
}

// bertConfig is config.json: the transformers BertConfig of a, for a
// BertModel, or with labels > 0 for a BertForSequenceClassification with
// that many labels. transformers takes the label count from id2label (and
// num_labels, which agrees), as TEI does.
func bertConfig(a Arch, labels int) any {
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
		// A classifier's labels; absent from a BertModel's config.
		NumLabels int               `json:"num_labels,omitempty"`
		ID2Label  map[string]string `json:"id2label,omitempty"`
		Label2ID  map[string]int    `json:"label2id,omitempty"`
	}
	arch := "BertModel"
	var id2label map[string]string
	var label2id map[string]int
	if labels > 0 {
		arch = "BertForSequenceClassification"
		id2label, label2id = map[string]string{}, map[string]int{}
		for i := range labels {
			name := "LABEL_" + strconv.Itoa(i)
			id2label[strconv.Itoa(i)], label2id[name] = name, i
		}
	}
	return bertConfig{
		Architectures: []string{arch}, ModelType: "bert",
		VocabSize: a.Vocab, HiddenSize: a.Hidden, NumHiddenLayers: a.Layers,
		NumAttentionHeads: a.Heads, IntermediateSize: a.Intermediate, HiddenAct: "gelu",
		HiddenDropoutProb: 0.1, AttentionProbsDropoutProb: 0.1, MaxPositionEmbeddings: a.MaxPos,
		TypeVocabSize: 2, InitializerRange: 0.02, LayerNormEps: 1e-12,
		PositionEmbeddingType: "absolute", TorchDtype: "float32",
		NumLabels: labels, ID2Label: id2label, Label2ID: label2id,
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
