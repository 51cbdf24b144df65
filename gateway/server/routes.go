package server

import (
	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/embedgate/embedgate/gateway/native"
	"github.com/embedgate/embedgate/gateway/openai"
	"github.com/embedgate/embedgate/gateway/tei"
)

// addRoutes is the whole HTTP API.
func addRoutes(app *fiber.App, s *Server, reg *prometheus.Registry, mw Middlewares) {
	// guarded starts the request span, runs auth, then the rate limit,
	// then h; probes and metrics stay open so orchestrators and scrapers
	// need no key.
	guarded := func(h fiber.Handler) []fiber.Handler {
		hs := make([]fiber.Handler, 0, 4)
		for _, m := range []fiber.Handler{s.traceRequest, mw.Auth, mw.RateLimit} {
			if m != nil {
				hs = append(hs, m)
			}
		}
		return append(hs, h)
	}

	app.Use(s.observe) // request id, deadline, metrics, log line, errors: every request

	app.Get("/health", s.handleHealth())
	app.Get("/ready", s.handleReady())
	app.Get("/metrics", adaptor.HTTPHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{})))
	if s.opts.Pprof {
		MountPprof(app, mw.Auth) // off by default; see MountPprof
	}

	app.Post("/api/v1/embed", guarded(s.handleEmbed(native.Codec{}))...)
	app.Post("/embed", guarded(s.handleEmbed(tei.Codec{}))...)
	app.Post("/v1/embeddings", guarded(s.handleEmbed(openai.Codec{}))...)
	app.Post("/embeddings", guarded(s.handleEmbed(openai.Codec{}))...)
	app.Post("/tokenize", guarded(s.handleTokenize())...)
	app.Get("/v1/models", guarded(s.handleModels())...)
	app.Get("/info", guarded(s.handleInfo())...)

	// No catch-all handler: an unmatched request falls out of the router as
	// fiber's 404, or 405 with Allow when the path exists for another
	// method, and errorHandler writes it as JSON like every other error.
	// A catch-all route would turn every 405 into a 404.
}
