package server

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/auth"
	"github.com/embedgate/embedgate/gateway/ratelimit"
)

// Limiter is what the server needs of a rate limiter; ratelimit.Redis and
// ratelimit.Memory implement it. key names the subject ("key:alice",
// "ip:203.0.113.9"); the request and token limits of one key are kept
// apart.
type Limiter interface {
	// AllowRequest charges one request against l.RPS and l.Burst.
	AllowRequest(ctx context.Context, key string, l ratelimit.Limit) (ratelimit.Result, error)
	// AllowTokens charges tokens against l.TPM. When tokens exceed what
	// remains, nothing is charged, so a smaller request may still pass.
	AllowTokens(ctx context.Context, key string, l ratelimit.Limit, tokens int) (ratelimit.Result, error)
}

// charge is the subject a request was charged to, kept for its tokens.
type charge struct {
	id    string
	limit ratelimit.Limit
}

// authFailures is how many failed authentications one client address may
// make a minute (all at once, then one every two seconds): a client
// guessing keys gets 429 for every request, right keys included, so a
// guess that succeeds looks like one that failed. Counted in process,
// per replica: it slows guessing without a Redis call per request.
var authFailures = ratelimit.Limit{TPM: 30}

// requireKey lets a request through only with a valid, enabled key (see
// auth.FromHeaders for where it is looked for) and keeps the key on the
// record; without keys (no --api-key or --api-keys-file) every request
// passes. Refusals are logged at debug level with the key's name when one
// is known: a flood of bad keys should not flood the logs, and the
// presented key itself is never logged.
func (s *Server) requireKey(c *fiber.Ctx) error {
	if s.keys == nil {
		return c.Next()
	}
	addr := "auth:" + s.clientAddr(c)
	if peek, _ := s.failures.AllowTokens(c.UserContext(), addr, authFailures, 0); peek.Remaining == 0 {
		retry := peek.Reset - time.Minute*time.Duration(authFailures.TPM-1)/time.Duration(authFailures.TPM)
		return &gateway.Error{Kind: gateway.RateLimited, Limit: "requests", RetryAfter: retry,
			Msg: fmt.Sprintf("too many failed authentications from this address. Please try again in %s.", ceilTo(retry, retryUnit))}
	}
	key, err := s.matchKey(c)
	if err != nil {
		_, _ = s.failures.AllowTokens(c.UserContext(), addr, authFailures, 1)
		return err
	}
	recordOf(c).key = &key
	return c.Next()
}

func (s *Server) matchKey(c *fiber.Ctx) (auth.Key, error) {
	authz := c.Get(fiber.HeaderAuthorization)
	presented, ok := auth.FromHeaders(authz, c.Get("api-key"))
	if !ok {
		msg := "missing API key: send 'Authorization: Bearer <key>' or an 'api-key' header"
		if authz != "" {
			msg = "malformed Authorization header: expected 'Bearer <key>'"
		}
		s.logger.Debug("request refused", "reason", msg, "path", c.Path())
		return auth.Key{}, &gateway.Error{Kind: gateway.Unauthorized, Msg: msg, Err: auth.ErrMissing}
	}
	key, err := s.keys.Match(presented)
	switch {
	case errors.Is(err, auth.ErrDisabled):
		s.logger.Debug("request refused", "reason", "disabled key", "key_name", key.Name, "path", c.Path())
		return key, &gateway.Error{Kind: gateway.Unauthorized, Msg: "API key is disabled", Err: err}
	case err != nil:
		s.logger.Debug("request refused", "reason", "unknown key", "path", c.Path())
		return key, &gateway.Error{Kind: gateway.Unauthorized, Msg: "invalid API key", Err: err}
	}
	return key, nil
}

// limitRequests charges each request to its subject's request limit (the
// key's own limits over the gateway's defaults), keeps the answer for the
// x-ratelimit-*-requests headers, and refuses a request over the limit as
// RateLimited with RetryAfter.
func (s *Server) limitRequests(c *fiber.Ctx) error {
	if s.limiter == nil {
		return c.Next()
	}
	rec := recordOf(c)
	ch := charge{id: s.subject(c, rec), limit: s.opts.RateLimit}
	if rec.key != nil {
		ch.limit = ratelimit.Limit{RPS: rec.key.RPS, Burst: rec.key.Burst, TPM: rec.key.TPM}.Or(s.opts.RateLimit)
	}
	ctx, span := s.tracer.Start(c.UserContext(), "ratelimit")
	res, err := s.limiter.AllowRequest(ctx, ch.id, ch.limit)
	endLimitSpan(span, ch.id, res, err)
	if err != nil {
		return limiterError(err)
	}
	rec.requests, rec.charge = &res, &ch
	if !res.Allowed {
		return s.refusal(res, s.refusedModel(), "requests", fmt.Sprintf("requests per second (RPS): Limit %g, Burst %d, Requested 1", ch.limit.RPS, max(ch.limit.Burst, 1)))
	}
	return c.Next()
}

// chargeTokens charges a request's real token count, once it is tokenized
// and before admission: first to the key's own limit on model m
// (auth.Key.TPMFor, subject "key:<name>:model:<model>"), then to the
// subject limitRequests found, as OpenAI limits tokens per model and per
// organisation. The answer that binds (the fewer tokens left) is kept for
// the x-ratelimit-*-tokens headers. Over what remains it is RateLimited
// and that limit charges nothing; a model's limit that passed before the
// key's refused keeps its charge (limiters take no refunds), which errs
// on the side of the limit. The engine calls it on the handler's
// goroutine.
func (s *Server) chargeTokens(ctx context.Context, rec *record, m served, n int) error {
	if rec.key != nil {
		if tpm := rec.key.TPMFor(m.names); tpm > 0 {
			ch := charge{id: "key:" + rec.key.Name + ":model:" + m.name(), limit: ratelimit.Limit{TPM: tpm}}
			if err := s.chargeTo(ctx, rec, ch, m.name(), n); err != nil {
				return err
			}
		}
	}
	if ch := rec.charge; ch != nil && ch.limit.TPM > 0 {
		return s.chargeTo(ctx, rec, *ch, m.name(), n)
	}
	return nil
}

