package abuse

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// probe is what every row uses: the target, the bounded dialer, an HTTP
// client on it.
type probe struct {
	opts      Options
	base      *url.URL
	addr      string // host:port of BaseURL
	dialer    *dialer
	transport *http.Transport
	client    *http.Client
	watch     *watcher // nil without a PID
}

func newProbe(ctx context.Context, opts Options) (*probe, error) {
	u, err := url.Parse(opts.BaseURL)
	if err != nil {
		return nil, fmt.Errorf("abuse: base URL: %w", err)
	}
	if u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("abuse: base URL %q: want http://host:port (the raw-socket rows speak plain HTTP/1.1)", opts.BaseURL)
	}
	if err := checkTarget(ctx, u.Hostname(), opts.AllowRemote); err != nil {
		return nil, err
	}
	port := u.Port()
	if port == "" {
		port = "80"
	}
	p := &probe{opts: opts, base: u, addr: net.JoinHostPort(u.Hostname(), port),
		dialer: &dialer{slots: make(chan struct{}, opts.MaxConns)}}
	p.transport = &http.Transport{
		DialContext:         func(ctx context.Context, _, addr string) (net.Conn, error) { return p.dialer.dial(ctx, addr) },
		DisableCompression:  true,
		MaxIdleConnsPerHost: 16,
	}
	p.client = &http.Client{Transport: p.transport}
	return p, nil
}

// checkTarget refuses a host that is not loopback, unless allowRemote: a
// name must resolve to loopback addresses only.
func checkTarget(ctx context.Context, host string, allowRemote bool) error {
	if allowRemote {
		return nil
	}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if addrs, err = net.DefaultResolver.LookupNetIP(rctx, "ip", host); err != nil {
			return fmt.Errorf("abuse: resolving %s: %w", host, err)
		}
	}
	for _, a := range addrs {
		if !a.Unmap().IsLoopback() {
			name := host
			if a.String() != host {
				name += " (" + a.String() + ")"
			}
			return fmt.Errorf("abuse: refusing %s: it is not a loopback address, and this drill sends gzip bombs, "+
				"thousands of connections and malformed requests. Point it at your own gateway on this machine, "+
				"or pass --allow-remote if you operate that host and mean to load it", name)
		}
	}
	return nil
}

// preflight checks that a gateway answers at all, so that a wrong URL is
// one clear error instead of every row failing.
func (p *probe) preflight(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r, err := p.do(ctx, http.MethodGet, "/health", nil)
	if err != nil {
		return fmt.Errorf("abuse: no gateway at %s: %w", p.opts.BaseURL, err)
	}
	if r.status != http.StatusOK {
		return fmt.Errorf("abuse: %s/health answers %d, want 200: start the drill on a healthy gateway", p.opts.BaseURL, r.status)
	}
	return nil
}

func (p *probe) close() { p.transport.CloseIdleConnections() }

// url is BaseURL with path.
func (p *probe) url(path string) string { return p.base.Scheme + "://" + p.base.Host + path }

// dialer bounds the connections the run holds open at once (MaxConns):
// each takes a slot until it is closed.
type dialer struct {
	slots chan struct{}
	nd    net.Dialer
}

func (d *dialer) dial(ctx context.Context, addr string) (*conn, error) {
	return d.dialWith(ctx, &d.nd, addr)
}

// dialSmallWindow dials a connection that offers the peer a small
// receive window (see smallReceiveBuffer).
func (d *dialer) dialSmallWindow(ctx context.Context, addr string) (*conn, error) {
	return d.dialWith(ctx, &net.Dialer{Control: smallReceiveBuffer}, addr)
}

func (d *dialer) dialWith(ctx context.Context, nd *net.Dialer, addr string) (*conn, error) {
	select {
	case d.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for a connection slot (--max-conns %d): %w", cap(d.slots), ctx.Err())
	}
	c, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		<-d.slots
		return nil, err
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		c.Close()
		<-d.slots
		return nil, fmt.Errorf("dial %s: not a TCP connection", addr)
	}
	return &conn{TCPConn: tc, release: func() { <-d.slots }}, nil
}

// conn is a TCP connection holding a slot of its dialer until Close.
type conn struct {
	*net.TCPConn
	once    sync.Once
	release func()
}

