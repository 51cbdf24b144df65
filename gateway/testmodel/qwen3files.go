package testmodel

// qwen3Files returns the JSON side files of a Qwen3-Embedding-style
// sentence-transformers repository, by path: the Pooling, Normalize and
// sentence_bert_config files are BERT's, the rest Qwen3's.
func qwen3Files(cfg Config) map[string]any {
	d := cfg.qwen3()
	return map[string]any{
		"config.json":                       qwen3Config(d),
		"tokenizer_config.json":             qwen3TokenizerConfig(cfg.MaxSeqLength),
		"1_Pooling/config.json":             poolingConfig(d.Hidden, cfg.Pooling),
		"modules.json":                      modules(),
		"sentence_bert_config.json":         sentenceBertConfig(cfg.MaxSeqLength),
		"config_sentence_transformers.json": qwen3Prompts(),
	}
}

// qwen3BOS is <|endoftext|>, Qwen3's bos and eos id and the token its
// tokenizer.json's post-processor appends.
const qwen3BOS = 151643

// qwen3Config is config.json: the transformers Qwen3Config of d, with
// the architecture Qwen3-Embedding's own config names (sentence-transformers
// loads the bare Qwen3Model from it). The embedding table is the only
// token table (tie_word_embeddings); no sliding window.
func qwen3Config(d qwen3Dims) any {
	type qwen3Config struct {
		Architectures         []string  `json:"architectures"`
		ModelType             string    `json:"model_type"`
		VocabSize             int       `json:"vocab_size"`
		HiddenSize            int       `json:"hidden_size"`
		IntermediateSize      int       `json:"intermediate_size"`
		NumHiddenLayers       int       `json:"num_hidden_layers"`
		NumAttentionHeads     int       `json:"num_attention_heads"`
		NumKeyValueHeads      int       `json:"num_key_value_heads"`
		HeadDim               int       `json:"head_dim"`
		HiddenAct             string    `json:"hidden_act"`
		MaxPositionEmbeddings int       `json:"max_position_embeddings"`
		InitializerRange      float64   `json:"initializer_range"`
		RMSNormEps            float64   `json:"rms_norm_eps"`
		UseCache              bool      `json:"use_cache"`
		TieWordEmbeddings     bool      `json:"tie_word_embeddings"`
		RopeTheta             float64   `json:"rope_theta"`
		RopeScaling           *struct{} `json:"rope_scaling"`
		AttentionBias         bool      `json:"attention_bias"`
		UseSlidingWindow      bool      `json:"use_sliding_window"`
		SlidingWindow         *int      `json:"sliding_window"`
		MaxWindowLayers       int       `json:"max_window_layers"`
		AttentionDropout      float64   `json:"attention_dropout"`
		BOSTokenID            int       `json:"bos_token_id"`
		EOSTokenID            int       `json:"eos_token_id"`
		TorchDtype            string    `json:"torch_dtype"`
	}
	return qwen3Config{
		Architectures: []string{"Qwen3ForCausalLM"}, ModelType: string(Qwen3),
		VocabSize: d.Vocab, HiddenSize: d.Hidden, IntermediateSize: d.Intermediate,
		NumHiddenLayers: d.Layers, NumAttentionHeads: d.Heads, NumKeyValueHeads: d.KVHeads,
		HeadDim: d.HeadDim, HiddenAct: "silu", MaxPositionEmbeddings: d.MaxPos,
		InitializerRange: 0.02, RMSNormEps: d.RMSNormEps, UseCache: true, TieWordEmbeddings: true,
		RopeTheta: d.RopeTheta, MaxWindowLayers: d.Layers,
		BOSTokenID: qwen3BOS, EOSTokenID: qwen3BOS, TorchDtype: "float32",
	}
}

// qwen3TokenizerConfig is tokenizer_config.json as Qwen ships it, except
// padding_side: Qwen3-Embedding pads left, the gateway pads right, and
// saying right keeps the file true to how the model is run here.
func qwen3TokenizerConfig(maxSeqLength int) any {
	return struct {
		AddBOSToken               bool    `json:"add_bos_token"`
		AddPrefixSpace            bool    `json:"add_prefix_space"`
		BOSToken                  *string `json:"bos_token"`
		CleanUpTokenizationSpaces bool    `json:"clean_up_tokenization_spaces"`
		EOSToken                  string  `json:"eos_token"`
		Errors                    string  `json:"errors"`
		ModelMaxLength            int     `json:"model_max_length"`
		PadToken                  string  `json:"pad_token"`
		PaddingSide               string  `json:"padding_side"`
		SplitSpecialTokens        bool    `json:"split_special_tokens"`
		TokenizerClass            string  `json:"tokenizer_class"`
		UnkToken                  *string `json:"unk_token"`
	}{
		EOSToken: "<|endoftext|>", Errors: "replace", ModelMaxLength: maxSeqLength,
		PadToken: "<|endoftext|>", PaddingSide: "right", TokenizerClass: "Qwen2Tokenizer",
	}
}

// Qwen3QueryPrompt is Qwen3-Embedding's "query" prompt; its "document"
// prompt is empty.
const Qwen3QueryPrompt = "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:"

// qwen3Prompts is config_sentence_transformers.json: Qwen3-Embedding's
// prompts and no default one.
func qwen3Prompts() any {
	type prompts struct {
		Query    string `json:"query"`
		Document string `json:"document"`
	}
	return struct {
		Prompts           prompts `json:"prompts"`
		DefaultPromptName *string `json:"default_prompt_name"`
		SimilarityFnName  string  `json:"similarity_fn_name"`
	}{prompts{Query: Qwen3QueryPrompt}, nil, "cosine"}
}
