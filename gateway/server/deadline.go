package server

import (
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"
)

// requestTimeout is the request's deadline: the server's limit, or the
// client's own when it says a shorter one. Clients that give up early then
// stop costing inference: fasthttp cannot report a disconnect, so a
// deadline is the only way the queue learns a request was abandoned.
// x-request-timeout takes a Go duration ("1.5s") or seconds; the OpenAI
// SDKs send their timeout in seconds as x-stainless-timeout.
func requestTimeout(c *fiber.Ctx, limit time.Duration) time.Duration {
	for _, h := range []string{"x-request-timeout", "x-stainless-timeout"} {
		if d, ok := parseTimeout(c.Get(h)); ok && d < limit {
			limit = d
		}
	}
	return limit
}

func parseTimeout(v string) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		if !(secs > 0 && secs <= 1e6) { // NaN too: it would be an instant deadline
			return 0, false
		}
		return time.Duration(secs * float64(time.Second)), true
	}
	d, err := time.ParseDuration(v)
	return d, err == nil && d > 0
}
