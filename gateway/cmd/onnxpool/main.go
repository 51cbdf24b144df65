// Command onnxpool appends pooling and L2 normalization to an ONNX encoder
// (package onnxpool), so Triton serves sentence_embedding [B, H] instead of
// last_hidden_state [B, L, H]:
//
//	go run ./gateway/cmd/onnxpool -in model.onnx -out pooled.onnx -pooling mean [-normalize=true]
//
// The model may import any default-domain opset from onnxpool.MinOpset to
// MaxOpset (11 to 26; -help says): the appended ops are written in that
// opset's form, and the opset is kept.
//
// -in and -out may be the same file: the output is written to a temporary
// file and renamed into place. A model with an external-data file
// (model.onnx_data) keeps referring to it by name, so keep -out in the same
// directory as that file.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/onnxpool"
	"github.com/embedgate/embedgate/gateway/pooling"
)

func main() {
	if err := run(os.Args, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "onnxpool: %v\n", err)
		os.Exit(1)
	}
}

// run is the whole program; tests call it too.
func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	in := fs.String("in", "", fmt.Sprintf("input ONNX model (required; default-domain opset %d to %d)", onnxpool.MinOpset, onnxpool.MaxOpset))
	out := fs.String("out", "", "output ONNX model (required; may equal -in)")
	method := fs.String("pooling", "", "cls, mean or last-token (required: it must match the model's sentence-transformers 1_Pooling)")
	normalize := fs.Bool("normalize", true, "L2-normalize the pooled vector")
	hidden := fs.String("hidden-output", gateway.TensorLastHiddenState, "the graph output holding [batch, sequence, hidden]")
	mask := fs.String("mask-input", gateway.TensorAttentionMask, "the graph input holding the attention mask")
	output := fs.String("output", gateway.TensorSentenceEmbedding, "name of the new [batch, hidden] output")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *in == "" || *out == "" {
		return errors.New("-in and -out are required")
	}
	if *method == "" {
		return errors.New("-pooling is required: cls, mean or last-token")
	}
	m, err := pooling.ParseMethod(*method)
	if err != nil {
		return err
	}
	model, err := os.ReadFile(*in)
	if err != nil {
		return err
	}
	pooled, err := onnxpool.Append(model, onnxpool.Options{
		Pooling: m, Normalize: *normalize, HiddenOutput: *hidden, MaskInput: *mask, Output: *output,
	})
	if err != nil {
		return fmt.Errorf("%s: %w", *in, err)
	}
	if err := writeAtomic(*out, pooled); err != nil {
		return err
	}
	norm := ""
	if *normalize {
		norm = " + L2 normalize"
	}
	fmt.Fprintf(stdout, "wrote %s: %s pooling%s of %s as %s\n", *out, m, norm, *hidden, *output)
	return nil
}

// writeAtomic writes data to name through a temporary file in the same
// directory, so a failed run never leaves a half-written model.
func writeAtomic(name string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(name), ".onnxpool-*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // a no-op after the rename
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(f.Name(), name)
}
