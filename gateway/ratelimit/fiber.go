package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/gofiber/fiber/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/embedgate/embedgate/gateway"
)

// Subject says whom a request is charged to: an id for the limiter's keys
// ("key:alice", "ip:203.0.113.9") and that subject's own limits, whose zero
// fields fall back to the middleware's defaults.
type Subject func(c *fiber.Ctx) (id string, own Limit)

// ByClientIP charges requests to the client's IP address, for a gateway
// without API keys. IPv6 clients are grouped by /64, the block one host
// usually gets, so rotating addresses inside it does not multiply the
// allowance.
//
// With trustProxyHeaders (--trust-proxy-headers) the address is the last
// one in X-Forwarded-For, the one the proxy in front of the gateway saw:
// the first entries are whatever the client sent and would let it pick a
// fresh limit per request. Without it, or when the header holds no address,
// it is the connection's remote address.
func ByClientIP(trustProxyHeaders bool) Subject {
	return func(c *fiber.Ctx) (string, Limit) {
		if trustProxyHeaders {
			if addr, ok := lastForwarded(c); ok {
				return "ip:" + group(addr), Limit{}
			}
		}
		addr, _ := netip.AddrFromSlice(c.Context().RemoteIP())
		return "ip:" + group(addr), Limit{}
	}
}

func lastForwarded(c *fiber.Ctx) (netip.Addr, bool) {
	values := c.Request().Header.PeekAll(fiber.HeaderXForwardedFor)
	for i := len(values) - 1; i >= 0; i-- {
		list := string(values[i])
		for list != "" {
			var last string
			if j := strings.LastIndexByte(list, ','); j >= 0 {
				list, last = list[:j], list[j+1:]
			} else {
				list, last = "", list
			}
			if addr, err := netip.ParseAddr(strings.TrimSpace(last)); err == nil {
				return addr, true
			}
		}
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

// charge is what Middleware leaves for ChargeTokens.
type charge struct {
	lim   Limiter
	id    string
	limit Limit
}

type localCharge struct{}

// Option configures Middleware.
type Option func(*middlewareOptions)

type middlewareOptions struct{ tracer trace.Tracer }

// WithTracer makes a "ratelimit" span of each request's check, a child of
// the span in c.UserContext() (the server's request span). Without it
// there are no spans.
func WithTracer(t trace.Tracer) Option {
	return func(o *middlewareOptions) {
		if t != nil {
			o.tracer = t
		}
	}
}

// Middleware returns a fiber middleware that charges each request to its
// subject's request limit (subject's own limits over defaults), sets the
// x-ratelimit-*-requests headers, and refuses a request over the limit with
// a *gateway.Error of kind RateLimited carrying RetryAfter (429 with
// Retry-After). It leaves what ChargeTokens needs in the context.
func Middleware(lim Limiter, defaults Limit, subject Subject, opts ...Option) fiber.Handler {
	o := middlewareOptions{tracer: noop.Tracer{}}
	for _, opt := range opts {
		opt(&o)
	}
	return func(c *fiber.Ctx) error {
		id, own := subject(c)
		limit := own.Or(defaults)
		ctx, span := o.tracer.Start(c.UserContext(), "ratelimit")
		res, err := lim.AllowRequest(ctx, id, limit)
		endSpan(span, id, res, err)
		if err != nil {
			return limiterError(err)
		}
		SetHeaders(c.Set, res, Requests)
		c.Locals(localCharge{}, charge{lim: lim, id: id, limit: limit})
		if !res.Allowed {
			return refusal(res, "requests", fmt.Sprintf("%g requests per second, burst %d", limit.RPS, max(limit.Burst, 1)))
		}
		return c.Next()
	}
}

// ChargeTokens charges n tokens (the request's real count, after
// tokenization) to the subject Middleware found, sets the
// x-ratelimit-*-tokens headers, and returns a RateLimited *gateway.Error
// when they exceed what remains; then nothing is charged, so a smaller
// request may still pass. Without a token limit, or without Middleware
// before it, it does nothing.
func ChargeTokens(ctx context.Context, c *fiber.Ctx, n int) error {
	ch, ok := c.Locals(localCharge{}).(charge)
	if !ok || ch.limit.TPM <= 0 {
		return nil
	}
	res, err := ch.lim.AllowTokens(ctx, ch.id, ch.limit, n)
	if err != nil {
		return limiterError(err)
	}
	SetHeaders(c.Set, res, Tokens)
	if res.Allowed {
		return nil
	}
	if n > ch.limit.TPM && !res.StoreDown {
		// OpenAI answers this 429 too ("Request too large ... on tokens
		// per min"); the message says retrying cannot help.
		e := refusal(res, "tokens", fmt.Sprintf("%d tokens per minute", ch.limit.TPM))
		e.Msg = fmt.Sprintf("request too large: %d tokens, over the limit of %d tokens per minute; reduce the input", n, ch.limit.TPM)
		return e
	}
	return refusal(res, "tokens", fmt.Sprintf("%d tokens per minute; requested %d", ch.limit.TPM, n))
}

// endSpan finishes the ratelimit span. The subject is named by its kind
// only ("key" or "ip"): key names are on the request span, and client
// addresses stay out of traces.
func endSpan(span trace.Span, id string, res Result, err error) {
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

func refusal(res Result, what, limit string) *gateway.Error {
	if res.StoreDown {
		return &gateway.Error{Kind: gateway.RateLimited, RetryAfter: res.RetryAfter,
			Msg: "rate limiter unavailable, try again shortly"}
	}
	return &gateway.Error{Kind: gateway.RateLimited, RetryAfter: res.RetryAfter,
		Msg: fmt.Sprintf("rate limit reached on %s (%s); try again in %ds", what, limit, RetryAfterSeconds(res.RetryAfter))}
}

// limiterError maps a limiter error, which is the request's own context
// ending, to what the client should see.
func limiterError(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return &gateway.Error{Kind: gateway.Timeout, Msg: "request deadline exceeded", Err: err}
	}
	return err
}
