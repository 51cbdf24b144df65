// Package fleet runs the models the catalogue describes: one infer.Engine
// per model, looked up by name or alias, replaced or retired without
// dropping a request when the catalogue changes.
package fleet

import (
	"context"
	"log/slog"

	"github.com/embedgate/embedgate/gateway/catalog"
	"github.com/embedgate/embedgate/gateway/infer"
)

// Pipeline is an opened model: its engine and what releases it.
type Pipeline struct {
	Engine *infer.Engine
	Entry  catalog.Entry
	Close  func()
}

// Opener opens the pipeline of one entry.
type Opener func(ctx context.Context, e catalog.Entry) (*Pipeline, error)

// Model is a served model.
type Model struct {
	Name    string
	Aliases []string
	Engine  *infer.Engine
}

// Options configure a Fleet.
type Options struct {
	// Lenient serves requests naming any model with the default one (the
	// one-model mode, as TEI does).
	Lenient bool
}

// Fleet is the set of served models.
type Fleet struct {
	open   Opener
	logger *slog.Logger
	opts   Options
}

// New makes an empty fleet; Apply fills it.
func New(open Opener, logger *slog.Logger, opts Options) *Fleet {
	return &Fleet{open: open, logger: logger, opts: opts}
}

// Apply makes entries the served models (stub).
func (f *Fleet) Apply(ctx context.Context, entries []catalog.Entry, defaultName string) error { return nil }

// Lookup finds a model by name or alias; "" is the default (stub).
func (f *Fleet) Lookup(name string) (*Model, bool) { return nil, false }

// Default is the default model (stub).
func (f *Fleet) Default() (*Model, bool) { return nil, false }

// List is every served model, the default first (stub).
func (f *Fleet) List() []*Model { return nil }

// Run serves until ctx ends (stub).
func (f *Fleet) Run(ctx context.Context) error { <-ctx.Done(); return nil }
