package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/embedgate/embedgate/gateway/auth"
	"github.com/embedgate/embedgate/gateway/backend/triton"
	"github.com/embedgate/embedgate/gateway/catalog"
	"github.com/embedgate/embedgate/gateway/config"
	"github.com/embedgate/embedgate/gateway/fleet"
)

// catalogue keeps the three sources of the served models, in order of
// precedence: the models file (as last read without a problem), the
// models Triton's repository lists (as last discovered), and the
// one-model flags. It merges them and applies the result to the fleet.
type catalogue struct {
	cfg    *config.Config
	logger *slog.Logger
	fleet  *fleet.Fleet
	pipes  *pipelines

	file    []catalog.Entry
	found   []catalog.Entry
	skipped map[string]string // discovered models left out, and why: logged once per change
	said    map[string]string // what was last logged, by topic (see news)
}

func newCatalogue(cfg *config.Config, logger *slog.Logger, f *fleet.Fleet, pipes *pipelines) *catalogue {
	return &catalogue{cfg: cfg, logger: logger, fleet: f, pipes: pipes, skipped: map[string]string{}, said: map[string]string{}}
}

// start reads every source and opens what they list. Any problem fails
// the start, except a discovered model that does not open: Triton's
// repository is not the operator's file, and one bad model there must
// not keep the others from serving. The next discovery retries it.
func (c *catalogue) start(ctx context.Context) error {
	if err := c.loadFile(); err != nil {
		return err
	}
	if err := c.discover(ctx); err != nil {
		return err
	}
	entries, def, err := c.entries()
	if err != nil {
		return err
	}
	err = c.fleet.Apply(ctx, entries, def)
	if err == nil {
		return nil
	}
	if _, ok := c.fleet.Default(); !ok {
		return err
	}
	for _, e := range entries {
		if _, served := c.fleet.Lookup(e.Name); !served && !c.discovered(e) {
			return err
		}
	}
	c.news("apply", err.Error()) // the first discovery need not say it again
	c.logger.Error("discovered models not served", "err", err)
	return nil
}

// discovered says whether e came from Triton's repository.
func (c *catalogue) discovered(e catalog.Entry) bool {
	return slices.ContainsFunc(c.found, func(f catalog.Entry) bool { return f.Name == e.Name })
}

// loadFile reads the models file, if there is one. On a problem the last
// good content stays.
func (c *catalogue) loadFile() error {
	if c.cfg.ModelsFile == "" {
		return nil
	}
	entries, err := catalog.Load(c.cfg.ModelsFile)
	if err != nil {
		return err
	}
	c.file = entries
	return nil
}

// discover lists Triton's ready models and keeps those whose config names
// their hub model (hf_model_id); each left out is logged once, with why.
func (c *catalogue) discover(ctx context.Context) error {
	if !c.cfg.TritonDiscover {
		return nil
	}
	index, err := c.index(ctx)
	if err != nil {
		return fmt.Errorf("triton discovery: %w", err)
	}
	found := make([]catalog.Entry, 0, len(index))
	skipped := map[string]string{}
	for _, m := range index {
		e, err := catalog.FromTriton(c.cfg.TritonURL, m.Name, m.Parameters)
		if err != nil {
			skipped[m.Name] = err.Error()
			if c.skipped[m.Name] != err.Error() {
				c.logger.Info("triton model not served", "triton_model", m.Name, "reason", err.Error())
			}
			continue
		}
		found = append(found, e)
	}
	c.found, c.skipped = found, skipped
	return nil
}

