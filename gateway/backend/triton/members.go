package triton

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"
)

const (
	// startGrace is how long OpenReplicas waits for the other replicas
	// once one has opened: a replica that is down at start would hold the
	// start for Triton's whole ready timeout (60 s); it joins when it
	// opens, or at a later resolve.
	startGrace = 2 * time.Second
	// openTimeout bounds opening one replica after the start (at start,
	// Open's own ready timeout does): a replica a DNS answer lists is
	// ready (Kubernetes lists ready pods only).
	openTimeout = 30 * time.Second
	// resolveTimeout bounds one resolution of the target.
	resolveTimeout = 5 * time.Second
	// unlikeRetry is how long a replica that serves another model than
	// the others waits before it is opened again: each open logs the
	// model's readiness and its config's warnings, and only a reload of
	// the gateway's model, or a fix of the replica, makes it fit.
	unlikeRetry = 5 * time.Minute
	// defaultResolveInterval is ReplicaOptions.ResolveInterval's default.
	defaultResolveInterval = 10 * time.Second
)

// ReplicaOptions configure OpenReplicas.
type ReplicaOptions struct {
	Target Target // the replicas; required
	Model  string // the model's name in Triton, for logs and errors
	// Open opens the model on the replica at addr. release, if not nil,
	// is called once the backend is closed (e.g. to give back the caller's
	// shared Client of addr). Required.
	Open func(ctx context.Context, addr string) (b *Backend, release func(), err error)
	// ResolveInterval is how often the target is resolved again and the
	// replicas that did not open are tried again; 0 = 10s.
	ResolveInterval time.Duration
	MaxInflight     int // batches each replica takes at once (its Client's MaxInflight); 0 = 4
	Logger          *slog.Logger
}

// OpenReplicas resolves the target (a DNS name until it lists an address,
// up to Triton's ready timeout), opens the model on each replica and
// balances over those that opened: at least one must. It waits for the
// others up to startGrace after the first; a replica still opening then
// joins when it opens, and one that failed is tried again at every
// ResolveInterval. From then on the target is resolved again every
// ResolveInterval (a DNS name's answer changes; a fixed list does not),
// and at once when a replica is ejected: new addresses are opened and
// join, addresses no longer in the answer leave once a replica still in it
// serves, and are closed once their batches in flight are done.
func OpenReplicas(ctx context.Context, opts ReplicaOptions) (*Replicas, error) {
	if opts.Open == nil {
		return nil, errors.New("triton: OpenReplicas without an Open func")
	}
	if opts.ResolveInterval < 0 || opts.MaxInflight < 0 {
		return nil, fmt.Errorf("triton: negative resolve interval %v or max inflight %d", opts.ResolveInterval, opts.MaxInflight)
	}
	if opts.ResolveInterval == 0 {
		opts.ResolveInterval = defaultResolveInterval
	}
	if opts.MaxInflight == 0 {
		opts.MaxInflight = defaultMaxInflight
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	addrs, err := awaitResolve(ctx, opts.Target, opts.Model, logger)
	if err != nil {
		return nil, err
	}
	life, stop := context.WithCancel(context.Background())
	r := &Replicas{opts: opts, logger: logger, m: newReplicaMetrics(), want: map[string]bool{},
		opening: map[string]bool{}, failed: map[string]string{}, unlike: map[string]time.Time{}, kick: make(chan struct{}, 1), life: life, stop: stop}
	results := make(chan error, len(addrs))
	r.mu.Lock()
	for _, addr := range addrs {
		r.want[addr] = true
		r.startOpen(addr, results)
	}
	r.mu.Unlock()
	if err := r.awaitStart(ctx, len(addrs), results); err != nil {
		_ = r.Close()
		return nil, err
	}
	r.tasks.Add(1)
	go r.resolveLoop()
	return r, nil
}

// resolve is t.Resolve bounded by resolveTimeout.
func resolve(ctx context.Context, t Target) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	return t.Resolve(ctx)
}

