package triton

import (
	"github.com/prometheus/client_golang/prometheus"
)

// replicaMetrics are the per-replica series, labelled replica (host:port);
// the engine that registers Replicas labels them by model.
type replicaMetrics struct {
	batches, tokens, errors *prometheus.CounterVec
	inflight, ejected       *prometheus.Desc // made at Collect from the members
}

func newReplicaMetrics() *replicaMetrics {
	return &replicaMetrics{
		inflight: prometheus.NewDesc("embedgate_triton_replica_inflight_tokens",
			"Padded tokens of the batches in flight to the Triton replica.", []string{"replica"}, nil),
		ejected: prometheus.NewDesc("embedgate_triton_replica_ejected",
			"1 while the Triton replica is out of the rotation, waiting for its probe.", []string{"replica"}, nil),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "embedgate_triton_replica_batches_total", Help: "Batches sent to the Triton replica (a retried batch counts on each replica it was sent to).",
		}, []string{"replica"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "embedgate_triton_replica_tokens_total", Help: "Padded tokens of the batches sent to the Triton replica.",
		}, []string{"replica"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "embedgate_triton_replica_errors_total", Help: "Batches the Triton replica failed.",
		}, []string{"replica"}),
	}
}

// add makes a joining replica's series, at zero.
func (m *replicaMetrics) add(addr string) {
	m.batches.WithLabelValues(addr)
	m.tokens.WithLabelValues(addr)
	m.errors.WithLabelValues(addr)
}

// count records one batch sent to addr.
func (m *replicaMetrics) count(addr string, tokens int64, err error) {
	m.batches.WithLabelValues(addr).Inc()
	m.tokens.WithLabelValues(addr).Add(float64(tokens))
	if err != nil {
		m.errors.WithLabelValues(addr).Inc()
	}
}

// remove drops a replica's series when it leaves.
func (m *replicaMetrics) remove(addr string) {
	m.batches.DeleteLabelValues(addr)
	m.tokens.DeleteLabelValues(addr)
	m.errors.DeleteLabelValues(addr)
}

// Describe is prometheus.Collector's: the per-replica series.
func (r *Replicas) Describe(ch chan<- *prometheus.Desc) {
	r.m.batches.Describe(ch)
	r.m.tokens.Describe(ch)
	r.m.errors.Describe(ch)
	ch <- r.m.inflight
	ch <- r.m.ejected
}

// Collect is prometheus.Collector's: the counters, and the members'
// tokens in flight and ejection as they are now.
func (r *Replicas) Collect(ch chan<- prometheus.Metric) {
	r.m.batches.Collect(ch)
	r.m.tokens.Collect(ch)
	r.m.errors.Collect(ch)
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rep := range r.set {
		ejected := 0.0
		if rep.ejected {
			ejected = 1
		}
		ch <- prometheus.MustNewConstMetric(r.m.inflight, prometheus.GaugeValue, float64(rep.tokens), rep.addr)
		ch <- prometheus.MustNewConstMetric(r.m.ejected, prometheus.GaugeValue, ejected, rep.addr)
	}
}
