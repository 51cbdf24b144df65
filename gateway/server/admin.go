package server

import (
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// AdminOptions configure the app of the metrics listener.
type AdminOptions struct {
	// Pprof mounts Go's profiler (see MountPprof).
	Pprof bool
	// ReadTimeout, WriteTimeout and IdleTimeout bound the connection, as
	// Options' do; zero means none.
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration
}

// NewAdmin builds the app of the separate metrics listener
// (--metrics-port): /metrics from reg and, with opts.Pprof, Go's profiler
// (see MountPprof). It has no auth: that port belongs on an internal
// network. It starts nothing; serve it like App.
func NewAdmin(reg prometheus.Gatherer, opts AdminOptions) *fiber.App {
	app := fiber.New(fiber.Config{DisableStartupMessage: true,
		ReadTimeout: opts.ReadTimeout, WriteTimeout: opts.WriteTimeout, IdleTimeout: opts.IdleTimeout})
	app.Get("/metrics", adaptor.HTTPHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{})))
	if opts.Pprof {
		MountPprof(app, nil)
	}
	return app
}
