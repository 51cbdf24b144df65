package server

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"mime"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"go.opentelemetry.io/otel/trace"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/auth"
	"github.com/embedgate/embedgate/gateway/ratelimit"
	"github.com/embedgate/embedgate/gateway/tei"
	"github.com/embedgate/embedgate/gateway/tokenizer"
)

const (
	headerRequestID = "x-request-id"
	routeUnmatched  = "unmatched" // the route label of 404s, 405s and pre-routing errors
)

// recordKey is the c.Locals key of the request's *record.
type recordKey struct{}

// record is what the log line and the metrics need to know about a request;
// handlers fill it, observe reports it.
type record struct {
	id      string
	route   string
	dialect dialect // the route's error shape; nil until a route matched
	key     *auth.Key
	model   string // the served name of the request's model, once routed
	task    string // what that model does
	inputs  int
	tokens  int
	cached  int  // inputs the embedding cache served
	embeds  bool // an embedding request answered: the log line says cached
	timings gateway.Timings
	err     error
	span    trace.Span // the API route's request span; nil elsewhere

	// What the rate limiter answered, for the x-ratelimit-* headers, and
	// the subject the request's tokens are charged to.
	requests, tokenLimit *ratelimit.Result
	charge               *charge
	retryAfter           time.Duration // of the error answered, for a 429
}

// recordOf is the request's record; observe sets it before any handler.
func recordOf(c *fiber.Ctx) *record {
	if rec, ok := c.Locals(recordKey{}).(*record); ok {
		return rec
	}
	return &record{} // unreachable behind observe; keeps handlers nil-safe
}

// speaks makes every error of the route, a 401 or 429 from the guards
// included, render in d's shape. It runs first on every API route.
func speaks(d dialect) fiber.Handler {
	return func(c *fiber.Ctx) error {
		recordOf(c).dialect = d
		return c.Next()
	}
}

// observe wraps every request: it sets the request id and the deadline,
// writes any error, then logs one line and updates the HTTP metrics.
//
// The deadline lives on c.UserContext(), which is what the engine gets.
// fasthttp cannot tell a handler that the client went away
// (valyala/fasthttp#965), so this deadline is what sheds abandoned work;
// cancel releases it as soon as the handler returns.
func (s *Server) observe(c *fiber.Ctx) error {
	s.inFlight.enter()
	defer s.inFlight.leave()
	start := time.Now()
	rec := &record{id: requestID(c)}
	c.Set(headerRequestID, rec.id)
	c.Locals(recordKey{}, rec)
	// Requests derive from the server's own context, which Abort ends.
	ctx, cancel := context.WithTimeout(s.live, requestTimeout(c, s.opts.RequestTimeout))
	defer cancel()
	c.SetUserContext(ctx)

	own := c.Route()
	if err := next(c); err != nil {
		s.writeError(c, rec, err)
	}
	if s.draining.Load() {
		// The client's next request should find another replica.
		c.Context().SetConnectionClose()
	}
	// c.Route() is the last route that matched: still observe's own when
	// no API route did.
	if r := c.Route(); r == own {
		rec.route = routeUnmatched
	} else {
		rec.route = r.Path
	}
	s.finish(c, rec, time.Since(start))
	return nil
}

// next runs the rest of the chain; a panicking handler becomes a 500
// instead of taking the process down.
func next(c *fiber.Ctx) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("server: handler panicked: %v", r)
		}
	}()
	return c.Next()
}

// finish logs the request's one line and counts it. Never logs input text.
func (s *Server) finish(c *fiber.Ctx, rec *record, elapsed time.Duration) {
	status := c.Response().StatusCode()
	writeLimitHeaders(&c.Response().Header, rec, status)
	endSpan(rec, status)
	s.metrics.requests.WithLabelValues(rec.route, strconv.Itoa(status)).Inc()
	s.metrics.duration.WithLabelValues(rec.route).Observe(elapsed.Seconds())

	level := slog.LevelInfo
	switch {
	case status == statusClientClosed:
		level = slog.LevelDebug // the client's doing: a flood of them must not flood the logs
	case status >= 500:
		level = slog.LevelError
	}
	ctx := context.Background() // the request's own context may be past its deadline
	if !s.logger.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, 14)
	attrs = append(attrs,
		slog.String("id", rec.id),
		slog.String("method", gateway.Clip(c.Method())),
		slog.String("route", rec.route),
		slog.Int("status", status),
		slog.Duration("total", elapsed),
	)
	if rec.inputs > 0 {
		attrs = append(attrs,
			slog.Int("inputs", rec.inputs),
			slog.Int("tokens", rec.tokens),
			slog.Duration("tokenization", rec.timings.Tokenization),
			slog.Duration("queue", rec.timings.Queue),
			slog.Duration("inference", rec.timings.Inference),
		)
		if s.opts.Cache && rec.embeds {
			attrs = append(attrs, slog.Int("cached", rec.cached))
		}
	}
	if rec.model != "" {
		attrs = append(attrs, slog.String("model", rec.model), slog.String("task", rec.task))
	}
	if rec.key != nil {
		attrs = append(attrs, slog.String("key", rec.key.Name))
	}
	if rec.err != nil {
		attrs = append(attrs, slog.String("error", rec.err.Error()))
	}
	s.logger.LogAttrs(ctx, level, "request", attrs...)
}

