package tokenizer

import "unicode/utf8"

// mtok is a token produced by the model for one word: its id and its byte
// range within the word.
type mtok struct {
	id         int32
	start, end int32
}

// model turns one pre-tokenized word into tokens. buf is per-call scratch.
//
// The implementations are WordPiece (here), BPE (bpe.go) and Unigram
// (unigram.go), built in load.go's buildModel. Per-word working memory that
// buf cannot hold lives in a pool owned by the model, never in the model.
type model interface {
	tokenize(dst []mtok, word []byte, buf *[]byte) []mtok
}

// wordPiece is the WordPiece model: greedy longest match from the start of
// the word, continuation pieces carrying the prefix ("##"); a word longer
// than maxChars characters, or one that cannot be covered, becomes unk.
type wordPiece struct {
	vocab    map[string]int32
	unk      int32
	prefix   string
	maxChars int
	maxLen   int // longest vocab entry in bytes (prefix included): bounds the search
}

func (w *wordPiece) tokenize(dst []mtok, word []byte, buf *[]byte) []mtok {
	if len(word) > w.maxChars && utf8.RuneCount(word) > w.maxChars {
		return append(dst, mtok{id: w.unk, start: 0, end: int32(len(word))})
	}
	base := len(dst)
	b := *buf
	for start := 0; start < len(word); {
		end := len(word)
		limit := w.maxLen
		if start > 0 {
			limit -= len(w.prefix)
		}
		if end-start > limit {
			end = start + limit
			// back up to a character boundary
			for end > start && !utf8.RuneStart(word[end]) {
				end--
			}
		}
		found := int32(-1)
		for end > start {
			var id int32
			var ok bool
			if start == 0 {
				id, ok = w.vocab[string(word[:end])]
			} else {
				b = append(append(b[:0], w.prefix...), word[start:end]...)
				id, ok = w.vocab[string(b)]
			}
			if ok {
				found = id
				break
			}
			// drop the last character
			end--
			for end > start && !utf8.RuneStart(word[end]) {
				end--
			}
		}
		if found < 0 {
			*buf = b
			return append(dst[:base], mtok{id: w.unk, start: 0, end: int32(len(word))})
		}
		dst = append(dst, mtok{id: found, start: int32(start), end: int32(end)})
		start = end
	}
	*buf = b
	return dst
}