func (c *conn) Close() error {
	err := c.TCPConn.Close()
	c.once.Do(c.release)
	return err
}

// deadlineOf is ctx's deadline, or within from now when it has none or a
// later one.
func deadlineOf(ctx context.Context, within time.Duration) time.Time {
	d := time.Now().Add(within)
	if dl, ok := ctx.Deadline(); ok && dl.Before(d) {
		return dl
	}
	return d
}

// reply is one response: the first keepBody bytes of its body, its
// whole size, and (for raw exchanges) the bytes on the wire.
type reply struct {
	status int
	header http.Header
	body   []byte
	size   int64
	took   time.Duration
	wire   []byte
}

const keepBody = 64 << 10

// capped keeps the first max bytes written and counts them all.
type capped struct {
	buf []byte
	max int
	n   int64
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - len(c.buf); room > 0 {
		c.buf = append(c.buf, p[:min(room, len(p))]...)
	}
	c.n += int64(len(p))
	return len(p), nil
}

func readReply(resp *http.Response) (reply, error) {
	defer resp.Body.Close()
	body := &capped{max: keepBody}
	_, err := io.Copy(body, resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: body.buf, size: body.n}, err
}

// do sends one request with the API key (unless hdr sets Authorization)
// and reads its answer. hdr is name, value pairs.
func (p *probe) do(ctx context.Context, method, path string, body []byte, hdr ...string) (reply, error) {
	req, err := http.NewRequestWithContext(ctx, method, p.url(path), bytes.NewReader(body))
	if err != nil {
		return reply{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if p.opts.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+p.opts.APIKey)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	start := time.Now()
	resp, err := p.client.Do(req)
	if err != nil {
		return reply{}, err
	}
	r, err := readReply(resp)
	r.took = time.Since(start)
	return r, err
}

// exchange writes raw on a new connection and reads one response,
// keeping every byte the gateway sent (up to 1 MiB) in wire. It gives the
// gateway 10 s, or until ctx's deadline if sooner.
func (p *probe) exchange(ctx context.Context, raw []byte) (reply, error) {
	return p.exchangeWithin(ctx, raw, 10*time.Second)
}

func (p *probe) exchangeWithin(ctx context.Context, raw []byte, within time.Duration) (reply, error) {
	c, err := p.dialer.dial(ctx, p.addr)
	if err != nil {
		return reply{}, err
	}
	defer c.Close()
	_ = c.SetDeadline(deadlineOf(ctx, within))
	start := time.Now()
	if _, err := c.Write(raw); err != nil {
		return reply{}, fmt.Errorf("writing the request: %w", err)
	}
	wire := &capped{max: 1 << 20}
	resp, err := http.ReadResponse(bufio.NewReader(io.TeeReader(c, wire)), nil)
	if err != nil {
		return reply{wire: wire.buf}, fmt.Errorf("reading the response: %w", err)
	}
	r, err := readReply(resp)
	r.took, r.wire = time.Since(start), wire.buf
	return r, err
}

// isJSON checks that r is a JSON answer: its Content-Type and its body.
func isJSON(r reply) error {
	mt, _, _ := mime.ParseMediaType(r.header.Get("Content-Type"))
	if mt != "application/json" {
		return fmt.Errorf("%d with Content-Type %q, want application/json: %s", r.status, r.header.Get("Content-Type"), clip(r.body))
	}
	if !json.Valid(r.body) {
		return fmt.Errorf("%d with a body that is not JSON: %s", r.status, clip(r.body))
	}
	return nil
}

// isOpenAIError checks OpenAI's error shape: {"error":{"message":"..."}}.
func isOpenAIError(r reply) error {
	if err := isJSON(r); err != nil {
		return err
	}
	var v struct {
		Error *struct {
			Message *string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(r.body, &v); err != nil || v.Error == nil || v.Error.Message == nil {
		return fmt.Errorf("%d not in OpenAI's error shape {\"error\":{\"message\":...}}: %s", r.status, clip(r.body))
	}
	return nil
}

// clip is b for a report line: at most 120 bytes, on one line.
func clip(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return strconv.Quote(s)
}

// timedOut says whether err is a network timeout.
func timedOut(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
