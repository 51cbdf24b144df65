package server

import (
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"
)

func TestRequestTimeout(t *testing.T) {
	tests := []struct {
		name    string
		headers map[string]string
		want    time.Duration
	}{
		{"none", nil, 30 * time.Second},
		{"duration", map[string]string{"x-request-timeout": "1.5s"}, 1500 * time.Millisecond},
		{"seconds", map[string]string{"x-request-timeout": "2"}, 2 * time.Second},
		{"stainless", map[string]string{"x-stainless-timeout": "0.25"}, 250 * time.Millisecond},
		{"shorter wins", map[string]string{"x-request-timeout": "3s", "x-stainless-timeout": "1"}, time.Second},
		{"longer ignored", map[string]string{"x-request-timeout": "600"}, 30 * time.Second},
		{"garbage ignored", map[string]string{"x-request-timeout": "soon"}, 30 * time.Second},
		{"negative ignored", map[string]string{"x-request-timeout": "-1"}, 30 * time.Second},
		{"zero ignored", map[string]string{"x-stainless-timeout": "0"}, 30 * time.Second},
	}
	app := fiber.New()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fctx := &fasthttp.RequestCtx{}
			for k, v := range tt.headers {
				fctx.Request.Header.Set(k, v)
			}
			c := app.AcquireCtx(fctx)
			defer app.ReleaseCtx(c)
			if got := requestTimeout(c, 30*time.Second); got != tt.want {
				t.Errorf("requestTimeout(%v) = %v, want %v", tt.headers, got, tt.want)
			}
		})
	}
}
