package server

import (
	"bufio"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// rawRequest sends raw bytes to base and reads the one response.
func rawRequest(t *testing.T, base, raw string) (*http.Response, []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%q: %v", raw, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

// What a client sends at the HTTP layer never comes back in a response or
// a log line, and every such refusal is JSON in the path's dialect.
func TestMalformedHTTP(t *testing.T) {
	const secret, text = "sk-live-SECRET", "planted-body-text"
	s := guardedServer(t, newFake())
	base := serve(t, s)
	head := "Host: x\r\nAuthorization: Bearer " + secret + "\r\nContent-Type: application/json\r\n"
	body := `{"inputs":"` + text + `"}`
	tests := []struct {
		name, raw string
		status    int
	}{
		{"two content lengths", "POST /embed HTTP/1.1\r\n" + head + "Content-Length: 17\r\nContent-Length: 30\r\n\r\n" + body, 400},
		{"negative content length", "POST /v1/embeddings HTTP/1.1\r\n" + head + "Content-Length: -1\r\n\r\n" + body, 400},
		{"content length abc", "POST /embed HTTP/1.1\r\n" + head + "Content-Length: abc\r\n\r\n" + body, 400},
		{"space in header name", "POST /embed HTTP/1.1\r\n" + head + "X Bad: " + text + "\r\nContent-Length: 30\r\n\r\n" + body, 400},
		{"xchunked", "POST /embed HTTP/1.1\r\n" + head + "Transfer-Encoding: xchunked\r\n\r\n1e\r\n" + body + "\r\n0\r\n\r\n", 400},
		{"chunked and length", "POST /embed HTTP/1.1\r\n" + head + "Transfer-Encoding: chunked\r\nContent-Length: 30\r\n\r\n1e\r\n" + body + "\r\n0\r\n\r\n", 400},
		{"unknown method", "BREW /v1/embeddings HTTP/1.1\r\n" + head + "Content-Length: 30\r\n\r\n" + body, 400},
		{"upper-case path", "POST /V1/EMBEDDINGS HTTP/1.1\r\n" + head + "Content-Length: 2\r\n\r\n{}", 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, b := rawRequest(t, base, tt.raw)
			if resp.StatusCode != tt.status {
				t.Errorf("status = %d, want %d (%s)", resp.StatusCode, tt.status, b)
			}
			path := strings.ToLower(strings.Fields(tt.raw)[1])
			if strings.Contains(tt.name, "content length") && tt.name != "two content lengths" || strings.Contains(tt.name, "header name") {
				path = "/" // fasthttp could not parse the head: the path is unknown
			}
			checkErrorShape(t, path, b, "")
			if strings.Contains(string(b), secret) || strings.Contains(string(b), text) {
				t.Errorf("response quotes the request: %s", b)
			}
		})
	}
	if logs := s.logs.String(); strings.Contains(logs, secret) || strings.Contains(logs, text) {
		t.Errorf("logs quote a request:\n%s", logs)
	}
}

// A client that writes its whole too-large body before reading (as httpx,
// requests and http.client do) still reads the JSON 413: the server
// lingers instead of resetting the connection.
func TestTooLargeWhileClientWrites(t *testing.T) {
	s := newTestServer(t, newFake(), nil, nil)
	base := serve(t, s)
	body := `{"inputs":"` + strings.Repeat("a", 4<<20) + `"}`
	for i := range 3 {
		conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		head := "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
		if _, err := io.WriteString(conn, head+body); err != nil {
			t.Fatalf("try %d: writing the body: %v", i, err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("try %d: reading the response after writing the whole body: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		conn.Close()
		if resp.StatusCode != 413 {
			t.Fatalf("try %d: status %d, want 413 (%s)", i, resp.StatusCode, b)
		}
		checkErrorShape(t, "/v1/embeddings", b, "invalid_request_error")
	}
}

// A client that resets its connection mid-body is counted as 499, a client
// abort, and not logged as a server error.
func TestClientResetIs499(t *testing.T) {
	s := newTestServer(t, newFake(), nil, nil)
	base := serve(t, s)
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(conn, "POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"inputs\":")
	time.Sleep(50 * time.Millisecond) // the server is reading the body
	_ = conn.(*net.TCPConn).SetLinger(0)
	_ = conn.Close() // RST
	const want = `embedgate_http_requests_total{route="unmatched",status="499"} 1`
	var metrics string
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(metrics, want) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		_, body := s.do(t, http.MethodGet, "/metrics", "", "")
		metrics = string(body)
	}
	if !strings.Contains(metrics, want) {
		t.Errorf("/metrics does not count the reset as 499:\n%s", metrics)
	}
	if got := s.logs.String(); strings.Contains(got, `"level":"ERROR"`) || strings.Contains(got, `"status":50`) {
		t.Errorf("a client reset was logged as a server error:\n%s", got)
	}
}

// With --metrics-port, /metrics is served there only.
func TestMetricsElsewhere(t *testing.T) {
	srv, err := newServer(Options{BodyLimit: testBodyLimit, RequestTimeout: time.Second, MetricsElsewhere: true},
		slog.New(slog.DiscardHandler), oneModel(newFake()), prometheus.NewRegistry(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.App().Shutdown() })
	s := &testServer{Server: srv}
	if resp, body := s.do(t, http.MethodGet, "/metrics", "", ""); resp.StatusCode != 404 {
		t.Errorf("GET /metrics on the public port = %d, want 404 (%s)", resp.StatusCode, body)
	}
}

// Hugging Face's InferenceClient, pointed at a TEI base URL, posts to /.
func TestTEICompatRoute(t *testing.T) {
	s := newTestServer(t, newFake(), nil, nil)
	resp, body := s.post(t, "/", `{"inputs":["a","b"],"normalize":true}`)
	var vecs [][]float32
	if err := json.Unmarshal(body, &vecs); resp.StatusCode != 200 || err != nil || len(vecs) != 2 {
		t.Errorf("POST / = %d %s, want TEI's /embed answer", resp.StatusCode, body)
	}
}
