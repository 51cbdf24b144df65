package tokenizer

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
)

// fileJSON is the subset of tokenizer.json we read. Components stay raw and
// are decoded by type.
type fileJSON struct {
	Version       string           `json:"version"`
	Truncation    *truncationJSON  `json:"truncation"`
	Padding       *paddingJSON     `json:"padding"`
	AddedTokens   []addedTokenJSON `json:"added_tokens"`
	Normalizer    json.RawMessage  `json:"normalizer"`
	PreTokenizer  json.RawMessage  `json:"pre_tokenizer"`
	Model         json.RawMessage  `json:"model"`
	PostProcessor json.RawMessage  `json:"post_processor"`
	Decoder       json.RawMessage  `json:"decoder"` // not needed for embeddings
}

// truncationJSON and paddingJSON are parsed (to reject malformed files) but
// do not drive encoding: the caller decides truncation and padding.
type truncationJSON struct {
	Direction string `json:"direction"`
	MaxLength int    `json:"max_length"`
	Strategy  string `json:"strategy"`
	Stride    int    `json:"stride"`
}

type paddingJSON struct {
	Strategy        json.RawMessage `json:"strategy"`
	Direction       string          `json:"direction"`
	PadToMultipleOf *int            `json:"pad_to_multiple_of"`
	PadID           int32           `json:"pad_id"`
	PadTypeID       int32           `json:"pad_type_id"`
	PadToken        string          `json:"pad_token"`
}

type addedTokenJSON struct {
	ID         int32  `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
	Special    bool   `json:"special"`
}

// LoadFile reads and loads a tokenizer.json file.
func LoadFile(path string) (*Tokenizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	t, err := Load(data)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, path)
	}
	return t, nil
}

// Load builds a Tokenizer from the contents of a tokenizer.json file. A file
// using a component this package does not implement is an error naming it.
func Load(data []byte) (*Tokenizer, error) {
	var f fileJSON
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("tokenizer: parse tokenizer.json: %w", err)
	}
	t := &Tokenizer{}
	var err error
	if t.norm, err = buildNormalizer(f.Normalizer); err != nil {
		return nil, err
	}
	if t.pre, err = buildPreTokenizer(f.PreTokenizer); err != nil {
		return nil, err
	}
	var vocab map[string]int32
	if t.model, vocab, err = buildModel(f.Model); err != nil {
		return nil, err
	}
	if t.post, err = buildPostProcessor(f.PostProcessor); err != nil {
		return nil, err
	}
	if t.post == nil {
		t.post = plainPostProcessor()
	}
	t.literalUnk = -1
	if u, ok := t.model.(*unigram); ok {
		t.literalUnk = u.unk // Rust's Unigram gives unknown tokens their text
	}
	t.setVocab(vocab, f.AddedTokens)
	t.buildAdded(f.AddedTokens)
	t.padID, t.hasPad = t.findPad(f.Padding)
	t.cuts = newCutRule(t)
	return t, nil
}

// typeOf reads the "type" field of a component; ok is false for null/absent.
func typeOf(raw json.RawMessage) (string, bool, error) {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" {
		return "", false, nil
	}
	var h struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		return "", false, err
	}
	return h.Type, true, nil
}

func buildNormalizer(raw json.RawMessage) (normalizer, error) {
	typ, ok, err := typeOf(raw)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: normalizer: %w", err)
	}
	if !ok {
		return nil, nil
	}
	switch typ {
	case "BertNormalizer":
		return buildBertNormalizer(raw)
	case "Lowercase":
		return lowercaseNormalizer{}, nil
	case "NFD":
		return nfdNormalizer{}, nil
	case "NFKC":
		return unicodeNormalizer{compat: true, compose: true}, nil
	case "NFKD":
		return unicodeNormalizer{compat: true}, nil
	case "Replace":
		return buildReplace(raw)
	case "Precompiled":
		return buildPrecompiled(raw)
	case "Strip":
		return buildStrip(raw)
	case "Prepend":
		return buildPrepend(raw)
	case "NFC":
		return unicodeNormalizer{compose: true}, nil
	case "StripAccents":
		return stripAccentsNormalizer{}, nil
	case "Sequence":
		var c struct {
			Normalizers []json.RawMessage `json:"normalizers"`
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, fmt.Errorf("tokenizer: normalizer Sequence: %w", err)
		}
		steps, err := sequenceSteps(c.Normalizers, buildNormalizer)
		if err != nil {
			return nil, err
		}
		return sequenceNormalizer(steps), nil
	}
	return nil, fmt.Errorf("tokenizer: unsupported normalizer type %q", typ)
}

func buildBertNormalizer(raw json.RawMessage) (*bertNormalizer, error) {
	var c struct {
		CleanText          *bool `json:"clean_text"`
		HandleChineseChars *bool `json:"handle_chinese_chars"`
		StripAccents       *bool `json:"strip_accents"`
		Lowercase          *bool `json:"lowercase"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("tokenizer: BertNormalizer: %w", err)
	}
	b := &bertNormalizer{cleanText: true, chineseChar: true, lowercase: true}
	if c.CleanText != nil {
		b.cleanText = *c.CleanText
	}
	if c.HandleChineseChars != nil {
		b.chineseChar = *c.HandleChineseChars
	}
	if c.Lowercase != nil {
		b.lowercase = *c.Lowercase
	}
	// strip_accents null (or absent) follows lowercase, as in Rust.
	b.stripAccent = b.lowercase
	if c.StripAccents != nil {
		b.stripAccent = *c.StripAccents
	}
	return b, nil
}

