package tokenizer

import (
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
