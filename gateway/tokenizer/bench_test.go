package tokenizer

import (
	"strings"
	"testing"
)

// benchTexts is the corpus's first 1,000 valid-UTF-8 texts.
func benchTexts(b *testing.B) []string {
	b.Helper()
	var texts []string
	for _, it := range loadCorpus(b) {
		if it.B64 != "" {
			continue
		}
		texts = append(texts, it.raw)
		if len(texts) == 1000 {
			break
		}
	}
	return texts
}

// BenchmarkEncode encodes the benchmark texts on one goroutine, with special
// tokens and without offsets (the embedding path), and with offsets (the
// /tokenize path). Tokenizers of other families join this list as they are
// implemented.
func BenchmarkEncode(b *testing.B) {
	texts := benchTexts(b)
	for _, name := range []string{"minilm", "bert-cased-wp", "roberta-bpe", "qwenstyle-bpe", "qwen3emb", "llama2", "llama3", "xlmr-unigram", "xlmr-precompiled"} {
		tk := loadTestTokenizer(b, name)
		for _, mode := range []struct {
			name string
			opts EncodeOptions
		}{
			{"ids", EncodeOptions{AddSpecialTokens: true}},
			{"offsets", EncodeOptions{AddSpecialTokens: true, Offsets: true}},
		} {
			b.Run(name+"/"+mode.name, func(b *testing.B) {
				b.ReportAllocs()
				tokens := 0
				for b.Loop() {
					for _, s := range texts {
						e := tk.Encode(s, mode.opts)
						tokens += len(e.IDs)
					}
				}
				b.ReportMetric(float64(tokens)/b.Elapsed().Seconds(), "tokens/s")
				b.ReportMetric(float64(tokens)/float64(b.N), "tokens/op")
			})
		}
	}
}

// longText joins the benchmark texts with spaces, over and over, to at
// least n bytes: a mix of prose, code, CJK, emoji and odd whitespace.
func longText(tb testing.TB, n int) string {
	tb.Helper()
	var sb strings.Builder
	for sb.Len() < n {
		for _, it := range loadCorpus(tb) {
			if it.B64 != "" {
				continue
			}
			sb.WriteString(it.raw)
			sb.WriteByte(' ')
		}
	}
	return sb.String()
}

// BenchmarkTruncate encodes a 2 MB text truncated to 512 tokens, keeping
// its start (right) or its end (left), as /embed does with an over-long
// input.
func BenchmarkTruncate(b *testing.B) {
	text := longText(b, 2<<20)
	for _, name := range []string{"minilm", "bert-cased-wp", "roberta-bpe", "roberta-bpe-prefix", "qwenstyle-bpe", "qwen3emb", "llama2", "llama3", "xlmr-unigram", "xlmr-precompiled"} {
		tk := loadTestTokenizer(b, name)
		for _, dir := range []struct {
			name string
			left bool
		}{{"right", false}, {"left", true}} {
			opts := EncodeOptions{AddSpecialTokens: true, MaxLength: 512, TruncateLeft: dir.left}
			b.Run(name+"/"+dir.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if e := tk.Encode(text, opts); len(e.IDs) != 512 {
						b.Fatalf("%d tokens, want 512", len(e.IDs))
					}
				}
			})
		}
	}
}