func buildStrip(raw json.RawMessage) (normalizer, error) {
	var c struct {
		Left  bool `json:"strip_left"`
		Right bool `json:"strip_right"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("tokenizer: Strip: %w", err)
	}
	return stripNormalizer{left: c.Left, right: c.Right}, nil
}

func buildPrepend(raw json.RawMessage) (normalizer, error) {
	var c struct {
		Prepend string `json:"prepend"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("tokenizer: Prepend: %w", err)
	}
	return prependNormalizer{prefix: c.Prepend}, nil
}

// sequenceSteps builds the steps of a normalizer or pre-tokenizer Sequence,
// leaving out the null ones.
func sequenceSteps[T any](raws []json.RawMessage, build func(json.RawMessage) (T, error)) ([]T, error) {
	var steps []T
	for _, r := range raws {
		step, err := build(r)
		if err != nil {
			return nil, err
		}
		if any(step) != nil {
			steps = append(steps, step)
		}
	}
	return steps, nil
}

func buildPreTokenizer(raw json.RawMessage) (preTokenizer, error) {
	typ, ok, err := typeOf(raw)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: pre_tokenizer: %w", err)
	}
	if !ok {
		return nil, nil
	}
	switch typ {
	case "BertPreTokenizer":
		return bertPreTokenizer{}, nil
	case "WhitespaceSplit":
		return whitespaceSplit{}, nil
	case "Metaspace":
		return buildMetaspace(raw)
	case "Whitespace":
		return whitespacePre{}, nil
	case "Punctuation":
		return buildPunctuation(raw)
	case "Digits":
		return buildDigits(raw)
	case "ByteLevel":
		return buildByteLevel(raw)
	case "Split":
		return buildSplit(raw)
	case "Sequence":
		var c struct {
			PreTokenizers []json.RawMessage `json:"pretokenizers"`
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, fmt.Errorf("tokenizer: pre_tokenizer Sequence: %w", err)
		}
		steps, err := sequenceSteps(c.PreTokenizers, buildPreTokenizer)
		if err != nil {
			return nil, err
		}
		return newSequencePreTokenizer(steps), nil
	}
	return nil, fmt.Errorf("tokenizer: unsupported pre_tokenizer type %q", typ)
}

func buildModel(raw json.RawMessage) (model, map[string]int32, error) {
	typ, ok, err := typeOf(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("tokenizer: model: %w", err)
	}
	if !ok {
		return nil, nil, errors.New("tokenizer: tokenizer.json has no model")
	}
	if typ == "" {
		// Old files omit the model type: infer it the way Rust's untagged
		// deserialization does.
		var probe map[string]json.RawMessage
		if err := json.Unmarshal(raw, &probe); err != nil {
			return nil, nil, fmt.Errorf("tokenizer: model: %w", err)
		}
		switch {
		case probe["merges"] != nil:
			typ = "BPE"
		case probe["max_input_chars_per_word"] != nil || probe["continuing_subword_prefix"] != nil:
			typ = "WordPiece"
		case strings.HasPrefix(strings.TrimSpace(string(probe["vocab"])), "["):
			typ = "Unigram"
		}
	}
	switch typ {
	case "Unigram":
		return buildUnigram(raw)
	case "WordPiece":
		var c struct {
			UnkToken string           `json:"unk_token"`
			Prefix   *string          `json:"continuing_subword_prefix"`
			MaxChars *int             `json:"max_input_chars_per_word"`
			Vocab    map[string]int32 `json:"vocab"`
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, nil, fmt.Errorf("tokenizer: WordPiece: %w", err)
		}
		w := &wordPiece{vocab: c.Vocab, prefix: "##", maxChars: 100}
		if c.Prefix != nil {
			w.prefix = *c.Prefix
		}
		if c.MaxChars != nil {
			w.maxChars = *c.MaxChars
		}
		unk, ok := c.Vocab[c.UnkToken]
		if !ok {
			return nil, nil, fmt.Errorf("tokenizer: WordPiece: unk_token %q is not in the vocabulary", c.UnkToken)
		}
		w.unk = unk
		for k := range c.Vocab {
			w.maxLen = max(w.maxLen, len(k))
		}
		return w, c.Vocab, nil
	case "BPE":
		return buildBPE(raw)
	}
	return nil, nil, fmt.Errorf("tokenizer: unsupported model type %q", typ)
}

