package gateway

import "strconv"

// Validate checks what every API shares and needs no model: inputs present
// and not empty, at most lim.MaxClientBatch of them, no empty text or id
// list, and dimensions within the model's. Codecs check only shape and
// types; the engine checks what needs the tokenizer (length, vocabulary).
//
// Params are paths in the native dialect ("inputs", "inputs[3]"); a codec
// renders them in its own ("input[3]" for OpenAI).
func (r *EmbedRequest) Validate(lim Limits) error {
	if err := checkCount(len(r.Inputs), lim); err != nil {
		return err
	}
	for i, in := range r.Inputs {
		if (in.IsIDs && len(in.IDs) == 0) || (!in.IsIDs && in.Text == "") {
			param := "inputs"
			// A lone string is the whole field; a list's item has an index.
			if len(r.Inputs) > 1 || in.IsIDs {
				param = InputParam(i)
			}
			return Errorf(Empty, param, "empty input")
		}
	}
	if r.Dimensions < 0 || r.Dimensions > lim.Dimensions {
		return Errorf(Validation, "dimensions", "must be between 1 and %d, got %d", lim.Dimensions, r.Dimensions)
	}
	return nil
}

// Validate checks a /tokenize request as EmbedRequest.Validate does its
// inputs.
func (r *TokenizeRequest) Validate(lim Limits) error {
	if err := checkCount(len(r.Inputs), lim); err != nil {
		return err
	}
	for i, text := range r.Inputs {
		if text == "" {
			param := "inputs"
			if len(r.Inputs) > 1 {
				param = InputParam(i)
			}
			return Errorf(Empty, param, "empty input")
		}
	}
	return nil
}

func checkCount(n int, lim Limits) error {
	switch {
	case n == 0:
		return Errorf(Empty, "inputs", "no inputs")
	case lim.MaxClientBatch > 0 && n > lim.MaxClientBatch:
		return Errorf(Validation, "inputs", "batch size %d > maximum allowed batch size %d", n, lim.MaxClientBatch)
	}
	return nil
}

// InputParam is the param path of input i: "inputs[i]".
func InputParam(i int) string { return "inputs[" + strconv.Itoa(i) + "]" }

// TokenParam is the param path of token j of input i: "inputs[i][j]".
func TokenParam(i, j int) string { return InputParam(i) + "[" + strconv.Itoa(j) + "]" }

// Validate checks a rerank request as EmbedRequest.Validate does an
// embedding one: a query, 1..lim.MaxClientBatch documents, no negative
// counts. An empty document is valid: it is a pair of the query and
// nothing, which a cross-encoder scores as TEI does. Too many documents
// is TooLarge (413), TEI's status for them on /rerank.
//
// Params are TEI's field names ("query", "texts", "texts[3]"), the
// native dialect's; a codec renders them in its own.
func (r *RerankRequest) Validate(lim Limits) error {
	switch n := len(r.Documents); {
	case n == 0:
		return Errorf(Empty, "texts", "cannot be empty")
	case lim.MaxClientBatch > 0 && n > lim.MaxClientBatch:
		return Errorf(TooLarge, "texts", "batch size %d > maximum allowed batch size %d", n, lim.MaxClientBatch)
	}
	if r.Query == "" {
		return Errorf(Empty, "query", "empty query")
	}
	if r.TopN < 0 {
		return Errorf(Validation, "top_n", "must be at least 1, got %d", r.TopN)
	}
	if r.MaxTokensPerDoc < 0 {
		return Errorf(Validation, "max_tokens_per_doc", "must be at least 1, got %d", r.MaxTokensPerDoc)
	}
	return nil
}

// TextParam is the param path of document i of a rerank request:
// "texts[i]".
func TextParam(i int) string { return "texts[" + strconv.Itoa(i) + "]" }
