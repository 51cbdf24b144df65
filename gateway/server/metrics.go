package server

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the HTTP-level series; the engine registers its pipeline
// series (tokenization, queue, inference, batches) itself.
type metrics struct {
	requests *prometheus.CounterVec   // embedgate_http_requests_total{route,status}
	duration *prometheus.HistogramVec // embedgate_request_duration_seconds{route}
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "embedgate_http_requests_total",
			Help: "HTTP requests by route and status code.",
		}, []string{"route", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "embedgate_request_duration_seconds",
			Help: "Whole-request latency in seconds, by route.",
			// 0.5 ms to ~33 s: covers the gateway's own overhead up to
			// the 30 s default request timeout.
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 17),
		}, []string{"route"}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("server: register metrics: %w", err)
		}
	}
	return m, nil
}
