package cache

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/embedgate/embedgate/gateway/redisconn"
)

const (
	// redisKeyPrefix names the cache's keys in a Redis that the rate
	// limiter shares ("embedgate:rate:...").
	redisKeyPrefix = "embedgate:cache:"
	// writeQueue bounds the vectors waiting for Redis (a few MB at the
	// usual sizes); beyond it Put drops writes rather than wait or grow.
	writeQueue = 2048
	// writeBatch is the most vectors one pipeline writes.
	writeBatch = 128
	// minWriteTimeout bounds a write pipeline when Timeout is shorter:
	// writes are off the request path, and a batch of large vectors takes
	// longer than a lookup.
	minWriteTimeout = 250 * time.Millisecond
	// drainTimeout bounds how long Close waits for queued writes.
	drainTimeout = time.Second
	// breakerFailures is how many lookups or writes in a row must fail
	// before the tier counts Redis as down: one slow answer is a miss,
	// not a half-second without the shared tier.
	breakerFailures = 3
)

// Reasons a write is dropped, the label of writes_dropped_total.
const (
	dropFull    = "queue_full" // the queue is full: Redis is slower than the traffic
	dropDown    = "redis_down" // the breaker is open
	dropFailed  = "failed"     // the pipeline failed
	dropClosing = "closing"    // Put after Close, or Close's drain ran out of time
)

// redisTier is the shared tier: one MGET per lookup, writes batched in the
// background by one goroutine.
type redisTier struct {
	client       *redis.Client
	outage       *redisconn.Outage
	ttl          time.Duration
	timeout      time.Duration
	writeTimeout time.Duration
	m            redisMetrics

	queue   chan write    // bounded; Put never waits on it
	closing chan struct{} // closed by Close: drain, then stop
	done    chan struct{} // closed when the writer has stopped
	ctx     context.Context
	cancel  context.CancelFunc // fails the writer's calls
	started sync.Once
}

// write is one SET, or a DEL when vec is nil.
type write struct {
	key Key
	vec []float32
}

type redisMetrics struct {
	lookup  prometheus.Histogram
	errors  prometheus.Counter
	dropped *prometheus.CounterVec
}

func newRedisTier(opts Options, logger *slog.Logger) (*redisTier, error) {
	client, err := redisconn.NewClient(opts.RedisURL, opts.Timeout, nil)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &redisTier{
		ctx:          ctx,
		cancel:       cancel,
		client:       client,
		ttl:          opts.TTL,
		timeout:      opts.Timeout,
		writeTimeout: max(opts.Timeout, minWriteTimeout),
		queue:        make(chan write, writeQueue),
		closing:      make(chan struct{}),
		done:         make(chan struct{}),
		outage: redisconn.NewOutage(redisconn.OutageOptions{
			Addr:          client.Options().Addr,
			ProbeInterval: opts.ProbeInterval,
			Failures:      breakerFailures,
			DownMessage:   "cache redis unreachable, its lookups are misses and writes are dropped",
			UpMessage:     "cache redis reachable again",
			Up: prometheus.GaugeOpts{
				Name: "embedgate_cache_redis_up",
				Help: "1 while the embedding cache's Redis answers (breaker closed), 0 while it is skipped.",
			},
			Changes: prometheus.CounterOpts{
				Name: "embedgate_cache_redis_state_changes_total",
				Help: "Times the embedding cache's Redis went down or came back, by new state.",
			},
		}, logger),
		m: redisMetrics{
			lookup: prometheus.NewHistogram(prometheus.HistogramOpts{
				Name:    "embedgate_cache_redis_lookup_duration_seconds",
				Help:    "Time of one embedding cache lookup in Redis (one MGET), errors and timeouts included.",
				Buckets: []float64{.00025, .0005, .001, .002, .005, .01, .02, .05, .1, .25},
			}),
			errors: prometheus.NewCounter(prometheus.CounterOpts{
				Name: "embedgate_cache_redis_errors_total",
				Help: "Embedding cache calls to Redis (lookups, write batches) that failed or timed out.",
			}),
			dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "embedgate_cache_writes_dropped_total",
				Help: "Vectors not written to the cache's Redis, by reason (queue_full, redis_down, failed, closing).",
			}, []string{"reason"}),
		},
	}
	for _, reason := range []string{dropFull, dropDown, dropFailed, dropClosing} {
		r.m.dropped.WithLabelValues(reason)
	}
	return r, nil
}

func (r *redisTier) collectors() []prometheus.Collector {
	return append(r.outage.Collectors(), r.m.lookup, r.m.errors, r.m.dropped)
}

// start runs the writer, once. It is apart from newRedisTier so that
// tests can fill the queue before anything drains it.
func (r *redisTier) start() {
	r.started.Do(func() { go r.writeLoop(r.ctx) })
}

func redisKey(k Key) string { return redisKeyPrefix + hex.EncodeToString(k[:]) }