// awaitResolve resolves t until it lists an address, for up to Triton's
// ready timeout: a DNS name lists a Triton pod only once it is ready
// (Kubernetes' headless Service), and a gateway started beside Triton
// waits for it as it waits for a single address, rather than failing at
// once (and restarting in a crash loop). A fixed list is what it is.
func awaitResolve(ctx context.Context, t Target, model string, logger *slog.Logger) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, defaultReadyTimeout)
	defer cancel()
	delay := probeMinDelay
	for logged := false; ; logged = true {
		addrs, err := resolve(ctx, t)
		if err == nil && len(addrs) == 0 {
			err = fmt.Errorf("triton: no address for the replicas of %s: the target lists none", model)
		}
		if err == nil || !t.Dynamic() {
			return addrs, err
		}
		if !logged {
			logger.Info("waiting for triton replicas to resolve", "target", t.String(), "triton_model", model, "err", err)
		}
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, fmt.Errorf("triton: gave up resolving the replicas of %s (waits up to %v): %w", model, defaultReadyTimeout, err)
		case <-timer.C:
		}
		delay = min(2*delay, probeMaxDelay)
	}
}

// awaitStart waits for n opens: for all of them, or for startGrace after
// the first that succeeded. It fails when none succeeded.
func (r *Replicas) awaitStart(ctx context.Context, n int, results <-chan error) error {
	var errs []error
	var grace <-chan time.Time
	for n > 0 {
		select {
		case err := <-results:
			n--
			if err != nil {
				errs = append(errs, err)
			} else if grace == nil {
				t := time.NewTimer(startGrace)
				defer t.Stop()
				grace = t.C
			}
		case <-grace:
			n = 0
		case <-ctx.Done():
			return fmt.Errorf("triton: opening the replicas of %s: %w", r.opts.Model, ctx.Err())
		}
	}
	r.mu.Lock()
	opened := len(r.set)
	r.mu.Unlock()
	if opened == 0 {
		return fmt.Errorf("triton: no replica of %s opened: %w", r.opts.Model, errors.Join(errs...))
	}
	return nil
}

// startOpen opens addr in the background; r.mu is held. results, if not
// nil, gets the outcome: an open at start, which Open's own ready timeout
// bounds, as it does a single address (Triton may be loading its models);
// a later one is bounded by openTimeout too.
func (r *Replicas) startOpen(addr string, results chan<- error) {
	r.opening[addr] = true
	r.tasks.Add(1)
	go func() {
		defer r.tasks.Done()
		ctx, cancel := context.WithTimeout(r.life, openTimeout)
		if results != nil {
			cancel()
			ctx, cancel = context.WithCancel(r.life)
		}
		b, release, err := r.opts.Open(ctx, addr)
		cancel()
		err = r.join(addr, b, release, err)
		if results != nil {
			results <- err
		}
	}()
}

// join adds a replica that opened to the rotation, unless it serves
// another model than the others (a rollout of a new model needs the
// gateway to open it anew), left the target meanwhile, or the set closed.
func (r *Replicas) join(addr string, b *Backend, release func(), err error) error {
	rep := &replica{addr: addr, b: b, release: release}
	r.mu.Lock()
	delete(r.opening, addr)
	switch {
	case err != nil:
	case r.life.Err() != nil || !r.want[addr]:
		err = fmt.Errorf("triton: replica %s left before it opened", addr)
	case r.specSet:
		if b.Spec() != r.spec {
			err = fmt.Errorf("triton: replica %s serves model %s unlike the others: %+v, not %+v; the gateway must open the model anew (reload) to serve it",
				addr, r.opts.Model, b.Spec(), r.spec)
			r.unlike[addr] = time.Now().Add(unlikeRetry)
		}
	default:
		r.spec, r.specSet = b.Spec(), true
	}
	if err == nil {
		// In address order, whatever order the opens ended in: logs,
		// Addrs and the round robin among equals are then the same from
		// run to run.
		i, _ := slices.BinarySearchFunc(r.set, addr, func(rep *replica, addr string) int { return strings.Compare(rep.addr, addr) })
		r.set = slices.Insert(r.set, i, rep)
		r.m.add(addr)
		if _, failed := r.failed[addr]; failed || len(r.set) > 1 {
			r.logger.Info("triton replica joined", "replica", addr, "triton_model", r.opts.Model, "replicas", len(r.set))
		}
		delete(r.failed, addr)
	} else if r.life.Err() == nil && r.failed[addr] != err.Error() {
		r.failed[addr] = err.Error()
		r.logger.Warn("triton replica not opened; trying again at the next resolve", "replica", addr, "triton_model", r.opts.Model, "err", err)
	}
	r.mu.Unlock()
	if err != nil && b != nil {
		_ = r.retire(rep)
	}
	return err
}

