package server

import (
	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewAdmin builds the app of the separate metrics listener
// (--metrics-port): /metrics from reg and, with pprof, Go's profiler (see
// MountPprof). It has no auth: that port belongs on an internal network.
// It starts nothing; serve it like App.
func NewAdmin(reg prometheus.Gatherer, pprof bool) *fiber.App {
	app := fiber.New(fiber.Config{DisableStartupMessage: true})
	app.Get("/metrics", adaptor.HTTPHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{})))
	if pprof {
		MountPprof(app, nil)
	}
	return app
}
