package abuse

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// metricsURL is where /metrics is served: the metrics port when the
// gateway has one, else the public port.
func (p *probe) metricsURL() string {
	if p.opts.MetricsPort != 0 {
		return "http://" + net.JoinHostPort(p.base.Hostname(), strconv.Itoa(p.opts.MetricsPort)) + "/metrics"
	}
	return p.url("/metrics")
}

// count499 sums embedgate_http_requests_total over the series with
// status 499.
func (p *probe) count499(ctx context.Context) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.metricsURL(), nil)
	if err != nil {
		return 0, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("/metrics unreachable: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("/metrics answers %d (pass --metrics-port if the gateway serves it there)", resp.StatusCode)
	}
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "embedgate_http_requests_total{") || !strings.Contains(line, `status="499"`) {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			return 0, fmt.Errorf("/metrics: %q: %w", line, err)
		}
		sum += v
	}
	return sum, sc.Err()
}

// metricsPortRow: with --metrics-port, /metrics is served there and not
// on the public port.
func metricsPortRow(ctx context.Context, p *probe) (string, error) {
	if p.opts.MetricsPort == 0 {
		return "", skip("pass --metrics-port when the gateway runs with one")
	}
	pub, err := p.do(ctx, http.MethodGet, "/metrics", nil)
	if err != nil {
		return "", fmt.Errorf("public /metrics: %w", err)
	}
	if pub.status == http.StatusOK || bytes.Contains(pub.body, []byte("embedgate_")) {
		return "", fmt.Errorf("public port serves /metrics (%d) although --metrics-port is set", pub.status)
	}
	if _, err := p.count499(ctx); err != nil {
		return "", fmt.Errorf("metrics port %d: %w", p.opts.MetricsPort, err)
	}
	return fmt.Sprintf("public /metrics → %d; served on port %d", pub.status, p.opts.MetricsPort), nil
}

// forwardedRow: with --trust-proxy-headers, a last X-Forwarded-For hop
// that is no address ("unknown") or carries a port must not send the
// limiter left to an entry the client wrote itself. A client-written
// address is locked out first (by failed authentications with
// ExpectAuth, else by its request rate limit); a request naming it before
// such a hop must then not be refused as that address.
func forwardedRow(ctx context.Context, p *probe) (string, error) {
	if !p.opts.TrustProxyHeaders {
		return "", skip("only meaningful when the gateway runs with --trust-proxy-headers: pass it here too")
	}
	if !p.opts.ExpectAuth && p.opts.APIKey != "" {
		return "", skip("with keys, limits count per key, not per address: pass --expect-auth to check through failed authentications")
	}
	x := fmt.Sprintf("203.0.113.%d", 1+rand.IntN(254))
	tries, err := p.lockOut(ctx, x)
	if err != nil {
		return "", err
	}
	var saw []string
	for _, hop := range []string{"unknown", "127.0.0.1:5555"} {
		r, err := p.do(ctx, http.MethodGet, "/info", nil, "X-Forwarded-For", x+", "+hop)
		if err != nil {
			return "", err
		}
		still, err := p.do(ctx, http.MethodGet, "/info", nil, "X-Forwarded-For", x)
		switch {
		case err != nil:
			return "", err
		case still.status != http.StatusTooManyRequests:
			return "", skip("%s's lock-out ended before the check (%d): inconclusive", x, still.status)
		case r.status == http.StatusTooManyRequests:
			return "", fmt.Errorf("%q was charged to the client-written %s (429)", x+", "+hop, x)
		case r.status >= 500:
			return "", fmt.Errorf("%q: %d: %s", x+", "+hop, r.status, clip(r.body))
		}
		saw = append(saw, fmt.Sprintf("%q → %d", x+", "+hop, r.status))
	}
	return fmt.Sprintf("%s locked out after %d requests; %s: charged to the peer", x, tries, strings.Join(saw, ", ")), nil
}

// lockOut makes the gateway refuse address x (sent as the only
// X-Forwarded-For hop) with 429, and returns how many requests it took.
func (p *probe) lockOut(ctx context.Context, x string) (int, error) {
	limit, hdr := 1000, []string{"X-Forwarded-For", x}
	if p.opts.ExpectAuth {
		limit, hdr = 100, append(hdr, "Authorization", "Bearer "+planted("wrong-"))
	}
	for i := 1; i <= limit; i++ {
		r, err := p.do(ctx, http.MethodGet, "/info", nil, hdr...)
		if err != nil {
			return i, err
		}
		if r.status == http.StatusTooManyRequests {
			return i, nil
		}
	}
	if p.opts.ExpectAuth {
		return limit, skip("%s not refused after %d wrong keys: failed authentications are not limited (see wrong-keys)", x, limit)
	}
	return limit, skip("%s not refused after %d requests: the rate limit is too high to check (lower --rate-limit-burst)", x, limit)
}

// hangupRow: SIGHUP never stops the gateway (it reloads the keys file,
// if any). Only with a PID or a Signal func.
func hangupRow(ctx context.Context, p *probe) (string, error) {
	send := p.opts.Signal
	if send == nil {
		if p.opts.PID == 0 {
			return "", skip("pass --pid to send the gateway SIGHUP")
		}
		send = func(sig os.Signal) error {
			proc, err := os.FindProcess(p.opts.PID)
			if err != nil {
				return err
			}
			return proc.Signal(sig)
		}
	}
	for range 2 {
		if err := send(syscall.SIGHUP); err != nil {
			return "", fmt.Errorf("sending SIGHUP: %w", err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	took, err := p.healthOnNewConn(ctx)
	if err != nil {
		return "", fmt.Errorf("after SIGHUP: /health: %w", err)
	}
	return fmt.Sprintf("2 × SIGHUP, then /health 200 in %s", took.Round(time.Millisecond)), nil
}

// wrongKeys is how many wrong keys the wrong-keys row sends.
const wrongKeys = 300

// wrongKeysRow: failed authentications are limited per client address:
// of 300 wrong keys, the first few get 401, the rest 429. It locks this
// address out for about a minute, so it runs last, and only with
// ExpectAuth.
func wrongKeysRow(ctx context.Context, p *probe) (string, error) {
	if !p.opts.ExpectAuth {
		r, err := p.do(ctx, http.MethodGet, "/info", nil, "Authorization", "Bearer "+planted("wrong-"))
		switch {
		case err != nil:
			return "", err
		case r.status == http.StatusOK:
			return "", skip("the gateway has no API keys")
		}
		return "", skip("the gateway refuses a wrong key with %d; pass --expect-auth to send %d (it locks this address out for a minute)", r.status, wrongKeys)
	}
	statuses, first429 := map[int]int{}, 0
	for i := 1; i <= wrongKeys; i++ {
		r, err := p.do(ctx, http.MethodGet, "/info", nil, "Authorization", "Bearer "+planted("wrong-"))
		if err != nil {
			return "", fmt.Errorf("wrong key %d: %w", i, err)
		}
		statuses[r.status]++
		if r.status == http.StatusTooManyRequests && first429 == 0 {
			first429 = i
		}
		if r.status != http.StatusUnauthorized && r.status != http.StatusTooManyRequests {
			return "", fmt.Errorf("wrong key %d: %d, want 401 or 429: %s", i, r.status, clip(r.body))
		}
	}
	if first429 == 0 {
		return "", errors.New("300 wrong keys, 300 × 401: failed authentications are not limited")
	}
	return fmt.Sprintf("%d wrong keys: %v, first 429 at #%d (this address is now locked out for about a minute)", wrongKeys, statuses, first429), nil
}
