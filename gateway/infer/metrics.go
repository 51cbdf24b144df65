package infer

import (
	"github.com/embedgate/embedgate/gateway/admit"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

type metrics struct {
	tokenization, queue, inference prometheus.Histogram
	overloaded                     *prometheus.CounterVec
	backendErrors                  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, gate *admit.Gate, backlog *admit.Backlog) *metrics {
	f := promauto.With(reg)
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "embedgate_requests_in_flight", Help: "Requests admitted and not yet answered.",
	}, func() float64 { return float64(gate.InFlight()) })
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "embedgate_queue_tokens", Help: "Tokens queued for a batch.",
	}, func() float64 { return float64(backlog.Queued()) })
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "embedgate_backend_tokens_per_second", Help: "The backend's measured rate, which admission divides the queued tokens by (0 until a batch finished).",
	}, backlog.Rate)
	f.NewGauge(prometheus.GaugeOpts{
		Name: "embedgate_requests_max_in_flight", Help: "Requests admitted at most at once (--max-concurrent-requests).",
	}).Set(float64(gate.Capacity()))
	buckets := prometheus.ExponentialBuckets(0.0001, 2.5, 14) // 100µs .. ~15s
	m := &metrics{
		tokenization: f.NewHistogram(prometheus.HistogramOpts{
			Name: "embedgate_tokenization_duration_seconds", Help: "Time to tokenize a request's inputs.", Buckets: buckets,
		}),
		queue: f.NewHistogram(prometheus.HistogramOpts{
			Name: "embedgate_queue_duration_seconds", Help: "Time an input waited for its batch.", Buckets: buckets,
		}),
		inference: f.NewHistogram(prometheus.HistogramOpts{
			Name: "embedgate_inference_duration_seconds", Help: "Time of one backend batch call.", Buckets: buckets,
		}),
		overloaded: f.NewCounterVec(prometheus.CounterOpts{
			Name: "embedgate_overload_rejections_total",
			Help: "Requests answered 429 because the gateway was full: reason concurrency (--max-concurrent-requests) or backlog (the queued work would outlast the request's deadline).",
		}, []string{"reason"}),
		backendErrors: f.NewCounterVec(prometheus.CounterOpts{
			Name: "embedgate_backend_errors_total", Help: "Failed backend batches by error kind.",
		}, []string{"kind"}),
	}
	return m
}