// index lists Triton's ready models, as the first replica of --triton-url
// that answers has them: the replicas of one address list or DNS name
// serve one repository.
func (c *catalogue) index(ctx context.Context) ([]triton.IndexedModel, error) {
	addrs, err := triton.ResolveURL(ctx, c.cfg.TritonURL)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, addr := range addrs {
		client, release, err := c.pipes.client(ctx, addr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		index, err := client.Index(ctx)
		release()
		if err == nil {
			return index, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
	}
	return nil, errors.Join(errs...)
}

// entries merges the sources and checks the result.
func (c *catalogue) entries() ([]catalog.Entry, string, error) {
	sources := [][]catalog.Entry{c.file, c.found}
	if e, ok := c.cfg.FlagEntry(); ok {
		sources = append(sources, []catalog.Entry{e})
	}
	entries, dropped := catalog.Merge(sources...)
	msgs := make([]string, len(dropped))
	for i, err := range dropped {
		msgs[i] = err.Error()
	}
	if c.news("dropped", strings.Join(msgs, "\n")) {
		for _, err := range dropped {
			c.logger.Warn("model left out of the catalogue", "err", err)
		}
	}
	def := c.defaultOf(entries)
	if err := catalog.Check(entries, def); err != nil {
		return nil, "", err
	}
	return entries, def, nil
}

// defaultOf is the default model for Apply: --default-model, else the
// first entry. Discovered models have no order of their own (Triton lists
// them by name), so when they come first (no models file) the default is
// the one serving now while Triton still lists it, else "": the fleet's
// first by name of those that opened. A model loaded later must not take
// the requests that name none, and one that does not open must not keep
// the others from serving.
func (c *catalogue) defaultOf(entries []catalog.Entry) string {
	def := catalog.Default(entries, c.cfg.DefaultModel)
	if c.cfg.DefaultModel != "" || len(c.file) > 0 || len(c.found) == 0 || c.fleet == nil {
		return def
	}
	if cur, ok := c.fleet.Default(); ok && slices.ContainsFunc(entries, func(e catalog.Entry) bool { return e.Name == cur.Name }) {
		return cur.Name
	}
	return ""
}

// apply makes the merged sources the fleet's models.
func (c *catalogue) apply(ctx context.Context, why string) {
	entries, def, err := c.entries()
	if err != nil {
		if c.news("check", err.Error()) {
			c.logger.Error("catalogue not applied: the models served stay as they were", "why", why, "err", err)
		}
		return
	}
	c.news("check", "")
	problem := ""
	if err := c.fleet.Apply(ctx, entries, def); err != nil {
		problem = err.Error()
	}
	if c.news("apply", problem) {
		c.logger.Error("catalogue applied in part", "why", why, "err", problem)
	}
	if models := modelNames(c.fleet.List()); c.news("models", models) {
		c.logger.Info("catalogue", "why", why, "models", models)
	}
}

// news reports whether msg differs from what was last logged under topic,
// and remembers it. Discovery applies the catalogue every interval: a
// problem that lasts (a model that does not open, a name taken twice) is
// logged when it starts or changes, not at every poll; it is still
// retried at every poll. "" (no problem) is remembered too, so a problem
// that comes back is logged again. A SIGHUP forgets it all (see reload).
func (c *catalogue) news(topic, msg string) bool {
	last, seen := c.said[topic]
	c.said[topic] = msg
	return msg != "" && (!seen || last != msg)
}

// watch reloads until ctx ends: on SIGHUP the API keys file and the models
// file, every discovery interval Triton's repository. A reload that finds
// a problem logs every one of them and keeps what is served.
func (c *catalogue) watch(ctx context.Context, reload <-chan os.Signal, keys *auth.Keys) error {
	var tick <-chan time.Time
	if c.cfg.TritonDiscover {
		t := time.NewTicker(c.cfg.TritonDiscoverInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-reload:
			c.reload(ctx, keys)
		case <-tick:
			if err := c.discover(ctx); err != nil {
				c.logger.Warn("triton discovery failed: the models served stay as they were", "err", err)
				continue
			}
			c.apply(ctx, "discovery")
		}
	}
}

// reload handles one SIGHUP.
func (c *catalogue) reload(ctx context.Context, keys *auth.Keys) {
	reloaded := false
	if keys != nil && c.cfg.APIKeysFile != "" {
		if err := keys.Reload(c.cfg.APIKeysFile); err != nil {
			c.logger.Error("api keys reload failed, keeping the old keys", "path", c.cfg.APIKeysFile, "err", err, "keys", keys.Len())
		} else {
			c.logger.Info("api keys reloaded", "path", c.cfg.APIKeysFile, "keys", keys.Len())
		}
		reloaded = true
	}
	if c.cfg.ModelsFile != "" {
		if err := c.loadFile(); err != nil {
			c.logger.Error("SIGHUP: models file not reloaded, the models served stay as they were", "err", err)
			return
		}
		clear(c.said) // the operator asked: say everything again
		c.apply(ctx, "SIGHUP")
		reloaded = true
	}
	if !reloaded {
		c.logger.Info("SIGHUP: nothing to reload")
	}
}

func modelNames(models []*fleet.Model) string {
	names := make([]string, len(models))
	for i, m := range models {
		names[i] = m.Name
	}
	return strings.Join(names, ",")
}
