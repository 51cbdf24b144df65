// Package fleet runs the models the catalogue describes: one infer.Engine
// per model, looked up by name or alias, added, replaced or retired
// without dropping a request when the catalogue changes. It opens nothing
// itself: an Opener, which the binary supplies, turns an entry into a
// pipeline.
package fleet

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/embedgate/embedgate/gateway/catalog"
	"github.com/embedgate/embedgate/gateway/infer"
)

// Pipeline is an opened model: its engine, the entry it was opened from,
// and what releases its backend (nil: nothing to release).
type Pipeline struct {
	Engine *infer.Engine
	Entry  catalog.Entry
	Close  func()
}

// Opener opens the pipeline of one entry. The engine it returns has not
// run yet: the fleet runs it.
type Opener func(ctx context.Context, e catalog.Entry) (*Pipeline, error)

// Model is a served model: what a request's model name finds.
type Model struct {
	Name    string
	Aliases []string
	// Task is what the model does, gateway.TaskEmbed or TaskRerank: its
	// engine's, which the entry or the model's config.json decided.
	Task   string
	Engine *infer.Engine
}

// Names is the model's name, then its aliases.
func (m *Model) Names() []string { return append([]string{m.Name}, m.Aliases...) }

// Options configure a Fleet.
type Options struct {
	// Lenient serves a request naming any model with the default one: the
	// one-model mode, where clients send arbitrary names (as with TEI).
	Lenient bool
	// RetireTimeout bounds how long a removed model may take to finish
	// the requests it holds before its queue is failed; 0 = 2 minutes.
	// The request timeout is the natural value: no request waits longer.
	RetireTimeout time.Duration
}

// Fleet is the set of served models. Lookups read an immutable table
// swapped in whole by Apply, so a request never sees half a change.
type Fleet struct {
	open   Opener
	logger *slog.Logger
	opts   Options

	table atomic.Pointer[table]

	mu      sync.Mutex // serializes Apply, Run's start and Close
	members map[string]*member
	running bool // Run has started the engines: Apply starts new ones at once
	closed  bool
	// life is every engine's Run context; Close ends it.
	life     context.Context
	stopLife context.CancelFunc
	retiring sync.WaitGroup
}

// member is one opened pipeline.
type member struct {
	p        *Pipeline
	model    *Model
	runCtx   context.Context
	stop     context.CancelFunc // ends the engine's Run
	launched atomic.Bool        // its Run was started
	done     chan struct{}      // closed when a started Run has returned
}

// table is what lookups read.
type table struct {
	byName  map[string]*Model // names and aliases
	list    []*Model          // the default first, then by name
	ordered []*Model          // in the catalogue's order: DefaultFor's
	def     *Model
}

// New makes an empty fleet; Apply fills it.
func New(open Opener, logger *slog.Logger, opts Options) *Fleet {
	opts.RetireTimeout = cmp.Or(opts.RetireTimeout, 2*time.Minute)
	f := &Fleet{open: open, logger: logger, opts: opts, members: map[string]*member{}}
	f.life, f.stopLife = context.WithCancel(context.Background())
	f.table.Store(&table{byName: map[string]*Model{}})
	return f
}

// Lookup finds a model by name or alias; "" is the default model. In the
// lenient one-model mode every name finds the default.
func (f *Fleet) Lookup(name string) (*Model, bool) {
	t := f.table.Load()
	if name == "" || f.opts.Lenient {
		return t.def, t.def != nil
	}
	m, ok := t.byName[name]
	return m, ok
}

// Default is the model that serves requests naming none.
func (f *Fleet) Default() (*Model, bool) {
	t := f.table.Load()
	return t.def, t.def != nil
}

// DefaultFor is the model that serves the requests naming none on the
// routes of task (gateway.TaskEmbed or TaskRerank): the default model if
// it does task, else the first model of the catalogue that does, so a
// gateway serving an embedder and a reranker answers both kinds of route
// without a model named. ok is false when no served model does task.
func (f *Fleet) DefaultFor(task string) (*Model, bool) {
	t := f.table.Load()
	if t.def != nil && t.def.Task == task {
		return t.def, true
	}
	for _, m := range t.ordered {
		if m.Task == task {
			return m, true
		}
	}
	return nil, false
}

// List is every served model, the default first, then by name.
func (f *Fleet) List() []*Model { return f.table.Load().list }

