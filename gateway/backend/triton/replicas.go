package triton

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/embedgate/embedgate/gateway"
)

// Probe backoff of an ejected replica: the first probe soon after the
// failure (a restart takes seconds), then less often while it stays down,
// but at least once a second: a probe is one health call, and with a 5 s
// ceiling a replica restarted 6 s after it failed got traffic again only
// 5.3 s later (embedbench's failover drill).
const (
	probeMinDelay = 100 * time.Millisecond
	probeMaxDelay = time.Second
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
// more on another replica: inference is idempotent.
//
// The replicas are those of a Target (OpenReplicas): a fixed list, or a
// DNS name resolved again every ResolveInterval and at once when a replica
// is ejected, so that replicas come and go (members.go). It satisfies
// infer.Backend, reports per-replica series as a prometheus.Collector
// (replicametrics.go) and is safe for concurrent use.
type Replicas struct {
	opts   ReplicaOptions
	logger *slog.Logger
	m      *replicaMetrics

	// spec is the first replica's; every other must match it. Set once,
	// under mu, before OpenReplicas returns.
	spec    gateway.ModelSpec
	specSet bool

	mu      sync.Mutex
	set     []*replica           // the members, in the rotation or ejected
	want    map[string]bool      // the addresses the target last resolved to
	opening map[string]bool      // addresses being opened
	failed  map[string]string    // addresses that did not open, and why: logged once per change
	unlike  map[string]time.Time // addresses serving another model, and when to open them again
	resolve string               // the last resolution error, logged once per change
	next    int                  // round-robin cursor among equally loaded replicas

	kick  chan struct{} // resolve again now (a replica was ejected)
	life  context.Context
	stop  context.CancelFunc
	tasks sync.WaitGroup // probes, opens and the resolve loop
}

// replica is one member and the balancer's view of it; Replicas.mu guards
// all but addr, b and release.
type replica struct {
	addr    string
	b       *Backend
	release func() // after b is closed; nil = nothing
	tokens  int64  // padded tokens of the batches in flight
	calls   int    // batches in flight
	ejected bool
	gone    bool // left the target: out of set, closed once calls is 0
	closing sync.Once
}

// Spec describes the model, as the first replica reported it at Open.
func (r *Replicas) Spec() gateway.ModelSpec { return r.spec }

// Embed runs batch on the least-loaded healthy replica and, if that replica
// fails as a server down or stuck, or refuses the batch from a full queue,
// once more on another while ctx still allows. With every replica ejected
// it is an Unhealthy error at once.
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
		r.m.count(rep.addr, tokens, err)
		closed := rep.b.isClosed()
		r.done(rep, tokens)
		if err == nil || closed {
			return out, err
		}
		failed := replicaFailed(ctx, err)
		if !failed && !queueRefused(err) {
			return out, err
		}
		if failed {
			r.eject(rep, err)
		}
		tried, lastErr = rep, err
		if !timeLeft(ctx) {
			return nil, err
		}
		r.logger.Debug("triton: replica failed or full; retrying the batch on another", "replica", rep.addr, "batch_id", batch.ID, "err", err)
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
	if n > 0 {
		r.next = (r.next + 1) % n
	}
	if best != nil {
		best.tokens += tokens
		best.calls++
	}
	return best
}

// done releases what pick reserved, and closes a replica that left the
// target once its last batch is done.
func (r *Replicas) done(rep *replica, tokens int64) {
	r.mu.Lock()
	rep.tokens -= tokens
	rep.calls--
	retire := rep.gone && rep.calls == 0
	r.mu.Unlock()
	if retire {
		r.retire(rep)
	}
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
		return timeLeft(ctx) && !errors.Is(err, gateway.ErrNotCalled)
	}
	return false
}

// queueRefused reports whether Triton refused the batch from its queue
// (full, or its queue policy's timeout): it never reached the model, and
// another replica may have room. It is overload, not failure: it ejects
// nothing.
func queueRefused(err error) bool {
	var gerr *gateway.Error
	return errors.As(err, &gerr) && gerr.Kind == gateway.Overloaded
}

// deadlineSlack is how near its deadline a ctx counts as out of time.
const deadlineSlack = time.Millisecond

// timeLeft reports whether ctx still has time, by its deadline rather than
// by Err alone: a call can end with the caller's deadline (the server's
// copy of it, or gRPC reading a RST_STREAM past it) before ctx's timer has
// fired, and such a timeout is the caller's, not the replica's; taken for
// the replica's, one batch at its deadline ejected every replica it was
// tried on.
func timeLeft(ctx context.Context) bool {
	if ctx.Err() != nil {
		return false
	}
	d, ok := ctx.Deadline()
	return !ok || time.Until(d) > deadlineSlack
}