func buildPostProcessor(raw json.RawMessage) (*postProcessor, error) {
	typ, ok, err := typeOf(raw)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: post_processor: %w", err)
	}
	if !ok {
		return nil, nil
	}
	switch typ {
	case "TemplateProcessing":
		return buildTemplate(raw)
	case "RobertaProcessing":
		return buildRoberta(raw)
	case "ByteLevel":
		return buildByteLevelPost(raw)
	case "Sequence":
		return buildSequencePost(raw)
	case "BertProcessing":
		var c struct {
			Sep [2]json.RawMessage `json:"sep"`
			Cls [2]json.RawMessage `json:"cls"`
		}
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, fmt.Errorf("tokenizer: BertProcessing: %w", err)
		}
		cls, sep, err := clsSep("BertProcessing", c.Cls, c.Sep)
		if err != nil {
			return nil, err
		}
		// [CLS] A [SEP] B [SEP], the second part of type 1.
		sep1 := sep
		sep1.typeID = 1
		return newPostProcessor([]piece{cls, {sequence: true}, sep}, pairOf([]piece{cls}, []piece{sep}, []piece{sep1}, 1)), nil
	}
	return nil, fmt.Errorf("tokenizer: unsupported post_processor type %q", typ)
}

// clsSep decodes the cls and sep tokens of BertProcessing and
// RobertaProcessing (special pieces of type 0); typ names the processor in
// errors.
func clsSep(typ string, cls, sep [2]json.RawMessage) (piece, piece, error) {
	first, err := tokenPair(cls)
	if err != nil {
		return piece{}, piece{}, fmt.Errorf("tokenizer: %s cls: %w", typ, err)
	}
	last, err := tokenPair(sep)
	if err != nil {
		return piece{}, piece{}, fmt.Errorf("tokenizer: %s sep: %w", typ, err)
	}
	return first, last, nil
}

// tokenPair decodes a ["[CLS]", 101] pair into a special piece of type 0.
func tokenPair(p [2]json.RawMessage) (piece, error) {
	var tok string
	var id int32
	if err := json.Unmarshal(p[0], &tok); err != nil {
		return piece{}, err
	}
	if err := json.Unmarshal(p[1], &id); err != nil {
		return piece{}, err
	}
	return piece{ids: []int32{id}, tokens: []string{tok}}, nil
}

// templatePieceJSON is one piece of a TemplateProcessing template.
type templatePieceJSON struct {
	SpecialToken *struct {
		ID     string `json:"id"`
		TypeID int32  `json:"type_id"`
	} `json:"SpecialToken"`
	Sequence *struct {
		ID     string `json:"id"`
		TypeID int32  `json:"type_id"`
	} `json:"Sequence"`
}

type templateTokenJSON struct {
	ID     string   `json:"id"`
	IDs    []int32  `json:"ids"`
	Tokens []string `json:"tokens"`
}

func buildTemplate(raw json.RawMessage) (*postProcessor, error) {
	var c struct {
		Single        []templatePieceJSON          `json:"single"`
		Pair          []templatePieceJSON          `json:"pair"`
		SpecialTokens map[string]templateTokenJSON `json:"special_tokens"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("tokenizer: TemplateProcessing: %w", err)
	}
	single, err := templatePieces("single", c.Single, c.SpecialTokens)
	if err != nil {
		return nil, err
	}
	// A file without a pair template gets Rust's default, "$A:0 $B:1".
	pair := pairOf(nil, nil, nil, 1)
	if c.Pair != nil {
		if pair, err = templatePieces("pair", c.Pair, c.SpecialTokens); err != nil {
			return nil, err
		}
	}
	return newPostProcessor(single, pair), nil
}

// templatePieces decodes the single or pair template which. Only a pair
// has a second sequence (Rust's single template reads the first whatever
// its id).
func templatePieces(which string, tmpl []templatePieceJSON, specials map[string]templateTokenJSON) ([]piece, error) {
	var out []piece
	for _, p := range tmpl {
		switch {
		case p.Sequence != nil:
			second := false
			switch p.Sequence.ID {
			case "A":
			case "B":
				second = which == "pair"
			default:
				return nil, fmt.Errorf("tokenizer: TemplateProcessing: %s: unknown sequence %q", which, p.Sequence.ID)
			}
			out = append(out, piece{sequence: true, second: second, typeID: p.Sequence.TypeID})
		case p.SpecialToken != nil:
			st, ok := specials[p.SpecialToken.ID]
			if !ok {
				return nil, fmt.Errorf("tokenizer: TemplateProcessing: missing special token %q", p.SpecialToken.ID)
			}
			if len(st.IDs) != len(st.Tokens) {
				return nil, fmt.Errorf("tokenizer: TemplateProcessing: special token %q has %d ids and %d tokens", p.SpecialToken.ID, len(st.IDs), len(st.Tokens))
			}
			out = append(out, piece{typeID: p.SpecialToken.TypeID, ids: st.IDs, tokens: st.Tokens})
		default:
			return nil, fmt.Errorf("tokenizer: TemplateProcessing: %s: unknown template piece", which)
		}
	}
	return out, nil
}