// Apply makes entries the served models, with defaultName (a name or an
// alias) the default: entries equal to a running model's keep it running,
// new and changed ones are opened, and models no longer listed are
// retired once they have answered what they hold. A model that fails to
// open is left out (a changed one keeps its old pipeline) and its error
// is returned with the others; whatever opened is served. The table
// changes once, after every open, so requests see the old catalogue or
// the new one.
func (f *Fleet) Apply(ctx context.Context, entries []catalog.Entry, defaultName string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return errors.New("fleet: closed")
	}
	pl, err := f.openAll(ctx, entries, defaultName)
	next, retire, problems := pl.next, pl.retire, pl.problems
	if err == nil {
		err = f.awaitServing(ctx, next)
	}
	models := pl.models()
	var t *table
	if err == nil {
		t, err = newTable(models, entries, defaultName)
	}
	if err != nil {
		// Nothing changes: stop what was opened for nothing.
		for name, m := range next {
			if f.members[name] != m {
				f.stop(m)
			}
		}
		return errors.Join(append(problems, err)...)
	}
	for name, e := range pl.renamed {
		next[name].p.Entry, next[name].model = e, models[name]
	}
	f.members = next
	f.table.Store(t)
	for _, m := range retire {
		f.retire(m)
	}
	return errors.Join(problems...)
}

// openAll opens what entries add or change, keeps what they leave equal,
// and lists what is to retire. A model that fails to open is a problem;
// a new default that fails is the error that stops Apply.
func (f *Fleet) openAll(ctx context.Context, entries []catalog.Entry, defaultName string) (pl plan, err error) {
	pl = plan{next: make(map[string]*member, len(entries)), renamed: map[string]catalog.Entry{}}
	// The default first: a new default that does not open leaves nothing
	// to apply, and must fail Apply before a changed model has given up
	// its metrics for a replacement that would be stopped.
	isDefault := func(e catalog.Entry) bool { return defaultName != "" && slices.Contains(e.Names(), defaultName) }
	if i := slices.IndexFunc(entries, isDefault); i > 0 {
		entries = slices.Concat(entries[i:i+1], entries[:i], entries[i+1:])
	}
	for _, e := range entries {
		old := f.members[e.Name]
		if old != nil && old.p.Entry.Equal(e) {
			old.p.Entry.Source = e.Source // Equal leaves it out: it may have moved
			pl.next[e.Name] = old
			continue
		}
		if old != nil && sameButAliases(old.p.Entry, e) {
			// New names for the same pipeline: reopening it would need
			// twice an in-process model's memory for nothing.
			pl.next[e.Name], pl.renamed[e.Name] = old, e
			continue
		}
		if old != nil {
			// The replacement registers the same model's metrics: the
			// old pipeline gives them up first (see infer.Engine.Close).
			old.p.Engine.Close()
		}
		m, err := f.start(ctx, e)
		if err != nil {
			pl.problems = append(pl.problems, fmt.Errorf("model %q (%s): %w", e.Name, e.Source, err))
			if old == nil && isDefault(e) {
				return pl, fmt.Errorf("fleet: the default model %q is not served", defaultName)
			}
			if old != nil {
				pl.next[e.Name] = old // still serving, if without its metrics
			}
			continue
		}
		pl.next[e.Name] = m
		if old != nil {
			pl.retire = append(pl.retire, old)
		}
	}
	for name, old := range f.members {
		if _, kept := pl.next[name]; !kept {
			pl.retire = append(pl.retire, old)
		}
	}
	return pl, nil
}

// plan is what openAll prepared for Apply to swap in.
type plan struct {
	next     map[string]*member       // the members to serve, by name
	renamed  map[string]catalog.Entry // kept members whose aliases alone changed, and their new entry
	retire   []*member                // the members to retire
	problems []error                  // models that did not open
}

// models are the Models next serves, the renamed ones with their new
// aliases: only once the table is swapped in do the members take them.
func (pl plan) models() map[string]*Model {
	models := make(map[string]*Model, len(pl.next))
	for name, m := range pl.next {
		models[name] = m.model
		if e, ok := pl.renamed[name]; ok {
			models[name] = &Model{Name: e.Name, Aliases: slices.Clone(e.Aliases), Task: m.model.Task, Engine: m.model.Engine}
		}
	}
	return models
}

// awaitServing waits until every engine next adds to a running fleet has
// calibrated its backend: swapped in before, a replacement would make its
// first requests wait for it and /ready flap (the calibration is bounded,
// see infer).
func (f *Fleet) awaitServing(ctx context.Context, next map[string]*member) error {
	for name, m := range next {
		if f.members[name] == m || !m.launched.Load() {
			continue
		}
		select {
		case <-m.p.Engine.Serving():
		case <-ctx.Done():
			return fmt.Errorf("fleet: model %q did not start serving: %w", name, ctx.Err())
		}
	}
	return nil
}