// eject takes rep out of the rotation, starts its probe and has the target
// resolved again (the replica may have left it), unless rep is out already
// (its probe runs), gone, or the set is closed.
func (r *Replicas) eject(rep *replica, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rep.ejected || rep.gone || r.life.Err() != nil {
		return
	}
	rep.ejected = true
	r.logger.Warn("triton replica ejected; probing it until it is ready", "replica", rep.addr, "triton_model", r.opts.Model, "err", err)
	r.tasks.Add(1)
	go r.probe(rep)
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// probe checks an ejected replica's health with backoff until it is ready,
// then returns it to the rotation; it ends with Close or when the replica
// leaves the target.
func (r *Replicas) probe(rep *replica) {
	defer r.tasks.Done()
	delay := probeMinDelay
	for {
		t := time.NewTimer(delay)
		select {
		case <-r.life.Done():
			t.Stop()
			return
		case <-t.C:
		}
		r.mu.Lock()
		gone := rep.gone
		r.mu.Unlock()
		if gone {
			return
		}
		// Dial now: the connections' own reconnect backoff (up to 3 s)
		// would otherwise fail the probe fast for a while after the
		// replica is back.
		rep.b.c.resetBackoff()
		ctx, cancel := context.WithTimeout(r.life, probeTimeout)
		err := rep.b.Health(ctx)
		cancel()
		if err == nil {
			r.mu.Lock()
			rep.ejected = false
			r.mu.Unlock()
			r.logger.Info("triton replica ready again; it takes traffic", "replica", rep.addr, "triton_model", r.opts.Model)
			return
		}
		delay = min(2*delay, probeMaxDelay)
	}
}

// allDown is the error of a batch with no healthy replica to run on.
func (r *Replicas) allDown() error {
	r.mu.Lock()
	addrs := make([]string, len(r.set))
	for i, rep := range r.set {
		addrs[i] = rep.addr
	}
	r.mu.Unlock()
	return &gateway.Error{Kind: gateway.Unhealthy,
		Msg: fmt.Sprintf("triton: all %d replicas of model %s are failing (%s); probing them", len(addrs), r.opts.Model, strings.Join(addrs, ", "))}
}

// Health is OK while any replica in the rotation is ready; one that is not
// is ejected, so its probe brings it back. The replicas are asked at once,
// and the first ready one ends the asking: one that is stuck must not use
// up ctx (the engine's probe allows a second or two) before another is
// asked. A replica asked still when that happens is not ejected: whether
// it was stuck or slow, only its batches can tell.
func (r *Replicas) Health(ctx context.Context) error {
	reps := r.inRotation()
	ask, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(reps))
	var wg sync.WaitGroup
	for i, rep := range reps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[i] = rep.b.Health(ask); errs[i] == nil {
				cancel()
			} else if timeLeft(ask) && !rep.b.isClosed() {
				r.eject(rep, errs[i])
			}
		}()
	}
	wg.Wait()
	if slices.Contains(errs, nil) {
		return nil
	}
	if !timeLeft(ctx) && len(errs) > 0 {
		return errs[0]
	}
	return &gateway.Error{Kind: gateway.Unhealthy, Msg: r.allDown().Error(), Err: errors.Join(errs...)}
}

// inRotation are the members not ejected, now.
func (r *Replicas) inRotation() []*replica {
	r.mu.Lock()
	defer r.mu.Unlock()
	var reps []*replica
	for _, rep := range r.set {
		if !rep.ejected {
			reps = append(reps, rep)
		}
	}
	return reps
}

// Addrs lists the members' addresses and, of those, the ones ejected and
// waiting for their probe.
func (r *Replicas) Addrs() (members, ejected []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rep := range r.set {
		members = append(members, rep.addr)
		if rep.ejected {
			ejected = append(ejected, rep.addr)
		}
	}
	return members, ejected
}

// Ejected lists the addresses of the replicas out of the rotation now,
// waiting for their probe.
func (r *Replicas) Ejected() []string {
	_, ejected := r.Addrs()
	return ejected
}

// MaxInflight is how many batches the replicas in the rotation take at
// once (ReplicaOptions.MaxInflight each, at least one batch): it changes
// as replicas join, leave, fail and come back.
// The engine asks before every batch: it counts, rather than list.
func (r *Replicas) MaxInflight() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, rep := range r.set {
		if !rep.ejected {
			n++
		}
	}
	return max(1, n*r.opts.MaxInflight)
}

// Close stops the probes, opens and resolving, and closes every replica's
// backend.
func (r *Replicas) Close() error {
	// Under mu, so that no eject starts a probe that Wait misses.
	r.mu.Lock()
	r.stop()
	r.mu.Unlock()
	r.tasks.Wait()
	r.mu.Lock()
	set := r.set
	r.set = nil
	r.mu.Unlock()
	var errs []error
	for _, rep := range set {
		errs = append(errs, r.retire(rep))
	}
	return errors.Join(errs...)
}
