//go:build unix

package abuse

import "syscall"

// smallReceiveBuffer sets, before connect, a small SO_RCVBUF (the window
// this side offers is small from the first segment) and a small
// TCP_MAXSEG (the MSS it announces, which sizes the peer's send buffer:
// on loopback, with its 64 KB MSS, the peer's buffer starts at about a
// megabyte). The peer's writes then stall after some tens of KB.
func smallReceiveBuffer(_, _ string, c syscall.RawConn) error {
	var err error
	if cerr := c.Control(func(fd uintptr) {
		err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<10)
		if err == nil {
			err = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_MAXSEG, 536)
		}
	}); cerr != nil {
		return cerr
	}
	return err
}
