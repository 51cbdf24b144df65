package auth

import (
	"errors"
	"log/slog"

	"github.com/gofiber/fiber/v2"

	"github.com/embedgate/embedgate/gateway"
)

// LocalKeyName is the fiber Locals key under which Require stores the
// matched key's name, for the request log line.
const LocalKeyName = "key_name"

// localKey is the Locals key of the whole matched Key; unexported so only
// KeyFrom reads it.
type localKey struct{}

// Require returns a fiber middleware that lets a request through only with
// a valid, enabled key (see FromHeaders for where it is looked for). It
// stores the key's name in c.Locals(LocalKeyName) and the Key for KeyFrom;
// otherwise it returns a *gateway.Error of kind Unauthorized, which the
// server's error handler renders as 401. With keys nil (no --api-key or
// --api-keys-file) every request passes.
//
// Refusals are logged at debug level with the key's name when one is
// known: a flood of bad keys should not flood the logs, and the presented
// key itself is never logged.
func Require(keys *Keys, logger *slog.Logger) fiber.Handler {
	return func(c *fiber.Ctx) error {
		if keys == nil {
			return c.Next()
		}
		authz := c.Get(fiber.HeaderAuthorization)
		presented, ok := FromHeaders(authz, c.Get("api-key"))
		if !ok {
			msg := "missing API key: send 'Authorization: Bearer <key>' or an 'api-key' header"
			if authz != "" {
				msg = "malformed Authorization header: expected 'Bearer <key>'"
			}
			logger.Debug("request refused", "reason", msg, "ip", c.IP(), "path", c.Path())
			return &gateway.Error{Kind: gateway.Unauthorized, Msg: msg, Err: ErrMissing}
		}
		key, err := keys.Match(presented)
		switch {
		case errors.Is(err, ErrDisabled):
			logger.Debug("request refused", "reason", "disabled key", "key_name", key.Name, "ip", c.IP(), "path", c.Path())
			return &gateway.Error{Kind: gateway.Unauthorized, Msg: "API key is disabled", Err: err}
		case err != nil:
			logger.Debug("request refused", "reason", "unknown key", "ip", c.IP(), "path", c.Path())
			return &gateway.Error{Kind: gateway.Unauthorized, Msg: "invalid API key", Err: err}
		}
		c.Locals(LocalKeyName, key.Name)
		c.Locals(localKey{}, key)
		return c.Next()
	}
}

// KeyFrom returns the key Require matched for this request; ok is false
// when Require did not run or auth is off.
func KeyFrom(c *fiber.Ctx) (Key, bool) {
	k, ok := c.Locals(localKey{}).(Key)
	return k, ok
}
