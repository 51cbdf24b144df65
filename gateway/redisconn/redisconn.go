// Package redisconn is what embedgate's users of Redis (the rate limiter,
// the embedding cache) share: a client whose every call is bounded, and an
// outage tracker that logs an outage once, lets one call per interval
// probe Redis while it is down, and exports the state as metrics.
//
// redisconn imports nothing else of ours.
package redisconn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// NewClient returns a client for rawURL (redis:// or rediss://, with user,
// password and database as go-redis' ParseURL reads them) that makes one
// attempt per call, each step of it (dial, pool wait, read, write) bounded
// by timeout. tlsConfig, when set, replaces the TLS config of a rediss://
// URL (which trusts the system roots), e.g. to trust a private CA. It does
// not connect: the first call does. URL errors never show the password.
func NewClient(rawURL string, timeout time.Duration, tlsConfig *tls.Config) (*redis.Client, error) {
	if timeout <= 0 {
		return nil, fmt.Errorf("redis timeout %v is not positive", timeout)
	}
	ro, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("redis url: %w", redact(err))
	}
	if tlsConfig != nil {
		ro.TLSConfig = tlsConfig
	}
	// One bounded attempt per call: go-redis' own retries, dial retries
	// and 5s timeouts would keep a request waiting on a dead Redis for
	// seconds; the per-call context deadline is the real bound.
	ro.MaxRetries = -1
	ro.DialerRetries = 1
	ro.DialTimeout = timeout
	ro.ReadTimeout = timeout
	ro.WriteTimeout = timeout
	ro.PoolTimeout = timeout
	ro.ContextTimeoutEnabled = true
	ro.DisableIdentity = true // CLIENT SETINFO is one more round trip per connection, and Redis < 7.2 refuses it
	ro.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	return redis.NewClient(ro), nil
}

// redact removes the password from a URL parse error, which quotes the
// whole URL.
func redact(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil {
			return &url.Error{Op: ue.Op, URL: u.Redacted(), Err: ue.Err}
		}
		return &url.Error{Op: ue.Op, URL: "(redacted)", Err: ue.Err}
	}
	return err
}

// LogThrough sends go-redis' own log lines (dial errors, twice a second
// during an outage, in plain text whatever the log format) to logger at
// debug level: the Outage of each user already logs each outage and
// recovery once, and users count errors in metrics. go-redis has one
// logger per process, so this is for main to call once.
func LogThrough(logger *slog.Logger) {
	redis.SetLogger(redisLog{logger})
}

type redisLog struct{ logger *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	if l.logger.Enabled(ctx, slog.LevelDebug) {
		l.logger.DebugContext(ctx, fmt.Sprintf(format, v...), "from", "go-redis")
	}
}
