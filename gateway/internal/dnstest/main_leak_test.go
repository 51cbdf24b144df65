package dnstest

import (
	"testing"

	"go.uber.org/goleak"
)

// The serve loop must be gone when its test ends.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