// lookup fetches keys with one MGET bounded by the timeout. vecs[i] is nil
// for a miss; costs[i] is what a hit costs the memory tier. An error, a
// timeout or an open breaker make every key a miss; a value that is not
// dim fp32s is a miss and is deleted.
func (r *redisTier) lookup(ctx context.Context, dim int, keys []Key) (vecs [][]float32, costs []int64, found int) {
	select {
	case <-r.closing: // the client is closed or closing
		return nil, nil, 0
	default:
	}
	if r.outage.Skip() {
		return nil, nil, 0
	}
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = redisKey(k)
	}
	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	start := time.Now()
	vals, err := r.client.MGet(cctx, names...).Result()
	r.m.lookup.Observe(time.Since(start).Seconds())
	cancel()
	if err != nil {
		// The caller's own deadline, or a Close racing this lookup, say
		// nothing about Redis.
		if ctx.Err() == nil && !errors.Is(err, redis.ErrClosed) {
			r.m.errors.Inc()
			r.outage.MarkDown(err)
		}
		return nil, nil, 0
	}
	r.outage.MarkUp(start)
	vecs, costs = make([][]float32, len(keys)), make([]int64, len(keys))
	for i, v := range vals {
		s, ok := v.(string) // nil: no such key
		if !ok {
			continue
		}
		if len(s) != 4*dim {
			r.enqueue([]write{{key: keys[i]}})
			continue
		}
		vec, cost := alloc(dim)
		for j := range vec {
			b := s[4*j : 4*j+4]
			vec[j] = math.Float32frombits(uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24)
		}
		vecs[i], costs[i] = vec, cost
		found++
	}
	return vecs, costs, found
}

// enqueue queues writes without waiting: while Redis is down, after Close,
// or once the queue is full, the rest are dropped and counted.
func (r *redisTier) enqueue(ws []write) {
	select {
	case <-r.closing:
		r.m.dropped.WithLabelValues(dropClosing).Add(float64(len(ws)))
		return
	default:
	}
	if r.outage.Down() {
		r.m.dropped.WithLabelValues(dropDown).Add(float64(len(ws)))
		return
	}
	for i, w := range ws {
		select {
		case r.queue <- w:
		default:
			r.m.dropped.WithLabelValues(dropFull).Add(float64(len(ws) - i))
			return
		}
	}
}

// writeLoop writes what is queued, in batches, until Close; then it
// drains the queue and stops.
func (r *redisTier) writeLoop(ctx context.Context) {
	defer close(r.done)
	batch := make([]write, 0, writeBatch)
	for {
		select {
		case w := <-r.queue:
			batch = r.fill(append(batch[:0], w))
			r.flush(ctx, batch)
		case <-r.closing:
			for {
				if batch = r.fill(batch[:0]); len(batch) == 0 {
					return
				}
				r.flush(ctx, batch)
			}
		}
	}
}

// fill adds what is queued to batch, up to its capacity, without waiting.
func (r *redisTier) fill(batch []write) []write {
	for len(batch) < cap(batch) {
		select {
		case w := <-r.queue:
			batch = append(batch, w)
		default:
			return batch
		}
	}
	return batch
}

// flush writes batch in one pipeline: SET key value EX ttl per vector,
// DEL per wrong-length value.
func (r *redisTier) flush(ctx context.Context, batch []write) {
	if r.outage.Skip() {
		r.m.dropped.WithLabelValues(dropDown).Add(float64(len(batch)))
		return
	}
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, r.writeTimeout)
	defer cancel()
	pipe := r.client.Pipeline()
	for _, w := range batch {
		if w.vec == nil {
			pipe.Del(cctx, redisKey(w.key))
			continue
		}
		buf := make([]byte, 4*len(w.vec))
		for j, x := range w.vec {
			binary.LittleEndian.PutUint32(buf[4*j:], math.Float32bits(x))
		}
		pipe.Set(cctx, redisKey(w.key), buf, r.ttl)
	}
	_, err := pipe.Exec(cctx)
	var reply redis.Error
	switch {
	case err == nil:
		r.outage.MarkUp(start)
	case ctx.Err() != nil: // Close ran out of time: not Redis' fault
		r.m.dropped.WithLabelValues(dropClosing).Add(float64(len(batch)))
	case errors.As(err, &reply):
		// Redis answered, with a refusal (out of memory under noeviction,
		// say): lookups still work, so the breaker stays closed.
		r.m.errors.Inc()
		r.m.dropped.WithLabelValues(dropFailed).Add(float64(len(batch)))
	default:
		r.m.errors.Inc()
		r.m.dropped.WithLabelValues(dropFailed).Add(float64(len(batch)))
		r.outage.MarkDown(err)
	}
}

// close drains the queued writes, for at most drainTimeout, and closes
// the client.
func (r *redisTier) close() error {
	r.start() // a writer that never ran still drains
	close(r.closing)
	timer := time.NewTimer(drainTimeout)
	defer timer.Stop()
	select {
	case <-r.done:
	case <-timer.C:
		r.cancel() // fails the write in flight and the rest at once
		<-r.done
	}
	r.cancel()
	if err := r.client.Close(); err != nil {
		return fmt.Errorf("cache: close redis: %w", err)
	}
	return nil
}
