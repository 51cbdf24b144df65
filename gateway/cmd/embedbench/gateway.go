package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat:
// 100 on every Linux architecture Go supports (reading it needs sysconf,
// i.e. cgo).
const clockTicks = 100

// child is one embedgate process. It runs as a separate process so that its
// CPU and memory are its own, not the load generator's.
type child struct {
	cmd      *exec.Cmd
	url      string
	log      *os.File
	closeLog sync.Once
	done     chan struct{} // closed when the process has exited
	err      error         // Wait's result, set before done closes
}

// startGateway runs bin with env (plus the loopback address it picks) and
// waits until /ready answers 200. The environment is built from scratch:
// the gateway reads every setting from env vars, and a stray HOSTNAME, PORT
// or API_KEY in the caller's shell would change what is measured.
func startGateway(ctx context.Context, bin, logPath string, env map[string]string) (*child, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, err
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	full := map[string]string{
		"PATH": "/usr/bin:/bin", "HOSTNAME": "127.0.0.1", "PORT": port,
		// Limits per client IP would throttle a load generator that is one IP.
		"RATE_LIMIT_RPS": "100000000", "RATE_LIMIT_BURST": "100000000",
		"SHUTDOWN_GRACE": "5s",
	}
	for k, v := range env {
		full[k] = v
	}
	cmd := exec.Command(bin)
	for k, v := range full {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	// If the harness dies without running its defers, the kernel still
	// takes the gateway down with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	c := &child{cmd: cmd, url: "http://127.0.0.1:" + port, log: logf, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	if err := c.waitReady(ctx, 90*time.Second); err != nil {
		c.stop()
		return nil, fmt.Errorf("%w (log: %s)", err, logPath)
	}
	return c, nil
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port), nil
}

func (c *child) waitReady(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if status, _, err := httpGet(ctx, c.url+"/ready"); err == nil && status == http.StatusOK {
			return nil
		}
		select {
		case <-c.done:
			return fmt.Errorf("gateway exited before ready: %v", c.err)
		case <-ctx.Done():
			return fmt.Errorf("gateway not ready after %v: %w", limit, ctx.Err())
		case <-tick.C:
		}
	}
}

// stop asks the gateway to drain (SIGTERM) and kills it if it has not
// exited within 10 s. Safe to call more than once, also concurrently.
func (c *child) stop() {
	select {
	case <-c.done:
	default:
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.done
		}
	}
	c.closeLog.Do(func() { _ = c.log.Close() })
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// procStat is a process's CPU time and memory at one moment.
type procStat struct {
	at       time.Time
	cpu      time.Duration // user + system
	rss, hwm int64         // bytes: resident now, and its peak so far
}

// readProc reads /proc/PID/stat and /proc/PID/status.
func readProc(pid string) (procStat, error) {
	st := procStat{at: time.Now()}
	raw, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return st, err
	}
	if st.cpu, err = parseStatCPU(raw); err != nil {
		return st, err
	}
	status, err := os.Open("/proc/" + pid + "/status")
	if err != nil {
		return st, err
	}
	defer status.Close()
	sc := bufio.NewScanner(status)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return st, fmt.Errorf("proc: %s: %w", k, err)
		}
		if k == "VmRSS" {
			st.rss = kb << 10
		} else {
			st.hwm = kb << 10
		}
	}
	return st, sc.Err()
}

// parseStatCPU is the CPU time (utime + stime, fields 14 and 15) in the
// contents of /proc/PID/stat.
func parseStatCPU(raw []byte) (time.Duration, error) {
	// comm, field 2, may hold spaces and parentheses: fields are counted
	// after its last ')'.
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return 0, errors.New("proc: malformed stat (no ')' after the command name)")
	}
	f := strings.Fields(string(raw[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("proc: short stat (%d fields after the command name, want at least 13)", len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("proc: %w", err)
	}
	if utime < 0 || stime < 0 {
		return 0, fmt.Errorf("proc: negative CPU time (utime %d, stime %d)", utime, stime)
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// scrape reads the gateway's /metrics and sums each series over its
// labels: the harness only needs totals such as
// embedgate_batch_padding_ratio_sum.
func scrape(ctx context.Context, baseURL string) (map[string]float64, error) {
	status, body, err := httpGet(ctx, baseURL+"/metrics")
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("/metrics: status %d", status)
	}
	return parseMetrics(body), nil
}

func parseMetrics(body []byte) map[string]float64 {
	out := map[string]float64{}
	for line := range strings.Lines(string(body)) {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		end := strings.IndexAny(line, "{ ")
		sp := strings.LastIndexByte(line, ' ')
		if end <= 0 || sp < end {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		out[line[:end]] += v
	}
	return out
}

func httpGet(ctx context.Context, url string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}
