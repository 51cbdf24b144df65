package main

import (
	"testing"

	"go.uber.org/goleak"
)

// Every goroutine the package's tests start must be gone when they end.
// fasthttp owns the two exceptions: the server-date ticker lives for the
// whole process, and the worker-pool cleaner sleeps out its idle period
// (10s) after Shutdown before it notices the stop.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"))
}
