package infer

import (
	"github.com/embedgate/embedgate/gateway/admit"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

type metrics struct {
	tokenization, queue, inference prometheus.Histogram
	overloaded                     prometheus.Counter
	backendErrors                  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, gate *admit.Gate) *metrics {
	f := promauto.With(reg)
	f.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "embedgate_requests_in_flight", Help: "Requests admitted and not yet answered.",
	}, func() float64 { return float64(gate.InFlight()) })
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
		overloaded: f.NewCounter(prometheus.CounterOpts{
			Name: "embedgate_overload_rejections_total", Help: "Requests answered 429 because the gateway was full.",
		}),
		backendErrors: f.NewCounterVec(prometheus.CounterOpts{
			Name: "embedgate_backend_errors_total", Help: "Failed backend batches by error kind.",
		}, []string{"kind"}),
	}
	return m
}