// requestID is the client's x-request-id when it is sane (1-128 of
// [A-Za-z0-9._:-]), else a fresh random one.
func requestID(c *fiber.Ctx) string {
	id := c.Request().Header.Peek(headerRequestID)
	if len(id) == 0 || len(id) > 128 {
		return rand.Text()
	}
	for _, b := range id {
		ok := b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' ||
			b == '-' || b == '_' || b == '.' || b == ':'
		if !ok {
			return rand.Text()
		}
	}
	return string(id) // a copy: fasthttp reuses the header buffer
}

// jsonBody is a POST's body, as sent: it must say it is JSON, and it must
// not be compressed. fiber's c.Body() would inflate gzip, deflate and br,
// up to three layers deep and without bound, so a 1 MB body under
// --payload-limit could become gigabytes; no TEI, OpenAI or Cohere client
// compresses its requests, so a compressed body is refused (415) rather
// than inflated under a second limit.
func jsonBody(c *fiber.Ctx) ([]byte, error) {
	ct := string(c.Request().Header.ContentType())
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != fiber.MIMEApplicationJSON {
		return nil, gateway.Errorf(gateway.Malformed, "", "Content-Type must be application/json, got %q", gateway.Clip(ct))
	}
	if enc := c.Request().Header.ContentEncoding(); len(enc) > 0 && !strings.EqualFold(string(enc), "identity") {
		return nil, gateway.Errorf(gateway.Unsupported, "", "Content-Encoding %q is not supported: send the body uncompressed", gateway.Clip(string(enc)))
	}
	return tokenizer.ToValidUTF8(c.Request().Body()), nil
}

// checkDraining refuses new work while draining, and closes the
// connection after the answer so the client's next request goes to
// another replica.
func (s *Server) checkDraining(c *fiber.Ctx) error {
	if s.draining.Load() {
		c.Context().SetConnectionClose()
		return &gateway.Error{Kind: gateway.Unhealthy, Msg: "server is shutting down"}
	}
	return nil
}

// handleEmbed serves one embedding route in codec's shape: the steps
// every model route shares (begin), then the model's engine, which
// validates, tokenizes, charges the tokens to the request's rate limits,
// admits, batches and embeds.
func (s *Server) handleEmbed(codec Codec) fiber.Handler {
	return func(c *fiber.Ctx) error {
		start := time.Now()
		req, m, rec, err := begin(s, c, gateway.TaskEmbed, codec.DecodeEmbed, func(req *gateway.EmbedRequest, rec *record) string {
			rec.inputs = len(req.Inputs)
			s.cacheRequest(c, rec, req)
			return req.Model
		})
		if err != nil {
			return err
		}
		req.Charge = s.charger(rec, m)
		res, err := m.eng.Embed(c.UserContext(), req)
		if err != nil {
			return err
		}
		rec.tokens, rec.timings, rec.cached, rec.embeds = res.Usage.PromptTokens, res.Timings, res.Cached, true
		if v := s.cacheStatus(req, res); v != "" {
			c.Set(headerCache, v)
		}
		return s.send(c, start, res.Usage, res.Timings, func(dst []byte) ([]byte, error) {
			return codec.AppendEmbed(dst, res, req, m.name())
		})
	}
}

// begin runs the steps every model route takes before its engine: refuse
// while draining, read the body, refuse before decoding when the gateway
// is full, decode, note what the record needs (note returns the model the
// request names), find that model for task (with the key's access), and
// refuse before tokenizing when that model is full.
func begin[R any](s *Server, c *fiber.Ctx, task string, dec func([]byte, gateway.Limits) (R, error), note func(R, *record) string) (req R, m served, rec *record, err error) {
	if err = s.checkDraining(c); err != nil {
		return req, m, nil, err
	}
	body, err := jsonBody(c)
	if err != nil {
		return req, m, nil, err
	}
	checked, err := s.busyBeforeDecoding(c.UserContext())
	if err != nil {
		return req, m, nil, err
	}
	if req, err = decode(s, body, dec); err != nil {
		return req, m, nil, err
	}
	rec = recordOf(c)
	if m, err = s.model(rec, note(req, rec), task); err != nil {
		return req, m, rec, err
	}
	if m.eng != checked {
		// Refused before tokenizing, as a full gateway is before decoding.
		if err = m.eng.Busy(c.UserContext()); err != nil {
			return req, m, rec, err
		}
	}
	return req, m, rec, nil
}

