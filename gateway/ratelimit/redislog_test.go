package ratelimit

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/embedgate/embedgate/gateway/internal/testenv"
)

// go-redis' own log lines go through our logger, at debug level, never
// straight to stderr in plain text.
func TestRedisLogsThroughLogger(t *testing.T) {
	var buf testenv.LogBuffer
	LogRedisThrough(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { LogRedisThrough(slog.New(slog.DiscardHandler)) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	r, err := NewRedis("redis://"+addr, RedisOptions{Timeout: 50 * time.Millisecond}, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for range 3 {
		_, _ = r.client.Ping(context.Background()).Result()
	}
	t.Log(buf.String())
	if !strings.Contains(buf.String(), `"level":"DEBUG","msg":"redis: `) {
		t.Errorf("go-redis logged nothing through the logger: %q", buf.String())
	}
}
