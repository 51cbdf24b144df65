package server

import (
	"context"
	"errors"
	"math"
	"strconv"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/native"
	"github.com/embedgate/embedgate/gateway/openai"
)

// statusOf is the only table of HTTP statuses: {native and TEI, OpenAI}
// per gateway.Kind (BRIEF §4).
var statusOf = [...][2]int{
	gateway.Internal:     {500, 500},
	gateway.Malformed:    {400, 400},
	gateway.Validation:   {422, 400},
	gateway.Empty:        {400, 400},
	gateway.TooLarge:     {413, 413},
	gateway.Unauthorized: {401, 401},
	gateway.RateLimited:  {429, 429},
	gateway.Overloaded:   {429, 429},
	gateway.Unhealthy:    {503, 503},
	gateway.Timeout:      {504, 504},
	gateway.Backend:      {500, 500},
	gateway.NotFound:     {404, 404},
}

// family is the error shape of a route.
type family int

const (
	familyNative family = iota // native and TEI share a shape
	familyOpenAI
)

func familyOf(path string) family {
	if strings.HasPrefix(path, "/v1/") || path == "/embeddings" {
		return familyOpenAI
	}
	return familyNative
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
	s.finish(c, rec, 0)
	return nil
}

// writeError writes err as JSON in the shape of the request's route family
// and keeps it on rec for the log line.
func (s *Server) writeError(c *fiber.Ctx, rec *record, err error) {
	ge, status := classify(err)
	fam := familyOf(c.Path())
	if status == 0 {
		status = fiber.StatusInternalServerError
		if k := int(ge.Kind); k >= 0 && k < len(statusOf) {
			status = statusOf[k][fam]
		}
	}
	if ge.Kind == gateway.Internal {
		// The cause goes to the log line (rec.err), never to the client.
		ge = &gateway.Error{Kind: gateway.Internal, Msg: "internal error"}
	}
	if status == fiber.StatusTooManyRequests {
		secs := int64(math.Ceil(ge.RetryAfter.Seconds()))
		c.Set(fiber.HeaderRetryAfter, strconv.FormatInt(max(secs, 1), 10))
		// OpenAI's SDKs prefer the millisecond form when it is there.
		if len(c.Response().Header.Peek("retry-after-ms")) == 0 && ge.RetryAfter > 0 {
			c.Set("retry-after-ms", strconv.FormatInt(max(1, ge.RetryAfter.Milliseconds()), 10))
		}
	}
	var body []byte
	if fam == familyOpenAI {
		body = openai.Codec{}.ErrorBody(ge)
	} else {
		body = native.Codec{}.ErrorBody(ge)
	}
	rec.err = err
	c.Status(status)
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	c.Response().SetBody(body)
}

// classify turns any error into a *gateway.Error. status is non-zero only
// for fiber errors with no gateway.Kind of their own (405, 431, ...).
func classify(err error) (ge *gateway.Error, status int) {
	var fe *fiber.Error
	switch {
	case errors.As(err, &ge):
		return ge, 0
	case errors.Is(err, context.DeadlineExceeded):
		return &gateway.Error{Kind: gateway.Timeout, Msg: "request deadline exceeded", Err: err}, 0
	case errors.As(err, &fe):
		msg := strings.ToLower(fe.Message)
		switch fe.Code {
		case fiber.StatusNotFound:
			return &gateway.Error{Kind: gateway.NotFound, Msg: "no route for " + strings.TrimPrefix(msg, "cannot "), Err: err}, 0
		case fiber.StatusRequestEntityTooLarge:
			return &gateway.Error{Kind: gateway.TooLarge, Msg: "request body too large", Err: err}, 0
		case fiber.StatusBadRequest:
			return &gateway.Error{Kind: gateway.Malformed, Msg: msg, Err: err}, 0
		case fiber.StatusRequestTimeout:
			return &gateway.Error{Kind: gateway.Timeout, Msg: msg, Err: err}, fe.Code
		}
		if fe.Code >= 400 && fe.Code < 500 {
			return &gateway.Error{Kind: gateway.Validation, Msg: msg, Err: err}, fe.Code
		}
	}
	return &gateway.Error{Kind: gateway.Internal, Msg: "internal error", Err: err}, 0
}
