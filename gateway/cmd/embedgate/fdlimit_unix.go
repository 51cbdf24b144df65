//go:build unix

package main

import "syscall"

// raiseFileLimit raises the soft limit of open files to the hard one and
// returns both as they then are. Go's runtime already does so at start on
// Linux and macOS (since Go 1.19); this catches the rest, and reads the
// limit that caps the connections.
func raiseFileLimit() (soft, hard uint64, raised bool, err error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, 0, false, err
	}
	if lim.Cur < lim.Max {
		want := lim
		want.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
			return uint64(lim.Cur), uint64(lim.Max), false, err
		}
		return uint64(want.Cur), uint64(want.Max), true, nil
	}
	return uint64(lim.Cur), uint64(lim.Max), false, nil
}
