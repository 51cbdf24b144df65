package abuse

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// gzipBombRow (D1): a small body, gzip three times over, that inflates
// to BombSize. A gateway that inflates it without a bound grows by that
// much per request; the answer must be a quick JSON 415 or 413.
func gzipBombRow(ctx context.Context, p *probe) (string, error) {
	bomb, err := gzipBomb(p.opts.BombSize, 3)
	if err != nil {
		return "", err
	}
	r, err := p.do(ctx, http.MethodPost, "/embed", bomb, "Content-Encoding", "gzip, gzip, gzip")
	if err != nil {
		return "", fmt.Errorf("%d-byte bomb: %w", len(bomb), err)
	}
	if r.status != http.StatusUnsupportedMediaType && r.status != http.StatusRequestEntityTooLarge {
		return "", fmt.Errorf("%d-byte bomb (%d MiB inflated) got %d, want 415 or 413: %s", len(bomb), p.opts.BombSize>>20, r.status, clip(r.body))
	}
	if err := isJSON(r); err != nil {
		return "", err
	}
	if r.took > 2*time.Second {
		return "", fmt.Errorf("%d after %s: the gateway took long enough to have inflated it", r.status, r.took.Round(time.Millisecond))
	}
	return fmt.Sprintf("%d-byte body (%d MiB inside) → %d JSON in %s", len(bomb), p.opts.BombSize>>20, r.status, r.took.Round(time.Millisecond)), nil
}

// gzipBomb is size bytes of JSON whitespace then {"inputs":"x"}, gzip
// layers times over. It is built streaming, so the bomb never sits
// inflated in this process's memory. The first layer uses the fastest
// level (a 100 MiB bomb in 0.15 s instead of 0.6 s; deflate's ratio on one
// repeated byte is about 1000:1 at any level), the next ones the best.
func gzipBomb(size int64, layers int) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	spaces := bytes.Repeat([]byte(" "), 64<<10)
	for left := size; left > 0; left -= int64(len(spaces)) {
		if _, err := zw.Write(spaces[:min(left, int64(len(spaces)))]); err != nil {
			return nil, err
		}
	}
	if _, err := io.WriteString(zw, `{"inputs":"x"}`); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	for range layers - 1 {
		var next bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&next, gzip.BestCompression)
		if _, err := zw.Write(data); err != nil {
			return nil, err
		}
		if err := zw.Close(); err != nil {
			return nil, err
		}
		data = next.Bytes()
	}
	return data, nil
}

// size is n bytes in kB or MB (of 1000), as --payload-limit counts.
func size(n int) string {
	if n >= 1e6 {
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	}
	return fmt.Sprintf("%.1f kB", float64(n)/1e3)
}

// text is n bytes of English-looking words: many tokens per byte.
func text(n int) string {
	const words = "lorem ipsum dolor sit amet consectetur adipiscing elit "
	return strings.Repeat(words, n/len(words)+1)[:n]
}

// fitting is a JSON body of about the payload limit, less room for the
// rest of the request: {"inputs":"<text>",...extra}.
func (p *probe) fitting(field, extra string) []byte {
	n := p.opts.PayloadLimit - 256 - len(extra)
	return []byte(`{"` + field + `":"` + text(n) + `"` + extra + `}`)
}

// maxTokenizeAnswer is the largest /tokenize answer D5 accepts: one
// input truncated to a model's max input length is tens of KB; the
// issue saw 68 MB.
const maxTokenizeAnswer = 4 << 20

// tokenizeRow (D5): TokenizeParallel /tokenize requests of 2 MB of text
// at once. Every answer must be bounded: truncated to the model's max
// input length, or 422, 413 or 429; never tens of MB.
func tokenizeRow(ctx context.Context, p *probe) (string, error) {
	body := p.fitting("inputs", "")
	n := p.opts.TokenizeParallel
	replies := make([]reply, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { replies[i], errs[i] = p.do(ctx, http.MethodPost, "/tokenize", body) })
	}
	wg.Wait()
	statuses := map[int]int{}
	var largest int64
	for i, r := range replies {
		if errs[i] != nil {
			return "", fmt.Errorf("request %d of %d: %w", i+1, n, errs[i])
		}
		statuses[r.status]++
		largest = max(largest, r.size)
		switch {
		case r.size > maxTokenizeAnswer:
			return "", fmt.Errorf("a %d answer of %d bytes to %d bytes of text: /tokenize is unbounded", r.status, r.size, len(body))
		case r.status >= 500:
			return "", fmt.Errorf("%d: %s", r.status, clip(r.body))
		case r.status == http.StatusUnauthorized:
			return "", fmt.Errorf("401: pass the gateway's key with --api-key")
		}
	}
	return fmt.Sprintf("%d × %s of text: statuses %v, largest answer %s", n, size(len(body)), statuses, size(int(largest))), nil
}

