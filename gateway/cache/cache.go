// Package cache keeps pooled embeddings per input, keyed on what the model
// sees: the model's identity, the cache scope, and the exact token ids and
// type ids after the prompt and truncation. Two tiers: an in-process LRU
// bounded in bytes (Memory), and Redis shared by every replica (Redis).
// A cache never fails a request: every error is a miss.
package cache

import (
	"crypto/sha256"
	"encoding/binary"
)

// Key names one cached vector.
type Key [sha256.Size]byte

// NewKey hashes what decides an input's vector: the model's identity (its
// name, hub commit or files' digest, backend model version and pooling:
// see infer), the scope (an API key's name, or "" when shared), and the
// token ids and type ids the model is fed. Lengths are written before
// each part, so no two different inputs hash the same bytes.
func NewKey(identity, scope string, ids, typeIDs []int32) Key {
	h := sha256.New()
	var n [8]byte
	writeString := func(s string) {
		binary.LittleEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	writeInts := func(v []int32) {
		binary.LittleEndian.PutUint64(n[:], uint64(len(v)))
		h.Write(n[:])
		buf := make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(buf[4*i:], uint32(x))
		}
		h.Write(buf)
	}
	writeString(identity)
	writeString(scope)
	writeInts(ids)
	writeInts(typeIDs)
	var k Key
	h.Sum(k[:0])
	return k
}