// resolveLoop resolves the target again every ResolveInterval and when a
// replica is ejected, until Close.
func (r *Replicas) resolveLoop() {
	defer r.tasks.Done()
	t := time.NewTicker(r.opts.ResolveInterval)
	defer t.Stop()
	for {
		select {
		case <-r.life.Done():
			return
		case <-t.C:
		case <-r.kick:
		}
		r.reconcile()
	}
}

// reconcile resolves the target and makes the members follow the answer:
// it opens the addresses new to it (and those that did not open before)
// and lets go of those that left it. On a failed resolution the members
// stay: a DNS outage must not take the replicas down with it.
func (r *Replicas) reconcile() {
	addrs, err := resolve(r.life, r.opts.Target)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.life.Err() != nil {
		return
	}
	if err != nil {
		if r.resolve != err.Error() {
			r.resolve = err.Error()
			r.logger.Warn("triton replicas not resolved; keeping the current ones", "triton_model", r.opts.Model, "err", err)
		}
		addrs = slices.Collect(maps.Keys(r.want))
	} else if r.resolve != "" {
		r.resolve = ""
		r.logger.Info("triton replicas resolved again", "triton_model", r.opts.Model, "addrs", addrs)
	}
	r.want = map[string]bool{}
	for _, addr := range addrs {
		r.want[addr] = true
	}
	member := map[string]bool{}
	for _, rep := range r.set {
		member[rep.addr] = true
	}
	now := time.Now()
	for _, addr := range addrs {
		if !member[addr] && !r.opening[addr] && now.After(r.unlike[addr]) {
			r.startOpen(addr, nil)
		}
	}
	for addr := range r.failed {
		if !r.want[addr] {
			delete(r.failed, addr)
			delete(r.unlike, addr)
		}
	}
	r.leave()
}

// leave takes the members the target no longer lists out of the set, once
// a member it lists is in the rotation (until then the old ones may still
// serve: a pod being replaced drains); r.mu is held.
func (r *Replicas) leave() {
	if !slices.ContainsFunc(r.set, func(rep *replica) bool { return r.want[rep.addr] && !rep.ejected }) {
		return
	}
	stay := r.set[:0]
	for _, rep := range r.set {
		if r.want[rep.addr] {
			stay = append(stay, rep)
			continue
		}
		rep.gone = true
		r.logger.Info("triton replica left the target; closing it once its batches are done", "replica", rep.addr, "triton_model", r.opts.Model)
		if rep.calls == 0 {
			// Not under mu. reconcile is a task, so Close's Wait is
			// not at zero here.
			r.tasks.Add(1)
			go func() {
				defer r.tasks.Done()
				_ = r.retire(rep)
			}()
		}
	}
	clear(r.set[len(stay):])
	r.set = stay
}

// retire closes rep's backend, gives back what Open took for it and drops
// its series, unless a member of its address serves: one that left and
// came back while rep drained is a new member, with the same series;
// once.
func (r *Replicas) retire(rep *replica) error {
	var err error
	rep.closing.Do(func() {
		if rep.b != nil {
			err = rep.b.Close()
		}
		if rep.release != nil {
			rep.release()
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if !slices.ContainsFunc(r.set, func(m *replica) bool { return m.addr == rep.addr }) {
			r.m.remove(rep.addr)
		}
	})
	return err
}