// chargeTo charges n tokens to ch's token limit; a refusal names model.
func (s *Server) chargeTo(ctx context.Context, rec *record, ch charge, model string, n int) error {
	res, err := s.limiter.AllowTokens(ctx, ch.id, ch.limit, n)
	if err != nil {
		return limiterError(err)
	}
	if rec.tokenLimit == nil || !res.Allowed || res.Remaining < rec.tokenLimit.Remaining {
		rec.tokenLimit = &res
	}
	if res.Allowed {
		return nil
	}
	if n > ch.limit.TPM && !res.StoreDown {
		// OpenAI answers this 429 too ("Request too large ... on tokens
		// per min"): retrying cannot help, so the message says so.
		e := s.refusal(res, model, "tokens", "")
		e.Msg = fmt.Sprintf("Request too large for %s on tokens per min (TPM): Limit %d, Requested %d. The input must be reduced in order to run successfully.", model, ch.limit.TPM, n)
		return e
	}
	return s.refusal(res, model, "tokens", fmt.Sprintf("tokens per min (TPM): Limit %d, Remaining %d, Requested %d", ch.limit.TPM, res.Remaining, n))
}

// refusal is a RateLimited error in OpenAI's words: "Rate limit reached
// for <model> on <limit>. Please try again in 1.2s."
func (s *Server) refusal(res ratelimit.Result, model, limit, detail string) *gateway.Error {
	e := &gateway.Error{Kind: gateway.RateLimited, RetryAfter: res.RetryAfter, Limit: limit}
	if res.StoreDown {
		e.Msg = "rate limiter unavailable, try again shortly"
		return e
	}
	e.Msg = fmt.Sprintf("Rate limit reached for %s on %s. Please try again in %s.", model, detail, ceilTo(res.RetryAfter, retryUnit))
	return e
}

// refusedModel is the model a request refused before its body is read is
// said to be for: the default model's name, as the request's own is not
// known yet, or the gateway's when no model is served.
func (s *Server) refusedModel() string {
	if m, err := s.defaultModel(); err == nil {
		return m.name()
	}
	return "embedgate"
}

// subject is whom a request is charged to: its key, or the client's IP
// address without keys. IPv6 clients are grouped by /64, the block one
// host usually gets, so rotating addresses inside it does not multiply the
// allowance.
//
// With --trust-proxy-headers the address is the last one in
// X-Forwarded-For, the one the proxy in front of the gateway saw: the
// first entries are whatever the client sent and would let it pick a fresh
// limit per request.
func (s *Server) subject(c *fiber.Ctx, rec *record) string {
	if rec.key != nil {
		return "key:" + rec.key.Name
	}
	return "ip:" + s.clientAddr(c)
}

// clientAddr is the client's address as limits count it: the peer's, or
// with --trust-proxy-headers the last X-Forwarded-For hop; an IPv6
// address as its /64.
func (s *Server) clientAddr(c *fiber.Ctx) string {
	if s.opts.TrustProxyHeaders {
		if addr, ok := lastForwarded(c); ok {
			return group(addr)
		}
	}
	addr, _ := netip.AddrFromSlice(c.Context().RemoteIP())
	return group(addr)
}

// lastForwarded is the last X-Forwarded-For hop, the one the proxy in
// front of the gateway wrote. When that hop is not an address, the
// request is charged to the peer: walking further left would reach
// entries the client wrote itself and let it choose its own limit.
func lastForwarded(c *fiber.Ctx) (netip.Addr, bool) {
	values := c.Request().Header.PeekAll(fiber.HeaderXForwardedFor)
	if len(values) == 0 {
		return netip.Addr{}, false
	}
	list := string(values[len(values)-1])
	last := strings.TrimSpace(list[strings.LastIndexByte(list, ',')+1:])
	if addr, err := netip.ParseAddr(last); err == nil {
		return addr, true
	}
	if ap, err := netip.ParseAddrPort(last); err == nil { // some proxies add the port
		return ap.Addr(), true
	}
	return netip.Addr{}, false
}

func group(addr netip.Addr) string {
	addr = addr.Unmap()
	if addr.Is6() {
		if p, err := addr.Prefix(64); err == nil {
			return p.String()
		}
	}
	return addr.String()
}

// endLimitSpan finishes the ratelimit span. The subject is named by its
// kind only ("key" or "ip"): key names are on the request span, and client
// addresses stay out of traces.
func endLimitSpan(span trace.Span, id string, res ratelimit.Result, err error) {
	if span.IsRecording() {
		kind, _, _ := strings.Cut(id, ":")
		span.SetAttributes(
			attribute.String("embedgate.ratelimit.subject", kind),
			attribute.Bool("embedgate.ratelimit.allowed", res.Allowed),
			attribute.Int("embedgate.ratelimit.limit", res.Limit),
			attribute.Int("embedgate.ratelimit.remaining", res.Remaining),
			attribute.Bool("embedgate.ratelimit.store_down", res.StoreDown),
		)
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
	}
	span.End()
}

// limiterError maps a limiter error, which is the request's own context
// ending, to what the client should see.
func limiterError(err error) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return gateway.ContextError(err)
	}
	return err
}
