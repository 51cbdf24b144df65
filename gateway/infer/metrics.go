package infer

import (
	"fmt"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/admit"
	"github.com/prometheus/client_golang/prometheus"
)

// The reasons of embedgate_overload_rejections_total.
const (
	reasonConcurrency = "concurrency"
	reasonBacklog     = "backlog"
)

type metrics struct {
	tokenization, queue, inference prometheus.Histogram
	overloaded                     *prometheus.CounterVec
	backendErrors                  *prometheus.CounterVec

	reg        prometheus.Registerer // nil = nothing registered
	registered []prometheus.Collector
}

// newMetrics builds the pipeline's series and registers them, with
// extra's, on reg (none when reg is nil). gate is the engine's own gate,
// whose series it registers too; nil when the gate is shared (NewGate
// registered them once). A series already registered is an error, not a
// panic: two engines with the same labels on one registry is a wiring
// mistake the caller reports.
//
// The caller labels the series by model (prometheus.WrapRegistererWith),
// so the engines of several models register on one registry.
func newMetrics(reg prometheus.Registerer, gate *admit.Gate, backlog *admit.Backlog, extra []prometheus.Collector) (*metrics, error) {
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
	// Every label value exists from the start, so that a dashboard shows
	// a new model's zeros rather than a gap until its first failure.
	for _, reason := range []string{reasonConcurrency, reasonBacklog} {
		m.overloaded.WithLabelValues(reason)
	}
	// The kinds a batch fails with: the backends' (see their errors),
	// Timeout from a deadline, Internal for an error of no kind.
	for _, kind := range []gateway.Kind{gateway.Timeout, gateway.Unhealthy, gateway.Overloaded, gateway.Backend, gateway.Internal} {
		m.backendErrors.WithLabelValues(kind.String())
	}
	collectors := []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "embedgate_queue_tokens", Help: "Tokens queued for a batch.",
		}, func() float64 { return float64(backlog.Queued()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "embedgate_backend_tokens_per_second", Help: "The backend's measured rate, which admission divides the queued tokens by (0 until a batch finished).",
		}, backlog.Rate),
		m.tokenization, m.queue, m.inference, m.overloaded, m.backendErrors,
	}
	if gate != nil {
		collectors = append(collectors, gateCollectors(gate)...)
	}
	collectors = append(collectors, extra...)
	if err := register(reg, collectors); err != nil {
		return nil, err
	}
	if reg != nil {
		m.reg, m.registered = reg, collectors
	}
	return m, nil
}

// backendCollectors are b's own series, if it has any: Triton replicas
// report theirs per replica (see elasticBackend).
func backendCollectors(b Backend) []prometheus.Collector {
	if c, ok := b.(prometheus.Collector); ok {
		return []prometheus.Collector{c}
	}
	return nil
}

// unregister gives back every series newMetrics registered.
func (m *metrics) unregister() {
	for _, c := range m.registered {
		m.reg.Unregister(c)
	}
	m.registered = nil
}

// gateCollectors are the series of the admission gate, registered once
// per gate: by NewGate for the process's, by the engine for its own.
func gateCollectors(gate *admit.Gate) []prometheus.Collector {
	maxInFlight := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "embedgate_requests_max_in_flight", Help: "Requests admitted at most at once (--max-concurrent-requests).",
	})
	maxInFlight.Set(float64(gate.Capacity()))
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "embedgate_requests_in_flight", Help: "Requests admitted and not yet answered.",
		}, func() float64 { return float64(gate.InFlight()) }),
		maxInFlight,
	}
}

// register registers every one of cs on reg (nothing when reg is nil), or
// none: on a failure it takes back those it registered, so that a failed
// engine leaves nothing behind that would refuse its replacement. Only
// its own: unregistering the collector that collided would remove the
// series already there, which are another's.
func register(reg prometheus.Registerer, cs []prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return fmt.Errorf("register metrics: %w", err)
		}
	}
	return nil
}
