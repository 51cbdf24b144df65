package server

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/native"
	"github.com/embedgate/embedgate/gateway/openai"
)

// statusClientClosed counts requests whose client reset or closed the
// connection before the request was read: nginx's 499. Nobody reads the
// answer; it is logged at debug level, not as a server error.
const statusClientClosed = 499

// dialect is a route's error shape: each codec renders a *gateway.Error
// with its status in its own words, from native's one error table.
type dialect interface {
	ErrorResponse(e *gateway.Error) (status int, body []byte)
}

// dialectOf is the error shape of a request that matched no route (404,
// 405) or failed before routing: Cohere's on its rerank paths, OpenAI's
// under its paths, else the native one. Routed requests use their route's
// codec instead (see speaks).
func dialectOf(path string) dialect {
	p := strings.ToLower(path)
	switch {
	case p == "/v1/rerank":
		return cohereV1
	case p == "/v2/rerank":
		return cohereV2
	}
	if strings.HasPrefix(p, "/v1/") || p == "/embeddings" {
		return openai.Codec{}
	}
	return native.Codec{}
}

// errorHandler is fiber's ErrorHandler. observe writes handlers' errors
// itself (through writeError) so that it can log and count them; what
// reaches this handler is raised outside observe, by fasthttp before
// routing (body too large, bad request line), so it is logged and counted
// here.
func (s *Server) errorHandler(c *fiber.Ctx, err error) error {
	rec, ok := c.Locals(recordKey{}).(*record)
	if ok {
		s.writeError(c, rec, err)
		return nil
	}
	rec = &record{id: requestID(c), route: routeUnmatched}
	c.Set(headerRequestID, rec.id)
	s.writeError(c, rec, err)
	switch c.Response().StatusCode() {
	case fiber.StatusRequestEntityTooLarge, fiber.StatusBadRequest, fiber.StatusRequestHeaderFieldsTooLarge:
		// The body may be unread: let the client read this answer. Not
		// after a read timeout (the client sent nothing more) or a reset:
		// lingering would only hold a connection slot.
		markLinger(c.Context().Conn())
	}
	s.finish(c, rec, 0)
	return nil
}

// writeError writes err as JSON in the dialect of the request's route and
// keeps it on rec for the log line.
func (s *Server) writeError(c *fiber.Ctx, rec *record, err error) {
	ge, override := classify(c, err)
	rec.err, rec.retryAfter = ge, ge.RetryAfter // the log line's error: with the cause, never the raw request
	if ge.Kind == gateway.Internal {
		// The cause goes to the log line, never to the client.
		ge = &gateway.Error{Kind: gateway.Internal, Msg: "internal error"}
	}
	d := rec.dialect
	if d == nil {
		d = dialectOf(c.Path())
	}
	status, body := d.ErrorResponse(ge)
	if override != 0 {
		status = override
	}
	c.Status(status)
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	c.Response().SetBody(body)
}

// classify turns any error into a *gateway.Error. status is non-zero only
// for HTTP-layer errors with no gateway.Kind of their own (405, 408, 431).
//
// fiber's errors from before routing carry fasthttp's parse errors, which
// quote the raw request: its headers (API keys among them) and body. None
// of that text reaches a client or a log line: each becomes a fixed
// message, and a 404 names only the method and path (clipped).
func classify(c *fiber.Ctx, err error) (ge *gateway.Error, status int) {
	var fe *fiber.Error
	switch {
	case errors.As(err, &ge):
		return ge, 0
	case errors.Is(err, context.DeadlineExceeded):
		return gateway.ContextError(err), 0
	case !errors.As(err, &fe):
		return &gateway.Error{Kind: gateway.Internal, Msg: "internal error", Err: err}, 0
	}
	cause := fmt.Errorf("HTTP layer: status %d", fe.Code) // never fe.Message
	switch fe.Code {
	case fiber.StatusNotFound:
		return &gateway.Error{Kind: gateway.NotFound, Msg: "no route for " + c.Method() + " " + gateway.Clip(c.Path()), Err: cause}, 0
	case fiber.StatusMethodNotAllowed:
		return &gateway.Error{Kind: gateway.Validation, Msg: "method " + c.Method() + " not allowed on " + gateway.Clip(c.Path()), Err: cause}, fe.Code
	case fiber.StatusRequestEntityTooLarge:
		return &gateway.Error{Kind: gateway.TooLarge, Msg: "request body too large", Err: cause}, 0
	case fiber.StatusRequestHeaderFieldsTooLarge:
		return &gateway.Error{Kind: gateway.Malformed, Msg: "request headers too large", Err: cause}, fe.Code
	case fiber.StatusRequestTimeout:
		return &gateway.Error{Kind: gateway.Timeout, Msg: "timed out reading the request", Err: cause}, fe.Code
	case fiber.StatusBadGateway: // fiber's word for a network error while reading the request
		return &gateway.Error{Kind: gateway.Malformed, Msg: "client closed the connection", Err: cause}, statusClientClosed
	}
	return &gateway.Error{Kind: gateway.Malformed, Msg: "malformed HTTP request", Err: cause}, fiber.StatusBadRequest
}
