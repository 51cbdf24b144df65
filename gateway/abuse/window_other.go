//go:build !unix

package abuse

import "syscall"

// smallReceiveBuffer does nothing here: the never-read connection then
// needs more requests to fill the buffers in between.
func smallReceiveBuffer(_, _ string, _ syscall.RawConn) error { return nil }
