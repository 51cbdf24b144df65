package server

import (
	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/embedgate/embedgate/gateway/cohere"
	"github.com/embedgate/embedgate/gateway/native"
	"github.com/embedgate/embedgate/gateway/openai"
	"github.com/embedgate/embedgate/gateway/tei"
)

// The Cohere dialect's two versions: the same request and body but for
// meta.api_version.
var (
	cohereV1 = cohere.Codec{Version: 1}
	cohereV2 = cohere.Codec{Version: 2}
)

// addRoutes is the whole HTTP API.
func addRoutes(app *fiber.App, s *Server, reg *prometheus.Registry) {
	// api is every API route's chain, in order: the route's dialect (so
	// a 401 or 429 is in the route's shape too), the request span, the API
	// key, the request rate limit, then the handler. Embedding and
	// rerank handlers charge tokens to the rate limit once they are
	// tokenized (chargeTokens). Probes and metrics stay open, so orchestrators and
	// scrapers need no key.
	api := func(d dialect, h fiber.Handler) []fiber.Handler {
		return []fiber.Handler{speaks(d), s.traceRequest, s.requireKey, s.limitRequests, h}
	}

	app.Use(s.observe) // request id, deadline, metrics, log line, errors: every request

	app.Get("/health", s.handleHealth())
	app.Get("/ready", s.handleReady())
	if !s.opts.MetricsElsewhere {
		app.Get("/metrics", adaptor.HTTPHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{})))
	}
	if s.opts.Pprof {
		MountPprof(app, s.requireKey) // off by default; see MountPprof
	}

	app.Post("/api/v1/embed", api(native.Codec{}, s.handleEmbed(native.Codec{}))...)
	app.Post("/embed", api(tei.Codec{}, s.handleEmbed(tei.Codec{}))...)
	app.Post("/", api(tei.Codec{}, s.handleEmbed(tei.Codec{}))...) // TEI's compat route, where HF's InferenceClient posts
	app.Post("/v1/embeddings", api(openai.Codec{}, s.handleEmbed(openai.Codec{}))...)
	app.Post("/embeddings", api(openai.Codec{}, s.handleEmbed(openai.Codec{}))...)
	app.Post("/rerank", api(tei.Codec{}, s.handleRerank(tei.Codec{}))...)
	app.Post("/v1/rerank", api(cohereV1, s.handleRerank(cohereV1))...) // Jina's too
	app.Post("/v2/rerank", api(cohereV2, s.handleRerank(cohereV2))...)
	app.Post("/tokenize", api(tei.Codec{}, s.handleTokenize())...)
	app.Get("/v1/models", api(openai.Codec{}, s.handleModels())...)
	app.Get("/v1/models/*", api(openai.Codec{}, s.handleModel())...) // ids may hold '/': "BAAI/bge-small-en-v1.5"
	app.Get("/info", api(tei.Codec{}, s.handleInfo())...)

	// No catch-all handler: an unmatched request falls out of the router as
	// fiber's 404, or 405 with Allow when the path exists for another
	// method, and errorHandler writes it as JSON like every other error.
	// A catch-all route would turn every 405 into a 404.
}
