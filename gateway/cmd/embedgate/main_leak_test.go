package main

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/embedgate/embedgate/gateway/internal/testenv"
)

// Every goroutine the package's tests start must be gone when they end.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m, testenv.FasthttpLeaks()...) }
