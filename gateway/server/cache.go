package server

import (
	"bytes"

	"github.com/gofiber/fiber/v2"

	"github.com/embedgate/embedgate/gateway"
)

// headerCache says how the embedding cache served a request: "hit" (every
// input), "partial" or "miss". It is absent when the cache is off or the
// request said no-store.
const headerCache = "x-embedgate-cache"

// cacheRequest sets req's cache fields: its scope (the API key's name when
// entries are per key, else shared) and what its Cache-Control asks.
func (s *Server) cacheRequest(c *fiber.Ctx, rec *record, req *gateway.EmbedRequest) {
	if s.opts.CachePerKey && rec.key != nil {
		req.CacheScope = rec.key.Name
	}
	noCache, noStore := cacheDirectives(c.Request().Header.PeekAll(fiber.HeaderCacheControl))
	// no-store: this input must not be kept, and so is not looked up either.
	req.NoCacheLookup = noCache || noStore
	req.NoCacheStore = noStore
}

// cacheDirectives reads the request directives the cache obeys from every
// Cache-Control header: comma-separated, case-insensitive, arguments
// ignored (RFC 9111 section 5.2.1). no-cache skips the lookup (the fresh
// vector is stored); no-store skips both.
func cacheDirectives(values [][]byte) (noCache, noStore bool) {
	for _, v := range values {
		for _, d := range bytes.Split(v, []byte{','}) {
			name, _, _ := bytes.Cut(bytes.TrimSpace(d), []byte{'='})
			switch {
			case bytes.EqualFold(name, []byte("no-cache")):
				noCache = true
			case bytes.EqualFold(name, []byte("no-store")):
				noStore = true
			}
		}
	}
	return noCache, noStore
}

// cacheStatus is res's x-embedgate-cache value, "" when none is sent.
func (s *Server) cacheStatus(req *gateway.EmbedRequest, res *gateway.EmbedResult) string {
	switch {
	case !s.opts.Cache || req.NoCacheStore:
		return ""
	case res.Cached > 0 && res.Cached >= len(res.Embeddings):
		return "hit"
	case res.Cached > 0:
		return "partial"
	}
	return "miss"
}
