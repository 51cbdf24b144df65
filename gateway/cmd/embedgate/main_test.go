package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/embedgate/embedgate/gateway/internal/testenv"
)

// instance is one embedgate started through run on a free loopback port.
type instance struct {
	url    string
	cancel context.CancelFunc
	done   chan struct{} // closed when run returns
	err    error         // run's result, once done is closed
	logs   *testenv.LogBuffer
	// notified gets what run subscribed to through its notify argument;
	// sub keeps it once signal has read it.
	notified chan subscription
	sub      *subscription
}

// subscription is one call of run's notify: signal.Notify's arguments.
type subscription struct {
	c    chan<- os.Signal
	sigs []os.Signal
}

// noSignals is run's notify for tests that send no signal.
func noSignals(chan<- os.Signal, ...os.Signal) {}

func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// baseEnv serves the tiny generated model on the onnx backend.
func baseEnv(t testing.TB) map[string]string {
	return map[string]string{
		"MODEL_ID":             testenv.TinyModel(t),
		"ORT_LIB":              testenv.ORTLib(t),
		"INTRA_OP_THREADS":     "1",
		"TOKENIZATION_WORKERS": "2",
		"HOME":                 t.TempDir(),
		"RATE_LIMIT_RPS":       "10000",
		"RATE_LIMIT_BURST":     "10000",
	}
}

// startGateway runs the gateway until the test ends; a clean drain must
// return nil. Tests that only talk to their own gateways call t.Parallel;
// those that act on the whole process or hold tight deadlines stay serial
// (and so run first, while the parallel ones wait).
func startGateway(t *testing.T, env map[string]string, args ...string) *instance {
	t.Helper()
	// Port 0: the kernel picks a free port as the gateway binds, which it
	// then logs. A port picked by the test and bound later could be taken
	// in between by another test (it happened, under load).
	env["HOSTNAME"], env["PORT"] = "127.0.0.1", "0"
	ctx, cancel := context.WithCancel(context.Background())
	g := &instance{cancel: cancel, done: make(chan struct{}), logs: &testenv.LogBuffer{},
		notified: make(chan subscription, 1)}
	// In place of signal.Notify: signals reach this run only, never the
	// test process.
	notify := func(c chan<- os.Signal, sigs ...os.Signal) { g.notified <- subscription{c, sigs} }
	go func() {
		defer close(g.done)
		g.err = run(ctx, append([]string{"embedgate"}, args...), func(k string) string { return env[k] }, nil, io.Discard, g.logs, notify)
	}()
	t.Cleanup(func() {
		if returned, err := g.stop(30 * time.Second); !returned {
			t.Error("run() did not return after cancel")
		} else if err != nil {
			t.Errorf("run() = %v", err)
		}
		if t.Failed() {
			t.Logf("gateway log:\n%s", g.logs.String())
		}
	})
	g.waitReady(t)
	return g
}

// stop cancels run, as SIGTERM does, and waits up to within for it to
// return; returned is false if it did not.
func (g *instance) stop(within time.Duration) (returned bool, err error) {
	g.cancel()
	select {
	case <-g.done:
		return true, g.err
	case <-time.After(within):
		return false, nil
	}
}

// signal sends sig to this run as the OS would, after checking that run
// subscribed to it: otherwise the OS would apply its default action, which
// for SIGHUP, SIGINT and SIGTERM ends the process.
func (g *instance) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if g.sub == nil {
		select {
		case sub := <-g.notified:
			g.sub = &sub
		case <-time.After(5 * time.Second):
			t.Fatal("run did not subscribe to signals")
		}
	}
	if !slices.Contains(g.sub.sigs, sig) {
		t.Fatalf("run subscribed to %v, not %v: the OS would apply its default action", g.sub.sigs, sig)
	}
	select {
	case g.sub.c <- sig:
	case <-time.After(5 * time.Second):
		t.Fatalf("run did not take %v", sig)
	}
}

// listening is the address of the gateway's log line saying where it
// listens, in text or JSON.
var listening = regexp.MustCompile(`"?msg"?[=:]"?listening"?[ ,]"?addr"?[=:]"?([0-9.]+:[0-9]+)`)

func (g *instance) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for g.url == "" && time.Now().Before(deadline) {
		select {
		case <-g.done:
			t.Fatalf("run() returned before ready: %v\n%s", g.err, g.logs.String())
		default:
		}
		if m := listening.FindStringSubmatch(g.logs.String()); m != nil {
			g.url = "http://" + m[1]
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for time.Now().Before(deadline) {
		select {
		case <-g.done:
			t.Fatalf("run() returned before ready: %v\n%s", g.err, g.logs.String())
		default:
		}
		resp, err := http.Get(g.url + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("gateway not ready in 30s\n%s", g.logs.String())
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (g *instance) post(t testing.TB, path, body string, headers ...string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, g.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i] != "" {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	return do(t, req)
}

func (g *instance) get(t testing.TB, path string, headers ...string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, g.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i] != "" {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	return do(t, req)
}

func do(t testing.TB, req *http.Request) response {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: body}
}

func decode[T any](t testing.TB, r response) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decoding %s: %v", r.body, err)
	}
	return v
}
