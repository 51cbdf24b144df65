package server

import (
	"bytes"
	"errors"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"
)

// errAmbiguousFraming is a request whose length two parsers could read
// differently: fasthttp takes the last of two Content-Lengths and treats
// any Transfer-Encoding but "identity" (even "xchunked") as chunked, while
// a proxy in front may do otherwise, and the difference smuggles a second
// request inside the first. RFC 9112 §6.3 says to refuse such a message
// and close the connection.
var errAmbiguousFraming = errors.New("ambiguous message framing")

// guardHTTP runs before fiber's router, on what fasthttp parsed: requests
// with ambiguous framing and methods fiber does not know (which fiber
// answers in text/plain) get a JSON 400 in the path's dialect, logged and
// counted like every other error, and the connection is closed after it.
func (s *Server) guardHTTP(next fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(fctx *fasthttp.RequestCtx) {
		err := checkFraming(fctx.Request.Header.RawHeaders())
		if err == nil && !knownMethod(fctx.Method()) {
			err = errors.New("unknown HTTP method")
		}
		if err == nil {
			next(fctx)
			return
		}
		fctx.SetConnectionClose()
		c := s.app.AcquireCtx(fctx)
		defer s.app.ReleaseCtx(c)
		_ = s.errorHandler(c, fiber.NewError(fiber.StatusBadRequest, err.Error()))
	}
}

// checkFraming refuses two different Content-Lengths, a Transfer-Encoding
// other than chunked, and a Transfer-Encoding next to a Content-Length.
func checkFraming(raw []byte) error {
	var length []byte
	lengths, encodings := 0, 0
	for line := range bytes.SplitSeq(raw, []byte("\n")) {
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(bytes.TrimSpace(name), []byte(fiber.HeaderContentLength)):
			if lengths > 0 && !bytes.Equal(value, length) {
				return errAmbiguousFraming
			}
			length = value
			lengths++
		case bytes.EqualFold(bytes.TrimSpace(name), []byte(fiber.HeaderTransferEncoding)):
			if !bytes.EqualFold(value, []byte("chunked")) {
				return errAmbiguousFraming
			}
			encodings++
		}
	}
	if encodings > 1 || encodings > 0 && lengths > 0 {
		return errAmbiguousFraming
	}
	return nil
}

// knownMethod is fiber's default set of methods; anything else fiber
// would answer with a text/plain 400 of its own.
func knownMethod(m []byte) bool {
	for _, known := range fiber.DefaultMethods {
		if string(m) == known {
			return true
		}
	}
	return false
}
