package infer

import (
	"fmt"

	"github.com/embedgate/embedgate/gateway/admit"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	tokenization, queue, inference prometheus.Histogram
	overloaded                     *prometheus.CounterVec
	backendErrors                  *prometheus.CounterVec
}

// newMetrics builds the pipeline's series and registers them on reg (none
// when reg is nil). A series already registered is an error, not a panic:
// two engines on one registry is a wiring mistake the caller reports.
func newMetrics(reg prometheus.Registerer, gate *admit.Gate, backlog *admit.Backlog) (*metrics, error) {
	buckets := prometheus.ExponentialBuckets(0.0001, 2.5, 14) // 100µs .. ~15s
	m := &metrics{
		tokenization: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "embedgate_tokenization_duration_seconds", Help: "Time to tokenize a request's inputs.", Buckets: buckets,
		}),
		queue: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "embedgate_queue_duration_seconds", Help: "Time an input waited for its batch.", Buckets: buckets,
		}),
		inference: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "embedgate_inference_duration_seconds", Help: "Time of one backend batch call.", Buckets: buckets,
		}),
		overloaded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "embedgate_overload_rejections_total",
			Help: "Requests answered 429 because the gateway was full: reason concurrency (--max-concurrent-requests) or backlog (the queued work would outlast the request's deadline).",
		}, []string{"reason"}),
		backendErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "embedgate_backend_errors_total", Help: "Failed backend batches by error kind.",
		}, []string{"kind"}),
	}
	maxInFlight := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "embedgate_requests_max_in_flight", Help: "Requests admitted at most at once (--max-concurrent-requests).",
	})
	maxInFlight.Set(float64(gate.Capacity()))
	collectors := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "embedgate_requests_in_flight", Help: "Requests admitted and not yet answered.",
		}, func() float64 { return float64(gate.InFlight()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "embedgate_queue_tokens", Help: "Tokens queued for a batch.",
		}, func() float64 { return float64(backlog.Queued()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "embedgate_backend_tokens_per_second", Help: "The backend's measured rate, which admission divides the queued tokens by (0 until a batch finished).",
		}, backlog.Rate),
		maxInFlight,
		m.tokenization, m.queue, m.inference, m.overloaded, m.backendErrors,
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return m, nil
}
