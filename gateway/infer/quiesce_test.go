//go:build cgo

package infer

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/embedgate/embedgate/gateway"
	"github.com/prometheus/client_golang/prometheus"
)

// TestQuiesceFinishesWhatIsInside: a model being removed refuses new
// requests with 503 at once, while the requests already inside (one
// running, one queued behind its slow batch) are served to the end, and
// Quiesce returns only once they have been.
func TestQuiesceFinishesWhatIsInside(t *testing.T) {
	be, tok := openTiny(t)
	slow := holding(t, be)
	eng := newModel(t, model("a", nil), slow, tok, discard(), prometheus.NewRegistry())
	run(t, eng)
	results := make(chan error, 2)
	embed := func(text string) {
		go func() {
			_, err := eng.Embed(context.Background(), &gateway.EmbedRequest{Inputs: texts(text), Truncate: true})
			results <- err
		}()
	}
	embed("running")
	<-slow.arrived
	embed("queued") // behind the running batch: one batch in flight at most
	for eng.queue.Len() == 0 {
		runtime.Gosched()
	}

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := eng.Quiesce(cancelled); !errors.Is(err, context.Canceled) {
		t.Fatalf("Quiesce with two requests inside and its ctx done = %v, want context.Canceled", err)
	}
	if s := eng.Info().State; s != "draining" || eng.Ready() {
		t.Errorf("after Quiesce: state %q, ready %v; want draining, not ready", s, eng.Ready())
	}
	removed := func(what string, err error) {
		var ge *gateway.Error
		if !errors.As(err, &ge) || ge.Kind != gateway.Unhealthy || ge.Msg != "model a is being removed" {
			t.Errorf("%s after Quiesce = %v, want Unhealthy \"model a is being removed\"", what, err)
		}
	}
	// The deadline only keeps a wrongly admitted request from waiting
	// for the held batch for good.
	late, cancelLate := context.WithTimeout(context.Background(), time.Minute)
	defer cancelLate()
	_, err := eng.Embed(late, &gateway.EmbedRequest{Inputs: texts("late"), Truncate: true})
	removed("Embed", err)
	_, err = eng.Tokenize(late, &gateway.TokenizeRequest{Inputs: []string{"late"}, Truncate: true})
	removed("Tokenize", err)
	removed("Busy", eng.Busy(late))

	quiesced := make(chan error, 1)
	go func() { quiesced <- eng.Quiesce(context.Background()) }()
	slow.letGo()
	if err := <-quiesced; err != nil {
		t.Fatalf("Quiesce = %v", err)
	}
	// The queued request returns only after its batch: if Quiesce
	// waited for it, both batches have run by now.
	if n := slow.returned.Load(); n != 2 {
		t.Errorf("Quiesce returned after %d batches, want 2: it did not wait for the queued request", n)
	}
	for range 2 {
		if err := <-results; err != nil {
			t.Errorf("a request inside when Quiesce began: %v, want served", err)
		}
	}
}

// Info's State follows the engine: loading until Run serves, ready,
// unhealthy once the backend is down, draining after Quiesce; an engine
// whose Run has ended is not ready either.
func TestInfoState(t *testing.T) {
	be, tok := openTiny(t)
	eng := newModel(t, model("a", nil), be, tok, discard(), prometheus.NewRegistry())
	if s := eng.Info().State; s != "loading" {
		t.Errorf("before Run: state %q, want loading", s)
	}
	run(t, eng)
	for !eng.Ready() {
		runtime.Gosched()
	}
	if s := eng.Info().State; s != "ready" {
		t.Errorf("running: state %q, want ready", s)
	}
	if err := be.Close(); err != nil { // the backend goes away
		t.Fatal(err)
	}
	if _, err := eng.Embed(context.Background(), &gateway.EmbedRequest{Inputs: texts("x"), Truncate: true}); gateway.KindOf(err) != gateway.Unhealthy {
		t.Errorf("Embed on a closed backend = %v, want Unhealthy", err)
	}
	if s := eng.Info().State; s != "unhealthy" {
		t.Errorf("backend down: state %q, want unhealthy", s)
	}
	if err := eng.Quiesce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := eng.Info().State; s != "draining" {
		t.Errorf("after Quiesce: state %q, want draining", s)
	}

	be2, tok2 := openTiny(t)
	stopped := newModel(t, model("b", nil), be2, tok2, discard(), prometheus.NewRegistry())
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- stopped.Run(ctx) }()
	for !stopped.Ready() {
		runtime.Gosched()
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if s := stopped.Info().State; s != "unhealthy" {
		t.Errorf("after Run returned: state %q, want unhealthy", s)
	}
}
