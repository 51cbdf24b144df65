package main

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"github.com/embedgate/embedgate/gateway/catalog"
)

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
