package cache

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	reg        prometheus.Registerer // nil: nothing registered
	registered []prometheus.Collector

	hits   *prometheus.CounterVec // tier, model
	misses *prometheus.CounterVec // model
}

// newMetrics makes the cache's series and registers them with extra (the
// Redis tier's).
func newMetrics(reg prometheus.Registerer, mem *memory, extra []prometheus.Collector) (*metrics, error) {
	m := &metrics{
		reg: reg,
		hits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "embedgate_cache_hits_total",
			Help: "Inputs found in the embedding cache, by tier (memory, redis) and model.",
		}, []string{"tier", "model"}),
		misses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "embedgate_cache_misses_total",
			Help: "Inputs looked up and not found in any tier of the embedding cache, by model.",
		}, []string{"model"}),
	}
	size := func(bytes bool) func() float64 {
		return func() float64 {
			if mem == nil {
				return 0
			}
			b, n := mem.size()
			if bytes {
				return float64(b)
			}
			return float64(n)
		}
	}
	cs := []prometheus.Collector{
		m.hits, m.misses,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "embedgate_cache_memory_bytes",
			Help: "Bytes the memory tier of the embedding cache holds, as it counts them (vectors and bookkeeping).",
		}, size(true)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "embedgate_cache_memory_entries",
			Help: "Vectors the memory tier of the embedding cache holds.",
		}, size(false)),
	}
	cs = append(cs, extra...)
	if err := m.register(cs); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers cs on m.reg, all or none.
func (m *metrics) register(cs []prometheus.Collector) error {
	if m.reg == nil {
		return nil
	}
	for i, c := range cs {
		if err := m.reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				m.reg.Unregister(done)
			}
			return fmt.Errorf("cache: register metrics: %w", err)
		}
	}
	m.registered = append(m.registered, cs...)
	return nil
}

// unregister gives back every series registered, so a new cache may
// register them again.
func (m *metrics) unregister() {
	for _, c := range m.registered {
		m.reg.Unregister(c)
	}
	m.registered = nil
}

func (m *metrics) count(model string, st Stats) {
	if st.Memory > 0 {
		m.hits.WithLabelValues("memory", model).Add(float64(st.Memory))
	}
	if st.Redis > 0 {
		m.hits.WithLabelValues("redis", model).Add(float64(st.Redis))
	}
	if st.Misses > 0 {
		m.misses.WithLabelValues(model).Add(float64(st.Misses))
	}
}
