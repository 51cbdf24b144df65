package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"
)

// bpe is the BPE model: a word starts as its characters (or their
// <0xNN> byte tokens, or unk) and the adjacent pair with the lowest merge
// rank is merged, leftmost first, until no pair has a merge. This is the
// order of Rust's Word::merge_all (a heap on (rank, position) with stale
// entries skipped), which we reproduce with the same heap; it is
// O(n log n) in the word length.
type bpe struct {
	vocab        map[string]int32
	merges       map[uint64]uint64 // (left<<32 | right) → rank<<32 | merged id
	charIDs      []int32           // id of the one-character token of each rune below len; -1 none; nil if prefix/suffix
	byteIDs      byteTokens
	unk          int32 // -1: no unk token (unknown characters are dropped, as in Rust)
	fuseUnk      bool
	byteFallback bool
	ignoreMerges bool
	prefix       string // continuing_subword_prefix
	suffix       string // end_of_word_suffix
	pool         *sync.Pool
}

// bpeScratch is the working memory of one word; pooled by the model so that
// merging allocates nothing.
type bpeScratch struct {
	syms []symbol
	heap []uint64 // rank<<32 | position
	key  []byte
}

// symbol is one piece of a word during merging, in a linked list over the
// initial positions (merged-away symbols have len 0).
type symbol struct {
	id         int32
	prev, next int32
	len        int32
}

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

