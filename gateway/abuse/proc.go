package abuse

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

// What "back to baseline" allows once the run has settled.
const (
	fdSlack  = 10
	rssSlack = 100 << 20
)

// usage is one sample of a process's resources.
type usage struct {
	rss int64 // bytes
	fds int
}

// readUsage reads pid's VmRSS and counts its open file descriptors
// (Linux's /proc).
func readUsage(pid int) (usage, error) {
	dir := "/proc/" + strconv.Itoa(pid)
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return usage{}, fmt.Errorf("abuse: process %d: %w", pid, err)
	}
	var u usage
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		if kb, ok := bytes.CutPrefix(sc.Bytes(), []byte("VmRSS:")); ok {
			n, err := strconv.ParseInt(string(bytes.TrimSuffix(bytes.TrimSpace(kb), []byte(" kB"))), 10, 64)
			if err != nil {
				return usage{}, fmt.Errorf("abuse: process %d: VmRSS %q: %w", pid, kb, err)
			}
			u.rss = n << 10
		}
	}
	fds, err := os.ReadDir(dir + "/fd")
	if err != nil {
		return usage{}, fmt.Errorf("abuse: process %d: %w", pid, err)
	}
	u.fds = len(fds)
	return u, nil
}

// watcher samples a process every 100 ms from its baseline on, keeping
// the peak.
type watcher struct {
	pid      int
	baseline usage
	mu       sync.Mutex
	peak     usage
	// rowStart and rowPeak are the RSS when the current row started and
	// its peak since.
	rowStart, rowPeak int64
	done              chan struct{}
	stopped           chan struct{}
	once              sync.Once
}

func startWatcher(pid int) (*watcher, error) {
	base, err := readUsage(pid)
	if err != nil {
		return nil, err
	}
	w := &watcher{pid: pid, baseline: base, peak: base, done: make(chan struct{}), stopped: make(chan struct{})}
	go w.loop()
	return w, nil
}

func (w *watcher) loop() {
	defer close(w.stopped)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-w.done:
			return
		case <-t.C:
			w.sample()
		}
	}
}

func (w *watcher) sample() (usage, error) {
	u, err := readUsage(w.pid)
	if err != nil {
		return u, err
	}
	w.mu.Lock()
	w.peak.rss, w.peak.fds = max(w.peak.rss, u.rss), max(w.peak.fds, u.fds)
	w.rowPeak = max(w.rowPeak, u.rss)
	w.mu.Unlock()
	return u, nil
}

// startRow starts watching a row's own RSS peak.
func (w *watcher) startRow() {
	u, _ := readUsage(w.pid)
	w.mu.Lock()
	w.rowStart, w.rowPeak = u.rss, u.rss
	w.mu.Unlock()
}

// rowGrowth is how far RSS rose above where it was when the row started.
func (w *watcher) rowGrowth() int64 {
	_, _ = w.sample()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.rowPeak - w.rowStart
}

func (w *watcher) stop() {
	w.once.Do(func() { close(w.done) })
	<-w.stopped
}

// settled says whether u is back to the baseline, within the slack.
func (w *watcher) settled(u usage) bool {
	return u.fds <= w.baseline.fds+fdSlack && u.rss <= w.baseline.rss+rssSlack
}

// settle waits up to within for the process to return to its baseline
// and reports baseline, peak and after.
func (w *watcher) settle(within time.Duration) Result {
	start := time.Now()
	res := Result{Name: "resources", Status: Pass}
	var after usage
	var err error
	for {
		if after, err = w.sample(); err != nil {
			res.Status, res.Saw = Fail, fmt.Sprintf("the gateway is gone: %v", err)
			break
		}
		if w.settled(after) || time.Since(start) >= within {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	w.stop()
	res.Took = time.Since(start)
	if res.Status == Fail {
		return res
	}
	w.mu.Lock()
	peak := w.peak
	w.mu.Unlock()
	mb := func(b int64) string { return fmt.Sprintf("%d MB", b>>20) }
	res.Saw = fmt.Sprintf("RSS %s → peak %s → %s; fds %d → peak %d → %d", mb(w.baseline.rss), mb(peak.rss), mb(after.rss),
		w.baseline.fds, peak.fds, after.fds)
	if !w.settled(after) {
		res.Status = Fail
		res.Saw += fmt.Sprintf(" (not back within %s: allowed fds ≤ %d, RSS ≤ %s)", within, w.baseline.fds+fdSlack, mb(w.baseline.rss+rssSlack))
	}
	return res
}
