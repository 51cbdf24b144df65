package infer

import (
	"context"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/cache"
)

// Cache keeps pooled vectors per input (package cache provides the real
// one). Embed looks a request's inputs up once they are tokenized, so
// only the misses queue for batches, and stores the vectors the backend
// computed for the misses.
type Cache interface {
	// Get looks keys up; vecs[i] nil is a miss. The vectors are the
	// cache's own: the engine never changes them.
	Get(ctx context.Context, model string, dim int, keys []cache.Key) ([][]float32, cache.Stats)
	// Put stores vecs under keys; it must not block the request.
	Put(model string, keys []cache.Key, vecs [][]float32)
}

// cacheIdentity is what, besides the scope and the tokens, decides an
// input's vector: the caller's identity of the model (name, files,
// backend), the version the backend serves and the pooling, since the
// value stored is the pooled vector.
func cacheIdentity(opts Options, spec gateway.ModelSpec) string {
	return opts.Identity + "|" + spec.Version + "|" + opts.Pooling.String()
}

// found is what the cache holds of a request's inputs.
type found struct {
	keys []cache.Key // one per input; nil when the request keeps out of the cache (or there is none)
	vecs [][]float32 // the cached vectors by input index, nil for a miss; nil when not looked up
	hits int
}

// hit says whether input i was found in the cache.
func (f found) hit(i int) bool { return f.vecs != nil && f.vecs[i] != nil }

// lookup keys req's inputs on exactly what the model sees (ids and type
// ids after the prompt and truncation) and looks them up, unless the
// request asks not to (NoCacheLookup still keys, to store).
func (e *Engine) lookup(ctx context.Context, req *gateway.EmbedRequest, encs []encoded) found {
	if e.opts.Cache == nil || req.NoCacheStore {
		return found{}
	}
	f := found{keys: make([]cache.Key, len(encs))}
	for i, enc := range encs {
		f.keys[i] = cache.NewKey(e.cacheID, req.CacheScope, enc.ids, enc.typeIDs)
	}
	if req.NoCacheLookup {
		return f
	}
	vecs, _ := e.opts.Cache.Get(ctx, e.opts.Name, e.spec.Hidden, f.keys)
	if len(vecs) != len(encs) {
		return f // not an answer to what was asked: all misses
	}
	for i, v := range vecs {
		if v != nil && len(v) != e.spec.Hidden {
			vecs[i] = nil // the cache drops such values itself; a miss whatever it does
		}
		if vecs[i] != nil {
			f.hits++
		}
	}
	f.vecs = vecs
	return f
}

// store hands the cache the pooled vectors the backend computed for
// f's misses, before Shape: one entry serves every normalize and
// dimensions. They are handed over as they are, since nothing changes
// them after (Shape copies).
func (e *Engine) store(f found, p *pending) {
	if f.keys == nil || f.hits == len(f.keys) {
		return
	}
	keys := make([]cache.Key, 0, len(f.keys)-f.hits)
	vecs := make([][]float32, 0, len(f.keys)-f.hits)
	for i, k := range f.keys {
		if !f.hit(i) {
			keys = append(keys, k)
			vecs = append(vecs, p.vecs[i])
		}
	}
	e.opts.Cache.Put(e.opts.Name, keys, vecs)
}