// start opens e's pipeline, and runs its engine once the fleet runs.
func (f *Fleet) start(ctx context.Context, e catalog.Entry) (*member, error) {
	p, err := f.open(ctx, e)
	if err != nil {
		return nil, err
	}
	m := &member{p: p, done: make(chan struct{}),
		model: &Model{Name: e.Name, Aliases: slices.Clone(e.Aliases), Task: p.Engine.Info().Task, Engine: p.Engine}}
	m.runCtx, m.stop = context.WithCancel(f.life)
	if f.running {
		f.launch(m)
	}
	f.logger.Info("model opened", "model", e.Name, "aliases", e.Aliases, "task", m.model.Task, "source", e.Source, "model_id", e.ModelID)
	return m, nil
}

// launch runs m's engine: its batch loop, which first calibrates the
// backend.
func (f *Fleet) launch(m *member) {
	if !m.launched.CompareAndSwap(false, true) {
		return // once only: done is closed once
	}
	go func() {
		defer close(m.done)
		_ = m.p.Engine.Run(m.runCtx)
	}()
}

// retire lets m finish the requests it holds, then stops it. The table no
// longer has it, so only requests that looked it up just before the swap
// can still arrive; Quiesce refuses them or waits for them.
func (f *Fleet) retire(m *member) {
	f.retiring.Add(1)
	// Its metrics go at once: the same name may come back before it has
	// finished, and its replacement registers them anew.
	m.p.Engine.Close()
	go func() {
		defer f.retiring.Done()
		ctx, cancel := context.WithTimeout(f.life, f.opts.RetireTimeout)
		err := m.p.Engine.Quiesce(ctx)
		cancel()
		if err != nil && f.life.Err() == nil {
			f.logger.Warn("model retired before its requests finished", "model", m.model.Name, "err", err)
		}
		f.stop(m)
		f.logger.Info("model retired", "model", m.model.Name)
	}()
}

// stop ends m's engine (what it still queues is answered 503), then
// releases its backend and its metrics.
func (f *Fleet) stop(m *member) {
	m.stop()
	// A member never run (retired before the fleet ran, or a start that
	// failed) runs now, its context done: Run answers what it queued.
	f.launch(m)
	<-m.done
	if m.p.Close != nil {
		m.p.Close()
	}
	m.p.Engine.Close()
}

// Run runs every model's engine, and those Apply adds from then on, until
// ctx ends; then it stops them all: what they still queue is answered
// 503. Stop the HTTP server first, so that accepted requests are answered.
// Before Run, models are opened but nothing runs, so a start that fails
// after Apply leaves nothing running behind.
func (f *Fleet) Run(ctx context.Context) error {
	f.mu.Lock()
	if !f.closed {
		f.running = true
		for _, m := range f.members {
			f.launch(m)
		}
	}
	f.mu.Unlock()
	<-ctx.Done()
	f.Close()
	return nil
}

// Close stops every model and waits for those being retired. It is safe
// to call more than once, and without Run (a start that failed).
func (f *Fleet) Close() {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.closed = true
	members := f.members
	f.members = map[string]*member{}
	f.table.Store(&table{byName: map[string]*Model{}})
	f.mu.Unlock()

	var wg sync.WaitGroup
	for _, m := range members {
		wg.Go(func() { f.stop(m) })
	}
	wg.Wait()
	f.stopLife() // ends the retirements' waits
	f.retiring.Wait()
}

// sameButAliases says whether a and b differ in their aliases alone (and
// where they were read).
func sameButAliases(a, b catalog.Entry) bool {
	a.Aliases = b.Aliases
	return a.Equal(b)
}

// newTable indexes models by name and alias, the default first, and
// keeps them in the order of entries too.
func newTable(models map[string]*Model, entries []catalog.Entry, defaultName string) (*table, error) {
	t := &table{byName: make(map[string]*Model, 2*len(models))}
	for _, m := range models {
		for _, n := range m.Names() {
			if other, dup := t.byName[n]; dup {
				return nil, fmt.Errorf("fleet: %q names both %q and %q", n, other.Name, m.Name)
			}
			t.byName[n] = m
		}
		t.list = append(t.list, m)
	}
	if len(t.list) == 0 {
		return nil, errors.New("fleet: no model to serve")
	}
	slices.SortFunc(t.list, func(a, b *Model) int { return cmp.Compare(a.Name, b.Name) })
	if defaultName == "" {
		defaultName = t.list[0].Name
	}
	def, ok := t.byName[defaultName]
	if !ok {
		return nil, fmt.Errorf("fleet: the default model %q is not served", defaultName)
	}
	t.def = def
	for _, e := range entries {
		if m, ok := models[e.Name]; ok {
			t.ordered = append(t.ordered, m)
		}
	}
	i := slices.Index(t.list, def)
	t.list = append(append([]*Model{def}, t.list[:i]...), t.list[i+1:]...)
	return t, nil
}
