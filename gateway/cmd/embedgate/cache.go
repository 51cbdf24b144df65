package main

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/embedgate/embedgate/gateway/cache"
	"github.com/embedgate/embedgate/gateway/catalog"
	"github.com/embedgate/embedgate/gateway/config"
	"github.com/embedgate/embedgate/gateway/infer"
	"github.com/embedgate/embedgate/gateway/redisconn"
)

// openCache opens the embedding cache the flags describe, which every
// model's engine shares (each keys its entries with its own identity),
// and returns it with its Close, to run once the fleet is closed: it
// drains the writes the engines queued. The cache is nil when off: an
// infer.Cache holding a nil *cache.Cache would not be.
func openCache(cfg *config.Config, logger *slog.Logger, reg prometheus.Registerer) (infer.Cache, func(), error) {
	if !cfg.Cache {
		return nil, func() {}, nil
	}
	if !cfg.CacheOn() {
		logger.Warn("no embedding cache: --cache-memory-mb is 0 and there is no Redis (--cache-redis-url, --redis-url, --cache-redis)")
		return nil, func() {}, nil
	}
	redisURL := cfg.CacheRedisAddr()
	if redisURL != "" {
		redisconn.LogThrough(logger) // go-redis has one logger per process; the limiter sets the same
	}
	c, err := cache.New(cache.Options{
		MemoryBytes: int64(cfg.CacheMemoryMB) << 20,
		RedisURL:    redisURL,
		TTL:         cfg.CacheTTL,
		Timeout:     cfg.CacheTimeout,
	}, logger, reg)
	if err != nil {
		return nil, nil, fmt.Errorf("cache: %w", err)
	}
	// Never the URL: it may hold a password.
	logger.Info("embedding cache on", "memory_mb", cfg.CacheMemoryMB, "redis", redisURL != "", "scope", cfg.CacheScope,
		"ttl", cfg.CacheTTL, "timeout", cfg.CacheTimeout)
	return c, func() {
		if err := c.Close(); err != nil {
			logger.Warn("embedding cache not closed cleanly", "err", err)
		}
	}, nil
}

// cacheIdentity is e's identity in the cache's keys; "" without a cache.
func (p *pipelines) cacheIdentity(e catalog.Entry, model *openedModel) (string, error) {
	if p.cache == nil {
		return "", nil
	}
	weights := ""
	if e.Backend == "onnx" {
		var err error
		if weights, err = model.onnxPath(e, p.cfg.DType); err != nil {
			return "", err
		}
	}
	return cacheIdentity(e, model.dir, weights)
}

// cacheIdentity names what decides e's vectors, for the cache's keys:
// "<name>|<files>|<backend>". files is the hub commit of a snapshot, else a
// digest of the local files (filesDigest); backend is "onnx:" and the ONNX
// file within the model's directory (each dtype is another file), or
// "triton:" and the model's name there. infer adds the backend's model
// version and the pooling. weights is the ONNX file's path; "" for Triton,
// whose weights the gateway never sees (the version stands for them).
func cacheIdentity(e catalog.Entry, dir, weights string) (string, error) {
	files, ok := snapshotCommit(dir)
	if !ok {
		var err error
		if files, err = filesDigest(dir, weights); err != nil {
			return "", err
		}
	}
	backend := "triton:" + e.TritonModel
	if e.Backend == "onnx" {
		rel, err := filepath.Rel(dir, weights)
		if err != nil {
			rel = weights
		}
		backend = "onnx:" + filepath.ToSlash(rel)
	}
	return e.Name + "|" + files + "|" + backend, nil
}

// snapshotCommit is the hub commit of dir when dir is a snapshot of the
// hub cache, which keeps each under snapshots/<commit> and never changes
// its files.
func snapshotCommit(dir string) (string, bool) {
	if filepath.Base(filepath.Dir(filepath.Clean(dir))) != "snapshots" {
		return "", false
	}
	return filepath.Base(dir), true
}

// filesDigest is a sha256 of a local model's tokenizer.json and
// config.json, and of the weights file's size and modification time (when
// weights is not ""): weights run to gigabytes, too many to read at every
// start, and a new export rewrites the file. Any change to what the model
// sees or computes changes the digest, so the cache never serves the
// vectors of an older model.
func filesDigest(dir, weights string) (string, error) {
	h := sha256.New()
	for _, name := range []string{"tokenizer.json", "config.json"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return "", fmt.Errorf("cache identity: %w", err)
		}
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	if weights != "" {
		fi, err := os.Stat(weights)
		if err != nil {
			return "", fmt.Errorf("cache identity: %w", err)
		}
		var n [16]byte
		binary.LittleEndian.PutUint64(n[:8], uint64(fi.Size()))
		binary.LittleEndian.PutUint64(n[8:], uint64(fi.ModTime().UnixNano()))
		h.Write(n[:])
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}
