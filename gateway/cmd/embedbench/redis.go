package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// redisServer is a throwaway redis-server for a cache run's Redis tier:
// loopback only, a free port, persistence off, its files in a temporary
// directory removed when it is killed.
type redisServer struct {
	addr    string
	cmd     *exec.Cmd
	dir     string
	log     *os.File
	done    chan struct{} // closed when the process has exited
	stopped sync.Once
}

// redisStartLimit bounds how long redis-server may take to answer PING;
// it is ready in milliseconds.
const redisStartLimit = 10 * time.Second

// startRedis runs bin (redis-server) and waits until it answers PING. A
// free port found by binding :0 can be taken by another process before
// redis-server binds it: a few attempts make that race harmless.
func startRedis(ctx context.Context, bin, logPath string) (*redisServer, error) {
	var errs []error
	for range 3 {
		r, err := tryRedis(ctx, bin, logPath)
		if err == nil {
			return r, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("start redis-server: %w (log: %s)", errors.Join(errs...), logPath)
}

func tryRedis(ctx context.Context, bin, logPath string) (*redisServer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "embedbench-redis-")
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(logPath)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cmd := exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", dir, "--daemonize", "no", "--loglevel", "warning")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // dies with the harness
	if err := cmd.Start(); err != nil {
		logf.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("run %s: %w", bin, err)
	}
	r := &redisServer{addr: net.JoinHostPort("127.0.0.1", port), cmd: cmd, dir: dir, log: logf, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(r.done)
	}()
	if err := r.waitReady(ctx); err != nil {
		r.kill()
		return nil, err
	}
	return r, nil
}

// URL is the redis:// URL of the server.
func (r *redisServer) URL() string { return "redis://" + r.addr }

func (r *redisServer) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, redisStartLimit)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		err := r.ping(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-r.done:
			return errors.New("redis-server exited before it answered PING")
		case <-ctx.Done():
			return fmt.Errorf("redis-server not ready after %v: %w", redisStartLimit, err)
		case <-tick.C:
		}
	}
}

// ping sends PING and wants +PONG.
func (r *redisServer) ping(ctx context.Context) error {
	d := net.Dialer{Timeout: time.Second}
	conn, err := d.DialContext(ctx, "tcp", r.addr)
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
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// kill stops the server at once (SIGKILL: what a crash looks like to its
// clients), waits for it and removes its files. Safe to call more than
// once, also concurrently.
func (r *redisServer) kill() {
	r.stopped.Do(func() {
		_ = r.cmd.Process.Kill()
		<-r.done
		r.log.Close()
		os.RemoveAll(r.dir)
	})
}