// writeFirstRow: a client that writes its whole too-large body before it
// reads (Python's httpx, requests, http.client) must read the JSON 413,
// not a connection reset, in 3 of 3 tries. Such a client gives up when a
// write fails, so a failed write fails the row, and a small send buffer
// makes the writes wait on the gateway reading (or discarding) the body,
// as they do across a real network.
func writeFirstRow(ctx context.Context, p *probe) (string, error) {
	n := max(2*p.opts.PayloadLimit, 1<<20) // past the socket buffers in between
	body := `{"inputs":"` + strings.Repeat("a", n) + `"}`
	head := "POST /v1/embeddings HTTP/1.1\r\nHost: " + p.base.Host + "\r\nContent-Type: application/json\r\n" +
		p.authHeader() + "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
	var took []string
	for try := 1; try <= 3; try++ {
		c, err := p.dialer.dial(ctx, p.addr)
		if err != nil {
			return "", err
		}
		start := time.Now()
		_ = c.SetWriteBuffer(64 << 10)
		_ = c.SetDeadline(deadlineOf(ctx, 10*time.Second))
		if n, err := io.WriteString(c, head+body); err != nil {
			c.Close()
			return "", fmt.Errorf("try %d: writing the body: %w after %d of %d bytes: a client that writes first sees no 413", try, err, n, len(head+body))
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			c.Close()
			return "", fmt.Errorf("try %d: wrote %d bytes, then reading the answer: %w", try, len(body), err)
		}
		r, err := readReply(resp)
		c.Close()
		if err != nil {
			return "", fmt.Errorf("try %d: reading the body of the %d: %w", try, r.status, err)
		}
		if r.status != http.StatusRequestEntityTooLarge {
			return "", fmt.Errorf("try %d: %d, want 413: %s", try, r.status, clip(r.body))
		}
		if err := isOpenAIError(r); err != nil {
			return "", fmt.Errorf("try %d: %w", try, err)
		}
		took = append(took, time.Since(start).Round(time.Millisecond).String())
	}
	return fmt.Sprintf("%s written first, then the JSON 413 read in 3 of 3 tries (%s)", size(len(body)), strings.Join(took, ", ")), nil
}

// authHeader is the API key as a raw header line, or nothing.
func (p *probe) authHeader() string {
	if p.opts.APIKey == "" {
		return ""
	}
	return "Authorization: Bearer " + p.opts.APIKey + "\r\n"
}

// maxErrorBody is the largest error body the oversized-input rows accept:
// a client-supplied value is echoed in at most 64 bytes.
const maxErrorBody = 1 << 10

// promptNameRow: a 2 MB prompt_name must come back as a short error,
// not echoed whole.
func promptNameRow(ctx context.Context, p *probe) (string, error) {
	name := text(p.opts.PayloadLimit - 256)
	body := []byte(`{"inputs":"hi","prompt_name":"` + name + `"}`)
	r, err := p.do(ctx, http.MethodPost, "/embed", body)
	if err != nil {
		return "", err
	}
	switch {
	case r.status < 400 || r.status >= 500:
		return "", fmt.Errorf("%d, want a 4xx: %s", r.status, clip(r.body))
	case r.size > maxErrorBody:
		return "", fmt.Errorf("%d with a %d-byte error body to a %d-byte prompt_name: it echoes the input", r.status, r.size, len(name))
	}
	if err := isJSON(r); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s prompt_name → %d, %d-byte error body", size(len(name)), r.status, r.size), nil
}

// nanTimeoutRow: x-request-timeout NaN or Inf is no deadline of its own,
// not an instant one (504).
func nanTimeoutRow(ctx context.Context, p *probe) (string, error) {
	var saw []string
	for _, v := range []string{"NaN", "+Inf", "-1"} {
		r, err := p.do(ctx, http.MethodPost, "/embed", []byte(`{"inputs":"hello"}`), "x-request-timeout", v)
		if err != nil {
			return "", fmt.Errorf("x-request-timeout %s: %w", v, err)
		}
		if r.status == http.StatusGatewayTimeout || r.status >= 500 {
			return "", fmt.Errorf("x-request-timeout %s: %d in %s: %s", v, r.status, r.took.Round(time.Millisecond), clip(r.body))
		}
		saw = append(saw, fmt.Sprintf("%s → %d", v, r.status))
	}
	return strings.Join(saw, ", "), nil
}
