package server

import (
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/embedgate/embedgate/gateway/ratelimit"
)

// retryUnit is the precision of retry-after-ms, of the x-ratelimit-reset-*
// durations and of "try again in" messages.
const retryUnit = time.Millisecond

// writeLimitHeaders is the one writer of every header about limits, called
// once per response: OpenAI's x-ratelimit-{limit,remaining,reset}-requests
// and -tokens for the limits the request was charged to, and on a 429
// Retry-After in whole seconds rounded up (at least 1: a client never
// retries before it would be admitted) with retry-after-ms, which OpenAI's
// SDKs prefer when present. Resets are Go durations rounded up to the
// millisecond ("1s", "6m0s", "120ms"), as OpenAI sends them. Nothing is
// written for a limit whose store was down: its counts are unknown.
func writeLimitHeaders(h *fasthttp.ResponseHeader, rec *record, status int) {
	if r := rec.requests; r != nil && r.Limit > 0 && !r.StoreDown {
		setRate(h, r, "requests")
	}
	if r := rec.tokenLimit; r != nil && r.Limit > 0 && !r.StoreDown {
		setRate(h, r, "tokens")
	}
	if status == fasthttp.StatusTooManyRequests {
		h.Set("Retry-After", strconv.FormatInt(int64(max(time.Second, ceilTo(rec.retryAfter, time.Second))/time.Second), 10))
		h.Set("retry-after-ms", strconv.FormatInt(int64(max(retryUnit, ceilTo(rec.retryAfter, retryUnit))/retryUnit), 10))
	}
}

func setRate(h *fasthttp.ResponseHeader, r *ratelimit.Result, what string) {
	h.Set("x-ratelimit-limit-"+what, strconv.Itoa(r.Limit))
	h.Set("x-ratelimit-remaining-"+what, strconv.Itoa(r.Remaining))
	h.Set("x-ratelimit-reset-"+what, ceilTo(r.Reset, retryUnit).String())
}

// ceilTo rounds d up to a multiple of unit; negative d becomes 0.
func ceilTo(d, unit time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return (d + unit - 1) / unit * unit
}
