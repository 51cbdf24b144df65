// Command embedgate is the embedding gateway: `embedgate [flags]` serves
// HTTP; `embedgate models [flags]` prints the models those flags would
// serve, a dry run; `embedgate tune [flags]` sweeps Triton and recommends
// batch and config.pbtxt settings; `embedgate tokenize` debugs
// tokenization. Every flag has an env var; `embedgate --help` lists them.
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
	if err := run(context.Background(), os.Args, os.Getenv, os.Stdin, os.Stdout, os.Stderr, signal.Notify); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintf(os.Stderr, "embedgate: %v\n", err)
		os.Exit(1)
	}
}

// run is the whole program; tests call it too. Below it nothing reads
// os.Args or os.Getenv, and nothing subscribes to signals: notify is
// signal.Notify in main, and a test's own function lets it send signals to
// this run alone.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer,
	notify func(c chan<- os.Signal, sig ...os.Signal)) error {
	if len(args) > 1 && args[1] == "tokenize" {
		return runTokenize(args[2:], stdin, stdout, stderr) // a filter: signals keep their default action
	}
	if len(args) > 1 && args[1] == "models" {
		return runModels(ctx, args[2:], getenv, stdout, stderr) // a dry run: opens, prints, closes
	}
	if len(args) > 1 && args[1] == "tune" {
		return runTune(ctx, args[2:], getenv, stdout, stderr) // a bounded sweep against Triton
	}
	// Subscribed before anything else, so that no signal of these kills the
	// process while the model loads: SIGHUP's default action would.
	sigs := make(chan os.Signal, 1)
	notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs) // undoes notify's subscription; nothing for a test's notify

	ctx, stop := context.WithCancel(ctx)
	reload := make(chan os.Signal, 1)
	routed := make(chan struct{})
	go func() { defer close(routed); routeSignals(ctx, sigs, stop, reload) }()
	defer func() { stop(); <-routed }()
	return serve(ctx, args[1:], getenv, stderr, reload)
}

// routeSignals ends ctx (through stop) on SIGINT or SIGTERM, which makes
// serve drain, and passes SIGHUP on to reload, until ctx ends. Signals
// that arrive afterwards, a second SIGTERM during the drain included, wait
// unread in sigs: the drain runs to its end.
func routeSignals(ctx context.Context, sigs <-chan os.Signal, stop context.CancelFunc, reload chan<- os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case sig := <-sigs:
			if sig != syscall.SIGHUP {
				stop()
				continue
			}
			select {
			case reload <- sig:
			default: // a reload is already pending; it reads the file as it is then
			}
		}
	}
}
