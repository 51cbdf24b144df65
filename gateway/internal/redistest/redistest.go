// Package redistest runs a throwaway redis-server on a free loopback port for
// tests, and lets a test kill, pause and restart it to exercise what callers
// do while Redis is gone. It needs /usr/bin/redis-server (Debian's
// redis-server package) and nothing else; each Server is stopped by
// t.Cleanup.
package redistest

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/embedgate/embedgate/gateway/internal/testenv"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Binary is where Debian installs redis-server.
const Binary = "/usr/bin/redis-server"

// startTimeout bounds how long a start or restart may take before the test
// fails; redis-server is ready in a few milliseconds on our machines.
const startTimeout = 10 * time.Second

// Server is one redis-server process. Its port stays the same across
// Restart, so clients configured with URL reconnect on their own.
type Server struct {
	t    testing.TB
	port int
	args func(port int) []string
	tls  *tls.Config // client config when the server speaks TLS only
	dir  string

	mu     sync.Mutex
	proc   *os.Process
	exited chan error // receives cmd.Wait's result once
}

// Start runs redis-server on a free 127.0.0.1 port with persistence off.
// extra are further redis-server arguments ("--requirepass", "pw"), added
// after the defaults so they win.
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	s := &Server{t: t, dir: t.TempDir()}
	s.args = func(port int) []string {
		return append(s.baseArgs("--port", port), extra...)
	}
	s.launch()
	return s
}

// StartTLS runs redis-server speaking only TLS, with a fresh self-signed
// certificate for 127.0.0.1. TLSConfig returns a client config that trusts it.
func StartTLS(t testing.TB, extra ...string) *Server {
	t.Helper()
	s := &Server{t: t, dir: t.TempDir()}
	certFile, keyFile, clientTLS, err := writeCert(s.dir)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	s.tls = clientTLS
	s.args = func(port int) []string {
		args := append(s.baseArgs("--tls-port", port),
			"--port", "0",
			"--tls-cert-file", certFile,
			"--tls-key-file", keyFile,
			"--tls-auth-clients", "no")
		return append(args, extra...)
	}
	s.launch()
	return s
}

func (s *Server) baseArgs(portFlag string, port int) []string {
	return []string{
		portFlag, strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--daemonize", "no",
		"--loglevel", "warning",
	}
}

func (s *Server) launch() {
	s.t.Helper()
	var lastErr error
	// A free port found by binding :0 can be taken by someone else before
	// redis-server binds it; a few attempts make that race harmless.
	for range 5 {
		port, err := freePort()
		if err != nil {
			s.t.Fatalf("redistest: %v", err)
		}
		s.port = port
		if lastErr = s.start(); lastErr == nil {
			s.t.Cleanup(s.Kill)
			return
		}
	}
	s.t.Fatalf("redistest: start redis-server: %v", lastErr)
}

// Addr is host:port of the server.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL is a redis:// (or rediss:// for StartTLS) URL for the server, without
// credentials.
func (s *Server) URL() string {
	if s.tls != nil {
		return "rediss://" + s.Addr()
	}
	return "redis://" + s.Addr()
}

// TLSConfig is a client config trusting a StartTLS server's certificate, or
// nil for a plain server. Each call returns a fresh copy.
func (s *Server) TLSConfig() *tls.Config {
	if s.tls == nil {
		return nil
	}
	return s.tls.Clone()
}

// Kill stops the server at once (SIGKILL) and waits for it to exit. It is
// safe to call on a stopped server.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	_ = s.proc.Kill() // SIGKILL also ends a paused (SIGSTOPped) process
	<-s.exited
	s.proc, s.exited = nil, nil
}

// Pause freezes the server (SIGSTOP): connections open, nothing answers,
// the way a hung or black-holed Redis looks to a client.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume undoes Pause.
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		s.t.Fatalf("redistest: signal %v: server not running", sig)
	}
	if err := s.proc.Signal(sig); err != nil {
		s.t.Fatalf("redistest: signal %v: %v", sig, err)
	}
}

// Restart kills the server if it runs and starts it again on the same port,
// empty (persistence is off).
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	var err error
	// redis-server sets SO_REUSEADDR, so the port is free again at once;
	// a retry covers something else grabbing it meanwhile.
	for range 3 {
		if err = s.start(); err == nil {
			return
		}
	}
	s.t.Fatalf("redistest: restart redis-server: %v", err)
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := exec.Command(Binary, s.args(s.port)...)
	out := &testenv.LogBuffer{} // redis-server's output, for error messages
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", Binary, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	if err := s.waitReady(exited); err != nil {
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("%w (output: %s)", err, strings.TrimSpace(out.String()))
	}
	s.proc, s.exited = cmd.Process, exited
	return nil
}

// waitReady polls the port with PING until the server answers, exits, or
// startTimeout passes.
func (s *Server) waitReady(exited <-chan error) error {
	deadline := time.Now().Add(startTimeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		err := s.ping()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %w", startTimeout, err)
		}
		select {
		case werr := <-exited:
			return fmt.Errorf("redis-server exited: %v", werr)
		case <-tick.C:
		}
	}
}

// ping sends PING and accepts any reply: -NOAUTH from a server with a
// password also means it is up.
func (s *Server) ping() error {
	d := net.Dialer{Timeout: time.Second}
	var conn net.Conn
	var err error
	if s.tls != nil {
		conn, err = tls.DialWithDialer(&d, "tcp", s.Addr(), s.tls)
	} else {
		conn, err = d.Dial("tcp", s.Addr())
	}
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.HasPrefix(line, "-LOADING") || (line[0] != '+' && line[0] != '-') {
		return errors.New("unexpected reply " + strconv.Quote(line))
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
