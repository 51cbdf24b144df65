package testenv

import "go.uber.org/goleak"

// FasthttpLeaks are the goroutines fasthttp owns that goleak must ignore:
// the server-date ticker lives for the whole process, and the worker-pool
// cleaner sleeps out its idle period (10s) after Shutdown before it
// notices the stop. Every other goroutine a test starts must be gone.
func FasthttpLeaks() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
	}
}
