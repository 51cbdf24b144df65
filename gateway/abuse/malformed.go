package abuse

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// planted is a fresh random string, so that finding it in a response or
// the log can only mean this run's request was echoed.
func planted(prefix string) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// malformed is a raw request the HTTP layer must refuse.
type malformed struct {
	name, raw string
	status    int
}

// plantedRequests are D2's requests: each carries key in Authorization
// and body text, and each is malformed at the HTTP layer.
func (p *probe) plantedRequests(key, body string) []malformed {
	head := "Host: " + p.base.Host + "\r\nAuthorization: Bearer " + key + "\r\nContent-Type: application/json\r\n"
	n := fmt.Sprint(len(body))
	return []malformed{
		{"Content-Length twice", "POST /embed HTTP/1.1\r\n" + head + "Content-Length: 17\r\nContent-Length: " + n + "\r\n\r\n" + body, 400},
		{"Content-Length -1", "POST /v1/embeddings HTTP/1.1\r\n" + head + "Content-Length: -1\r\n\r\n" + body, 400},
		{"Content-Length abc", "POST /embed HTTP/1.1\r\n" + head + "Content-Length: abc\r\n\r\n" + body, 400},
		{"space in a header name", "POST /embed HTTP/1.1\r\n" + head + "X Planted: " + body + "\r\nContent-Length: " + n + "\r\n\r\n" + body, 400},
	}
}

// plantedKeyRow (D2): malformed requests carrying a planted API key and
// planted body text get a JSON 400, and neither the key nor the text
// comes back in the response or (with ReadLog) reaches the gateway's log.
func plantedKeyRow(ctx context.Context, p *probe) (string, error) {
	key, txt := planted("sk-abuse-"), planted("abuse-planted-text-")
	body := `{"inputs":"` + txt + `"}`
	var failed []error
	for _, m := range p.plantedRequests(key, body) {
		failed = append(failed, p.refused(ctx, m, key, txt))
	}
	saw := "4 malformed requests → JSON 400, key and text not echoed"
	if p.opts.ReadLog == nil {
		saw += "; log not scanned (pass --log-file)"
	} else {
		time.Sleep(200 * time.Millisecond) // the request log lines are written after the answers
		scanned, err := scanLog(p.opts.ReadLog, key, txt)
		failed = append(failed, err)
		saw += fmt.Sprintf("; %d bytes of log scanned, neither found", scanned)
	}
	if err := errors.Join(failed...); err != nil {
		return "", err
	}
	return saw, nil
}

// scanLog reads the gateway's log and fails if it holds any of secrets.
func scanLog(read func() ([]byte, error), secrets ...string) (scanned int, err error) {
	log, err := read()
	if err != nil {
		return 0, fmt.Errorf("reading the gateway's log: %w", err)
	}
	for _, s := range secrets {
		if bytes.Contains(log, []byte(s)) {
			return len(log), fmt.Errorf("the gateway's log holds the planted %q: %s", s, logLine(log, s))
		}
	}
	return len(log), nil
}

// refused sends m and checks its answer: the status, JSON, and none of
// secrets anywhere in what the gateway sent back.
func (p *probe) refused(ctx context.Context, m malformed, secrets ...string) error {
	r, err := p.exchange(ctx, []byte(m.raw))
	for _, s := range secrets {
		if bytes.Contains(r.wire, []byte(s)) {
			return fmt.Errorf("%s: the answer echoes %q: %s", m.name, s, clip(r.wire))
		}
	}
	if err != nil {
		return fmt.Errorf("%s: %w", m.name, err)
	}
	if r.status != m.status {
		return fmt.Errorf("%s: %d, want %d: %s", m.name, r.status, m.status, clip(r.body))
	}
	if err := isJSON(r); err != nil {
		return fmt.Errorf("%s: %w", m.name, err)
	}
	return nil
}

// logLine is what precedes s in its line of log, up to 80 bytes, and s.
func logLine(log []byte, s string) string {
	i := bytes.Index(log, []byte(s))
	start := max(bytes.LastIndexByte(log[:i], '\n')+1, i-80)
	return clip(log[start : i+len(s)])
}

// brewRow: a method fiber does not know gets JSON, not text/plain.
func brewRow(ctx context.Context, p *probe) (string, error) {
	raw := "BREW /embed HTTP/1.1\r\nHost: " + p.base.Host + "\r\n" + p.authHeader() + "Content-Length: 2\r\n\r\n{}"
	r, err := p.exchange(ctx, []byte(raw))
	if err != nil {
		return "", err
	}
	if r.status < 400 || r.status >= 500 {
		return "", fmt.Errorf("%d, want a 4xx: %s", r.status, clip(r.body))
	}
	if err := isJSON(r); err != nil {
		return "", err
	}
	return fmt.Sprintf("BREW /embed → %d JSON", r.status), nil
}

// upperPathRow: /V1/Embeddings routes case-insensitively, so its errors
// must be in OpenAI's shape too: a routed one (an invalid body), and
// those raised before a route is known (a wrong method, no such path).
func upperPathRow(ctx context.Context, p *probe) (string, error) {
	var saw []string
	for _, req := range []struct {
		method, path string
		body         []byte
	}{
		{http.MethodPost, "/V1/Embeddings", []byte(`{"input":42}`)},
		{http.MethodGet, "/V1/EMBEDDINGS", nil},
		{http.MethodPost, "/V1/Nothing", []byte(`{}`)},
	} {
		r, err := p.do(ctx, req.method, req.path, req.body)
		if err != nil {
			return "", fmt.Errorf("%s %s: %w", req.method, req.path, err)
		}
		if r.status < 400 || r.status >= 500 {
			return "", fmt.Errorf("%s %s: %d, want a 4xx: %s", req.method, req.path, r.status, clip(r.body))
		}
		if err := isOpenAIError(r); err != nil {
			return "", fmt.Errorf("%s %s: %w", req.method, req.path, err)
		}
		saw = append(saw, fmt.Sprintf("%s %s → %d", req.method, req.path, r.status))
	}
	return strings.Join(saw, ", ") + ", all in OpenAI's shape", nil
}

// framingRow: framing two parsers could read differently (two different
// Content-Lengths, an unknown Transfer-Encoding) is refused with 400,
// never guessed at: the difference is how requests are smuggled.
func framingRow(ctx context.Context, p *probe) (string, error) {
	head := "Host: " + p.base.Host + "\r\n" + p.authHeader() + "Content-Type: application/json\r\n"
	body := `{"inputs":"framing"}`
	var failed []error
	for _, m := range []malformed{
		{"two Content-Lengths", "POST /embed HTTP/1.1\r\n" + head + "Content-Length: 5\r\nContent-Length: 20\r\n\r\n" + body, 400},
		{"Transfer-Encoding: xchunked", "POST /embed HTTP/1.1\r\n" + head + "Transfer-Encoding: xchunked\r\n\r\n14\r\n" + body + "\r\n0\r\n\r\n", 400},
		{"chunked and Content-Length", "POST /embed HTTP/1.1\r\n" + head + "Transfer-Encoding: chunked\r\nContent-Length: 20\r\n\r\n14\r\n" + body + "\r\n0\r\n\r\n", 400},
	} {
		failed = append(failed, p.refused(ctx, m))
	}
	if err := errors.Join(failed...); err != nil {
		return "", err
	}
	return "two Content-Lengths, xchunked, chunked with a length → JSON 400", nil
}
