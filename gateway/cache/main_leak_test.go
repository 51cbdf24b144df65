package cache

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine the package's tests start (the Redis writers, go-redis'
// own) must be gone when they end: Close stops them.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
