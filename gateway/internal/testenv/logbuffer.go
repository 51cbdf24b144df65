package testenv

import (
	"bytes"
	"sync"
)

// LogBuffer is a log sink that goroutines may write to while a test reads
// it. It keeps the last 1 MiB or so: enough to diagnose a failure, bounded
// so that long runs (the soak) measure the code under test, not the sink.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 1<<20 {
		rest := append([]byte(nil), l.b.Bytes()[l.b.Len()/2:]...)
		l.b.Reset()
		l.b.Write(rest)
	}
	return l.b.Write(p)
}

// String is what the buffer holds now.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Bytes is a copy of what the buffer holds now.
func (l *LogBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}