// charger is the Charge of a request to model m: its tokens go to the
// rate limits once tokenized (chargeTokens); nil without rate limits.
func (s *Server) charger(rec *record, m served) func(ctx context.Context, tokens int) error {
	if s.limiter == nil {
		return nil
	}
	return func(ctx context.Context, tokens int) error { return s.chargeTokens(ctx, rec, m, tokens) }
}

// send answers 200 with the body appendBody writes into a pooled buffer
// (copied into the response, so the buffer goes back at once), with the
// timing headers.
func (s *Server) send(c *fiber.Ctx, start time.Time, usage gateway.Usage, t gateway.Timings, appendBody func(dst []byte) ([]byte, error)) error {
	bp := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(bp)
	out, err := appendBody((*bp)[:0])
	*bp = out[:0]
	if err != nil {
		return err
	}
	setTimingHeaders(c, usage, t, time.Since(start))
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	c.Response().SetBody(out)
	return nil
}

// busyBeforeDecoding refuses a request before its body is decoded when the
// gateway is full: under overload with clients that retry at once,
// decoding the bodies of requests only to refuse them took a quarter of
// the CPU (embedbench). With one model served, that model's Busy says it
// (the shared concurrency gate and its backlog), and checked is its
// engine. With several, the model is known only once the body is decoded,
// so the handler asks the chosen model's engine then (its Busy covers the
// shared gate too); checked is nil.
func (s *Server) busyBeforeDecoding(ctx context.Context) (checked engine, err error) {
	m, ok := s.models.single()
	if !ok {
		return nil, nil
	}
	return m.eng, m.eng.Busy(ctx)
}

// decode runs a codec's decoder on body. Before the model is known, the
// default model's limits are the ones decoders read (they use only
// DefaultTruncate, the gateway's --auto-truncate); every other rule is the
// chosen engine's to check.
func decode[R any](s *Server, body []byte, dec func([]byte, gateway.Limits) (R, error)) (R, error) {
	m, err := s.defaultModel()
	if err != nil {
		var zero R
		return zero, err
	}
	return dec(body, m.eng.Limits())
}

// setTimingHeaders writes the compute and timing headers (milliseconds)
// that TEI clients read.
func setTimingHeaders(c *fiber.Ctx, usage gateway.Usage, t gateway.Timings, total time.Duration) {
	ms := func(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }
	c.Set("x-compute-tokens", strconv.Itoa(usage.PromptTokens))
	c.Set("x-compute-characters", strconv.Itoa(usage.Characters))
	c.Set("x-total-time", ms(total))
	c.Set("x-tokenization-time", ms(t.Tokenization))
	c.Set("x-queue-time", ms(t.Queue))
	c.Set("x-inference-time", ms(t.Inference))
}

func (s *Server) handleTokenize() fiber.Handler {
	return func(c *fiber.Ctx) error {
		if err := s.checkDraining(c); err != nil {
			return err
		}
		body, err := jsonBody(c)
		if err != nil {
			return err
		}
		req, err := decode(s, body, tei.DecodeTokenize)
		if err != nil {
			return err
		}
		rec := recordOf(c)
		rec.inputs = len(req.Inputs)
		m, err := s.model(rec, req.Model, "")
		if err != nil {
			return err
		}
		toks, err := m.eng.Tokenize(c.UserContext(), req)
		if err != nil {
			return err
		}
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
		c.Response().SetBody(tei.AppendTokens(nil, toks))
		return nil
	}
}

// handleHealth is the default model's backend health: the others' show in
// /info, and one model down must not take the gateway out of rotation.
func (s *Server) handleHealth() fiber.Handler {
	return func(c *fiber.Ctx) error {
		m, err := s.defaultModel()
		if err != nil {
			return err
		}
		if err := m.eng.Health(c.UserContext()); err != nil {
			return &gateway.Error{Kind: gateway.Unhealthy, Msg: "backend unavailable", Err: err}
		}
		return sendJSON(c, `{"status":"ok"}`)
	}
}

// handleReady is 200 while the default model is ready and the server is
// not draining.
func (s *Server) handleReady() fiber.Handler {
	return func(c *fiber.Ctx) error {
		if s.draining.Load() {
			return &gateway.Error{Kind: gateway.Unhealthy, Msg: "draining"}
		}
		m, err := s.defaultModel()
		if err != nil {
			return err
		}
		if !m.eng.Ready() {
			return &gateway.Error{Kind: gateway.Unhealthy, Msg: "model not ready"}
		}
		return sendJSON(c, `{"status":"ready"}`)
	}
}

func sendJSON(c *fiber.Ctx, body string) error {
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.SendString(body)
}