func buildBPE(raw json.RawMessage) (*bpe, map[string]int32, error) {
	var c struct {
		Vocab        map[string]int32 `json:"vocab"`
		Merges       json.RawMessage  `json:"merges"`
		UnkToken     *string          `json:"unk_token"`
		Prefix       *string          `json:"continuing_subword_prefix"`
		Suffix       *string          `json:"end_of_word_suffix"`
		FuseUnk      bool             `json:"fuse_unk"`
		ByteFallback bool             `json:"byte_fallback"`
		IgnoreMerges bool             `json:"ignore_merges"`
		// dropout only applies when training (it makes encoding random);
		// inference runs without it, as Rust does for dropout 0.
		Dropout *float64 `json:"dropout"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, nil, fmt.Errorf("tokenizer: BPE: %w", err)
	}
	if c.Vocab == nil {
		c.Vocab = map[string]int32{}
	}
	b := &bpe{vocab: c.Vocab, unk: -1, fuseUnk: c.FuseUnk, byteFallback: c.ByteFallback,
		ignoreMerges: c.IgnoreMerges, pool: &sync.Pool{}}
	if c.Prefix != nil {
		b.prefix = *c.Prefix
	}
	if c.Suffix != nil {
		b.suffix = *c.Suffix
	}
	if c.UnkToken != nil {
		// An unk token missing from the vocabulary makes Rust fail the
		// encode; we drop unknown characters instead.
		if id, ok := c.Vocab[*c.UnkToken]; ok {
			b.unk = id
		}
	}
	b.byteIDs = newByteTokens(c.Vocab)
	if b.prefix == "" && b.suffix == "" {
		// Byte-level vocabularies only use runes below U+0144.
		b.charIDs = make([]int32, 512)
		for r := range b.charIDs {
			b.charIDs[r] = -1
			if id, ok := c.Vocab[string(rune(r))]; ok {
				b.charIDs[r] = id
			}
		}
	}
	pairs, err := parseMerges(c.Merges)
	if err != nil {
		return nil, nil, err
	}
	b.merges = make(map[uint64]uint64, len(pairs))
	for rank, p := range pairs {
		a, ok1 := c.Vocab[p[0]]
		bb, ok2 := c.Vocab[p[1]]
		if !ok1 || !ok2 {
			return nil, nil, fmt.Errorf("tokenizer: BPE: merge %d (%q %q) uses a token not in the vocabulary", rank, p[0], p[1])
		}
		right := p[1][min(len(b.prefix), len(p[1])):]
		id, ok := c.Vocab[p[0]+right]
		if !ok {
			return nil, nil, fmt.Errorf("tokenizer: BPE: merge %d result %q is not in the vocabulary", rank, p[0]+right)
		}
		// A repeated pair keeps its last rank, as Rust's HashMap collect does.
		b.merges[pairKey(a, bb)] = uint64(rank)<<32 | uint64(uint32(id))
	}
	return b, c.Vocab, nil
}

// parseMerges reads merges as "a b" strings (the legacy format) or as
// ["a", "b"] pairs.
func parseMerges(raw json.RawMessage) ([][2]string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	inner := bytes.TrimSpace(bytes.TrimPrefix(raw, []byte("[")))
	if len(inner) > 0 && inner[0] == '"' {
		var lines []string
		if err := json.Unmarshal(raw, &lines); err != nil {
			return nil, fmt.Errorf("tokenizer: BPE merges: %w", err)
		}
		pairs := make([][2]string, 0, len(lines))
		for i, l := range lines {
			if strings.HasPrefix(l, "#version") {
				continue
			}
			a, b, ok := strings.Cut(l, " ")
			if !ok {
				return nil, fmt.Errorf("tokenizer: BPE merges: line %d (%q) is not two tokens", i+1, l)
			}
			pairs = append(pairs, [2]string{a, b})
		}
		return pairs, nil
	}
	var lists [][]string
	if err := json.Unmarshal(raw, &lists); err != nil {
		return nil, fmt.Errorf("tokenizer: BPE merges: %w", err)
	}
	pairs := make([][2]string, len(lists))
	for i, l := range lists {
		if len(l) != 2 {
			return nil, fmt.Errorf("tokenizer: BPE merges: entry %d has %d tokens, want 2", i+1, len(l))
		}
		pairs[i] = [2]string{l[0], l[1]}
	}
	return pairs, nil
}

func (b *bpe) tokenize(dst []mtok, word []byte, _ *[]byte) []mtok {
	if len(word) == 0 {
		return dst
	}
	if b.ignoreMerges {
		if id, ok := b.vocab[string(word)]; ok {
			return append(dst, mtok{id: id, start: 0, end: int32(len(word))})
		}
	}
	sc, ok := b.pool.Get().(*bpeScratch)
	if !ok {
		sc = &bpeScratch{}
	}
	sc.syms = b.initialSymbols(sc, word)
	b.mergeAll(sc)
	// Offsets are the running sum of symbol lengths, as in Rust (so
	// dropped unknown characters shift what follows).
	pos := int32(0)
	n := int32(len(word))
	for i := int32(0); len(sc.syms) > 0 && i >= 0; i = sc.syms[i].next {
		s := sc.syms[i]
		start, end := pos, min(pos+s.len, n)
		if start >= end { // only with byte fallback of a prefixed piece
			start = end - 1
		}
		dst = append(dst, mtok{id: s.id, start: start, end: end})
		pos += s.len
	}
	// Keep the scratch of ordinary words only: a 1 MB word must not pin
	// its buffers forever.
	if cap(sc.syms) <= 1<<16 && cap(sc.heap) <= 1<<17 {
		b.pool.Put(sc)
	}
	return dst
}

// initialSymbols splits word into characters and looks them up, following
// Rust's BPE::merge_word (prefix on non-first, suffix on the last
// character; byte fallback; unk, fused or not).
func (b *bpe) initialSymbols(sc *bpeScratch, word []byte) []symbol {
	syms := sc.syms[:0]
	push := func(id, n int32) {
		if k := len(syms); k > 0 {
			syms[k-1].next = int32(k)
		}
		syms = append(syms, symbol{id: id, prev: int32(len(syms)) - 1, next: -1, len: n})
	}
	unkID, unkLen := int32(-1), int32(0)
	for i := 0; i < len(word); {
		r, size := rune(word[i]), 1
		if r >= utf8.RuneSelf {
			r, size = utf8.DecodeRune(word[i:])
		}
		first, last := i == 0, i+size == len(word)
		ch := word[i : i+size]
		i += size
		id := int32(-1)
		if b.charIDs != nil {
			if int(r) < len(b.charIDs) && r != utf8.RuneError {
				id = b.charIDs[r]
			} else if v, ok := b.vocab[string(ch)]; ok {
				id = v
			}
		} else {
			sc.key = sc.key[:0]
			if !first {
				sc.key = append(sc.key, b.prefix...)
			}
			sc.key = append(sc.key, ch...)
			if last {
				sc.key = append(sc.key, b.suffix...)
			}
			if v, ok := b.vocab[string(sc.key)]; ok {
				id = v
			}
			ch = sc.key
		}
		if id >= 0 {
			if unkID >= 0 {
				push(unkID, unkLen)
				unkID = -1
			}
			push(id, int32(size))
			continue
		}
		if b.byteFallback && b.byteIDs.cover(ch) {
			// Rust adds the byte tokens without flushing a pending unk.
			for _, c := range ch {
				push(b.byteIDs[c], 1)
			}
			continue
		}
		if b.unk < 0 {
			continue
		}
		switch {
		case unkID >= 0 && b.fuseUnk:
			unkLen += int32(size)
		case unkID >= 0:
			push(unkID, unkLen)
			unkID, unkLen = b.unk, int32(size)
		default:
			unkID, unkLen = b.unk, int32(size)
		}
	}
	if unkID >= 0 {
		push(unkID, unkLen)
	}
	return syms
}

// mergeAll applies the merges to sc.syms in Rust's order.
func (b *bpe) mergeAll(sc *bpeScratch) {
	syms := sc.syms
	h := sc.heap[:0]
	for i := 0; i+1 < len(syms); i++ {
		if v, ok := b.merges[pairKey(syms[i].id, syms[i+1].id)]; ok {
			h = append(h, v&^0xFFFFFFFF|uint64(i))
		}
	}
	for i := len(h)/2 - 1; i >= 0; i-- {
		siftDown(h, i)
	}
	for len(h) > 0 {
		top := h[0]
		h[0] = h[len(h)-1]
		h = h[:len(h)-1]
		siftDown(h, 0)
		pos, rank := int32(uint32(top)), top>>32
		s := &syms[pos]
		if s.len == 0 || s.next < 0 {
			continue
		}
		next := s.next
		v, ok := b.merges[pairKey(s.id, syms[next].id)]
		if !ok || v>>32 != rank {
			continue // stale: one side has changed since this entry was queued
		}
		s.id = int32(uint32(v))
		s.len += syms[next].len
		s.next = syms[next].next
		syms[next].len = 0
		if s.next >= 0 {
			syms[s.next].prev = pos
		}
		if s.prev >= 0 {
			if v, ok := b.merges[pairKey(syms[s.prev].id, s.id)]; ok {
				h = heapPush(h, v&^0xFFFFFFFF|uint64(s.prev))
			}
		}
		if s.next >= 0 {
			if v, ok := b.merges[pairKey(s.id, syms[s.next].id)]; ok {
				h = heapPush(h, v&^0xFFFFFFFF|uint64(pos))
			}
		}
	}
	sc.heap = h
}

func heapPush(h []uint64, x uint64) []uint64 {
	h = append(h, x)
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if h[p] <= h[i] {
			break
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
	return h
}

func siftDown(h []uint64, i int) {
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		m := l
		if r := l + 1; r < len(h) && h[r] < h[l] {
			m = r
		}
		if h[i] <= h[m] {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}
