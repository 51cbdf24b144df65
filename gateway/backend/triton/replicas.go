package triton

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/embedgate/embedgate/gateway"
)

// Probe backoff of an ejected replica: the first probe soon after the
// failure (a restart takes seconds), then less often while it stays down.
const (
	probeMinDelay = 100 * time.Millisecond
	probeMaxDelay = 5 * time.Second
	probeTimeout  = 2 * time.Second
)

// Replicas runs one model's batches on several Triton replicas serving it,
// each a Backend on a Client of its own (so each has its own connections,
// in-flight budget and health). A batch goes to the healthy replica with
// the fewest tokens in flight, ties round robin: batches can differ in size
// by 100×, so counting batches would load replicas unevenly. A replica
// whose call fails as a server that is down or stuck (unavailable, not
// serving the model, a call timing out) is ejected, and a probe with
// backoff returns it once it is ready again. The failed batch is tried once
// more on another replica: inference is idempotent. It satisfies
// infer.Backend and is safe for concurrent use.
type Replicas struct {
	logger *slog.Logger
	mu     sync.Mutex
	set    []*replica
	next   int // round-robin cursor among equally loaded replicas
	life   context.Context
	stop   context.CancelFunc
	probes sync.WaitGroup
}

// replica is one Backend and the balancer's view of it; mu guards all but b.
type replica struct {
	b       *Backend
	tokens  int64 // padded tokens of the batches in flight
	ejected bool
}

