package ratelimit_test

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strconv"

	"github.com/gofiber/fiber/v2"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/auth"
	"github.com/embedgate/embedgate/gateway/ratelimit"
)

// Example wires auth and rate limits the way the server does: requests are
// charged to their API key, with the key's own limits over the defaults,
// or to the client IP when no keys are configured.
func Example() {
	keys, _ := auth.New([]auth.KeyEntry{{Key: auth.Key{Name: "alice", Burst: 2}, Hash: sha256.Sum256([]byte("sk-alice"))}})
	subject := func(c *fiber.Ctx) (string, ratelimit.Limit) {
		if k, ok := auth.KeyFrom(c); ok {
			return "key:" + k.Name, ratelimit.Limit{RPS: k.RPS, Burst: k.Burst, TPM: k.TPM}
		}
		return ratelimit.ByClientIP(false)(c)
	}
	lim := ratelimit.NewMemory(ratelimit.MemoryOptions{}) // or ratelimit.NewRedis(url, ...)
	defaults := ratelimit.Limit{RPS: 1, Burst: 50, TPM: 1000}

	app := fiber.New(fiber.Config{ErrorHandler: func(c *fiber.Ctx, err error) error {
		var ge *gateway.Error
		if errors.As(err, &ge) && ge.Kind == gateway.RateLimited {
			return c.Status(429).SendString(ge.Msg)
		}
		return c.Status(401).SendString(err.Error())
	}})
	app.Post("/v1/embeddings", auth.Require(keys, slog.New(slog.DiscardHandler)), ratelimit.Middleware(lim, defaults, subject),
		func(c *fiber.Ctx) error {
			tokens := 300 // after tokenization
			if err := ratelimit.ChargeTokens(c.UserContext(), c, tokens); err != nil {
				return err
			}
			return c.SendString("ok")
		})

	for range 3 {
		req := httptest.NewRequest("POST", "/v1/embeddings", nil)
		req.Header.Set("Authorization", "Bearer sk-alice")
		resp, _ := app.Test(req, -1)
		h := resp.Header
		fmt.Println(resp.StatusCode, "requests", h.Get("x-ratelimit-remaining-requests")+"/"+h.Get("x-ratelimit-limit-requests"),
			"tokens", h.Get("x-ratelimit-remaining-tokens")+"/"+h.Get("x-ratelimit-limit-tokens"), "retry-after", strconv.Quote(h.Get("Retry-After")))
	}
	// Output:
	// 200 requests 1/2 tokens 700/1000 retry-after ""
	// 200 requests 0/2 tokens 400/1000 retry-after ""
	// 429 requests 0/2 tokens / retry-after "1"
}
