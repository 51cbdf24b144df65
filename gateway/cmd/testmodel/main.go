// Command testmodel writes a generated BERT-architecture embedding model,
// with -num-labels a cross-encoder (a reranker), or with -arch qwen3 a
// Qwen3 decoder embedding model (package testmodel) into a directory, for
// `make testmodel` and for manual runs of the gateway without a download:
//
//	go run ./gateway/cmd/testmodel -out DIR [-size tiny|minilm] [-pooled] [-seed N]
//	go run ./gateway/cmd/testmodel -out DIR -num-labels 1
//	go run ./gateway/cmd/testmodel -out DIR -arch qwen3 -tokenizer gateway/tokenizer/testdata/qwen3emb.json
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/embedgate/embedgate/gateway/testmodel"
)

func main() {
	if err := run(os.Args, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "testmodel: %v\n", err)
		os.Exit(1)
	}
}

// run is the whole program; tests call it too.
func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "output directory (required)")
	size := fs.String("size", "tiny", "architecture: tiny or minilm")
	pooled := fs.Bool("pooled", false, "add the sentence_embedding output (mean pooled, L2-normalized)")
	noTypes := fs.Bool("no-token-type-ids", false, "model without the token_type_ids input")
	seed := fs.Uint64("seed", 0, "weight seed")
	pooling := fs.String("pooling", "", "1_Pooling mode: mean, cls or lasttoken (default mean, lasttoken for qwen3)")
	maxSeq := fs.Int("max-seq-length", 512, "sentence_bert_config.json max_seq_length")
	labels := fs.Int("num-labels", 0, "write a cross-encoder (BertForSequenceClassification, output logits) with this many labels; 0 = an embedding model")
	archName := fs.String("arch", "bert", "architecture: bert or qwen3 (a decoder, tiny size only)")
	tokPath := fs.String("tokenizer", "", "tokenizer.json to write and size the vocabulary by (default MiniLM's; required for qwen3)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("-out is required")
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	sz, err := testmodel.ParseSize(*size)
	if err != nil {
		return err
	}
	arch, err := testmodel.ParseModelType(*archName)
	if err != nil {
		return err
	}
	cfg := testmodel.Config{ModelType: arch, Size: sz, Seed: *seed, Pooled: *pooled, NoTokenTypeIDs: *noTypes, Pooling: *pooling, MaxSeqLength: *maxSeq, NumLabels: *labels}
	switch {
	case *tokPath != "":
		if cfg.Tokenizer, err = os.ReadFile(*tokPath); err != nil {
			return fmt.Errorf("-tokenizer: %w", err)
		}
	case arch == testmodel.Qwen3:
		return errors.New("-arch qwen3 needs -tokenizer, the Qwen3 tokenizer.json (gateway/tokenizer/testdata/qwen3emb.json)")
	}
	start := time.Now()
	if err := testmodel.Write(*out, cfg); err != nil {
		return err
	}
	kind := "model"
	if arch == testmodel.Qwen3 {
		kind = "qwen3 model"
	}
	if *labels > 0 {
		kind = fmt.Sprintf("reranker (num_labels %d)", *labels)
	}
	fmt.Fprintf(stdout, "wrote %s %s to %s in %v\n", sz, kind, *out, time.Since(start).Round(time.Millisecond))
	return nil
}