// NewReplicas balances over backends, one per replica, which must describe
// the same model alike (Spec). It takes them over: its Close closes them.
func NewReplicas(logger *slog.Logger, backends ...*Backend) (*Replicas, error) {
	if len(backends) == 0 {
		return nil, errors.New("triton: no replicas")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	first := backends[0].Spec()
	for _, b := range backends[1:] {
		if b.Spec() != first {
			return nil, fmt.Errorf("triton: replicas of model %s differ: %s serves %+v, %s serves %+v",
				b.model, backends[0].c.opts.URL, first, b.c.opts.URL, b.Spec())
		}
	}
	life, stop := context.WithCancel(context.Background())
	r := &Replicas{logger: logger, life: life, stop: stop}
	for _, b := range backends {
		r.set = append(r.set, &replica{b: b})
	}
	return r, nil
}

// Spec describes the model, as every replica reported it at Open.
func (r *Replicas) Spec() gateway.ModelSpec { return r.set[0].b.Spec() }

// Embed runs batch on the least-loaded healthy replica and, if that replica
// fails as a server down or stuck while ctx still allows, once more on
// another. With every replica ejected it is an Unhealthy error at once.
func (r *Replicas) Embed(ctx context.Context, batch *gateway.Batch) (*gateway.Output, error) {
	tokens := int64(batch.Rows) * int64(batch.Len)
	var tried *replica
	var lastErr error
	for range 2 {
		rep := r.pick(tokens, tried)
		if rep == nil {
			break
		}
		out, err := rep.b.Embed(ctx, batch)
		r.done(rep, tokens)
		if err == nil || rep.b.isClosed() || !replicaFailed(ctx, err) {
			return out, err
		}
		r.eject(rep, err)
		tried, lastErr = rep, err
		if ctx.Err() != nil {
			return nil, err
		}
		r.logger.Debug("triton: replica failed; retrying the batch on another", "url", rep.b.c.opts.URL, "batch_id", batch.ID, "err", err)
	}
	if lastErr != nil {
		return nil, lastErr
	}
	return nil, r.allDown()
}

// pick reserves tokens on the healthy replica, other than skip, with the
// fewest tokens in flight, starting the scan at the round-robin cursor so
// that ties rotate; nil when there is none.
func (r *Replicas) pick(tokens int64, skip *replica) *replica {
	r.mu.Lock()
	defer r.mu.Unlock()
	var best *replica
	n := len(r.set)
	for k := range n {
		rep := r.set[(r.next+k)%n]
		if rep.ejected || rep == skip {
			continue
		}
		if best == nil || rep.tokens < best.tokens {
			best = rep
		}
	}
	r.next = (r.next + 1) % n
	if best != nil {
		best.tokens += tokens
	}
	return best
}

// done releases what pick reserved.
func (r *Replicas) done(rep *replica, tokens int64) {
	r.mu.Lock()
	rep.tokens -= tokens
	r.mu.Unlock()
}

// replicaFailed reports whether err says the replica itself is down or
// stuck, rather than the batch or the caller: the call could not reach it
// (connection refused, classify's Unhealthy), it answered unavailable or
// without the model (Unhealthy too), or the call timed out while the
// caller's ctx had time left. A full queue is overload, not failure: every
// replica would be ejected under load.
func replicaFailed(ctx context.Context, err error) bool {
	var gerr *gateway.Error
	if !errors.As(err, &gerr) {
		return false
	}
	switch gerr.Kind {
	case gateway.Unhealthy:
		return true
	case gateway.Timeout:
		return ctx.Err() == nil && !errors.Is(err, gateway.ErrNotCalled)
	}
	return false
}

// eject takes rep out of the rotation and starts its probe, unless it is
// out already (its probe runs) or the set is closed.
func (r *Replicas) eject(rep *replica, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rep.ejected || r.life.Err() != nil {
		return
	}
	rep.ejected = true
	r.logger.Warn("triton replica ejected; probing it until it is ready", "url", rep.b.c.opts.URL, "model", rep.b.model, "err", err)
	r.probes.Add(1)
	go r.probe(rep)
}

// probe checks an ejected replica's health with backoff until it is ready,
// then returns it to the rotation; it ends with Close.
func (r *Replicas) probe(rep *replica) {
	defer r.probes.Done()
	delay := probeMinDelay
	for {
		t := time.NewTimer(delay)
		select {
		case <-r.life.Done():
			t.Stop()
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(r.life, probeTimeout)
		err := rep.b.Health(ctx)
		cancel()
		if err == nil {
			r.mu.Lock()
			rep.ejected = false
			r.mu.Unlock()
			r.logger.Info("triton replica ready again; it takes traffic", "url", rep.b.c.opts.URL, "model", rep.b.model)
			return
		}
		delay = min(2*delay, probeMaxDelay)
	}
}

// allDown is the error of a batch with no healthy replica to run on.
func (r *Replicas) allDown() error {
	urls := make([]string, len(r.set))
	for i, rep := range r.set {
		urls[i] = rep.b.c.opts.URL
	}
	return &gateway.Error{Kind: gateway.Unhealthy,
		Msg: fmt.Sprintf("triton: all %d replicas of model %s are failing (%s); probing them", len(r.set), r.set[0].b.model, strings.Join(urls, ", "))}
}

// Health is OK while any replica in the rotation is ready; one that is not
// is ejected, so its probe brings it back.
func (r *Replicas) Health(ctx context.Context) error {
	var errs []error
	for _, rep := range r.set {
		r.mu.Lock()
		ejected := rep.ejected
		r.mu.Unlock()
		if ejected {
			continue
		}
		err := rep.b.Health(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || rep.b.isClosed() {
			return err
		}
		r.eject(rep, err)
		errs = append(errs, err)
	}
	return &gateway.Error{Kind: gateway.Unhealthy, Msg: r.allDown().Error(), Err: errors.Join(errs...)}
}

// Ejected lists the addresses of the replicas out of the rotation now,
// waiting for their probe.
func (r *Replicas) Ejected() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var urls []string
	for _, rep := range r.set {
		if rep.ejected {
			urls = append(urls, rep.b.c.opts.URL)
		}
	}
	return urls
}

// Close stops the probes and closes every replica's backend.
func (r *Replicas) Close() error {
	// Under mu, so that no eject starts a probe that Wait misses.
	r.mu.Lock()
	r.stop()
	r.mu.Unlock()
	r.probes.Wait()
	var errs []error
	for _, rep := range r.set {
		errs = append(errs, rep.b.Close())
	}
	return errors.Join(errs...)
}
