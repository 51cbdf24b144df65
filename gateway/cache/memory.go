package cache

import (
	"container/list"
	"slices"
	"sync"
)

// entryOverhead is what one entry costs besides its vector's array: the
// entry struct (64 bytes), its list.Element (48) and its share of the map's
// slots and tables (measured 160 to 230 bytes in all, with the map between
// full and just grown), rounded up. TestEntryOverheadCoversHeap measures it
// on the real heap.
const entryOverhead = 256

// memory is the in-process tier: a strict LRU bounded in bytes. Go's LRU
// libraries bound the number of entries, which for vectors of 384 to 4096
// floats says little about memory; here every entry costs its vector's
// allocation plus entryOverhead, and the sum never exceeds max.
type memory struct {
	max int64

	mu    sync.Mutex
	used  int64
	order list.List // of *entry, most recently used first
	items map[Key]*list.Element
}

type entry struct {
	key  Key
	vec  []float32
	cost int64
}

func newMemory(maxBytes int64) *memory {
	return &memory{max: maxBytes, items: make(map[Key]*list.Element)}
}

// alloc returns a vector of length n in an array of its own, and what it
// costs the memory tier. The cost counts the array as the allocator sizes
// it: growing a slice rounds its capacity up to the allocator's size
// class, so cap tells the real size. The vector is clipped so that a
// caller appending to a vector it got never writes into the spare room.
func alloc(n int) (vec []float32, cost int64) {
	v := slices.Grow([]float32(nil), n)
	return v[:n:n], 4*int64(cap(v)) + entryOverhead
}

// ownCopy is alloc and copy.
func ownCopy(v []float32) (vec []float32, cost int64) {
	vec, cost = alloc(len(v))
	copy(vec, v)
	return vec, cost
}

// get fills vecs[i] for the keys found with a vector of length dim, and
// marks them most recently used. A vector of another length is removed
// (its key then names another model's vector, which cannot happen unless
// the caller's dim is wrong) and is a miss. found counts the hits.
func (m *memory) get(dim int, keys []Key, vecs [][]float32) (found int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, k := range keys {
		el, ok := m.items[k]
		if !ok {
			continue
		}
		e := el.Value.(*entry)
		if len(e.vec) != dim {
			m.remove(el)
			continue
		}
		m.order.MoveToFront(el)
		vecs[i] = e.vec
		found++
	}
	return found
}

// put stores vecs (the cache's own copies, see ownCopy) under keys, most
// recently used first, evicting from the least recently used end until
// each fits. An entry larger than the whole tier is not stored.
func (m *memory) put(keys []Key, vecs [][]float32, costs []int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, k := range keys {
		if el, ok := m.items[k]; ok {
			m.remove(el)
		}
		if costs[i] > m.max {
			continue
		}
		for m.used+costs[i] > m.max {
			m.remove(m.order.Back())
		}
		m.items[k] = m.order.PushFront(&entry{key: k, vec: vecs[i], cost: costs[i]})
		m.used += costs[i]
	}
}

func (m *memory) remove(el *list.Element) {
	e := m.order.Remove(el).(*entry)
	delete(m.items, e.key)
	m.used -= e.cost
}

// size is the bytes and entries held now.
func (m *memory) size() (bytes int64, entries int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.used, len(m.items)
}
