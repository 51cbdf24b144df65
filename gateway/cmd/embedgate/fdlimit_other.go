//go:build !unix

package main

import "errors"

// raiseFileLimit reports that the limit of open files is unknown here.
func raiseFileLimit() (soft, hard uint64, raised bool, err error) {
	return 0, 0, false, errors.New("no RLIMIT_NOFILE on this system")
}
