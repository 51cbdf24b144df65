package server

import (
	"net/http/pprof"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
)

// MountPprof serves Go's profiler (net/http/pprof) under /debug/pprof/ on
// r, after guard when guard is non-nil (an API-key check).
//
// Enable it (--pprof) only where the network is trusted: profiles expose
// the command line, memory contents by symbol, and cost CPU while they
// run. With --metrics-port the gateway mounts it on that listener, which
// should be internal like /metrics, and never on the public one; without a
// metrics port it sits on the public listener, behind the API key when
// keys are configured.
//
// Importing net/http/pprof also registers it on http.DefaultServeMux; the
// gateway never serves that mux, so nothing is exposed there.
func MountPprof(r fiber.Router, guard fiber.Handler) {
	handle := func(method, path string, h fiber.Handler) {
		if guard != nil {
			r.Add(method, path, guard, h)
			return
		}
		r.Add(method, path, h)
	}
	handle(fiber.MethodGet, "/debug/pprof/", adaptor.HTTPHandlerFunc(pprof.Index))
	handle(fiber.MethodGet, "/debug/pprof/cmdline", adaptor.HTTPHandlerFunc(pprof.Cmdline))
	handle(fiber.MethodGet, "/debug/pprof/profile", adaptor.HTTPHandlerFunc(pprof.Profile))
	handle(fiber.MethodGet, "/debug/pprof/symbol", adaptor.HTTPHandlerFunc(pprof.Symbol))
	handle(fiber.MethodPost, "/debug/pprof/symbol", adaptor.HTTPHandlerFunc(pprof.Symbol))
	handle(fiber.MethodGet, "/debug/pprof/trace", adaptor.HTTPHandlerFunc(pprof.Trace))
	// Index serves the named profiles (heap, goroutine, allocs, block,
	// mutex, threadcreate) from the last path element.
	handle(fiber.MethodGet, "/debug/pprof/:name", adaptor.HTTPHandlerFunc(pprof.Index))
}
