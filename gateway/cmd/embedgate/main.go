// Command embedgate is the embedding gateway: `embedgate [flags]` serves
// HTTP; `embedgate tokenize` debugs tokenization. Every flag has an env var;
// `embedgate --help` lists them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is the gateway's release, reported by /info.
const version = "0.1.0"

func main() {
	if err := run(context.Background(), os.Args, os.Getenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintf(os.Stderr, "embedgate: %v\n", err)
		os.Exit(1)
	}
}

// run is the whole program; tests call it too. Below it nothing reads
// os.Args or os.Getenv.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) > 1 && args[1] == "tokenize" {
		return runTokenize(args[2:], stdin, stdout, stderr)
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return serve(ctx, args[1:], getenv, stderr)
}
