package hub

import (
	"io"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// newBar returns a byte progress bar on w when w is a terminal, else nil:
// logs and pipes get no control characters.
func newBar(w io.Writer, size int64, name string) *progressbar.ProgressBar {
	f, ok := w.(interface{ Fd() uintptr })
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	if size <= 0 {
		size = -1
	}
	return progressbar.NewOptions64(size,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(name),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond), // redraws cost more than they tell
		progressbar.OptionOnCompletion(func() { io.WriteString(w, "\n") }),
	)
}
