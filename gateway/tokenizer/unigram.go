package tokenizer

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sync"
	"unicode/utf8"
)

// unkPenalty is Rust's K_UNK_PENALTY: an unknown character scores the
// lowest piece score minus this.
const unkPenalty = 10.0

// unigram is the Unigram model (SentencePiece) as Rust's
// Unigram::encode_optimized runs it: a best-path search over the word in
// which, for each character position in order, every vocabulary piece
// starting there (found with a trie, shortest first) offers
// score(piece) + best(start) to its end position; a strictly better score
// replaces the end's best, so ties keep the first offer (the earliest
// start). A position with no one-character piece also offers the unknown
// token over its character. Consecutive unknown characters are fused into
// one unknown token; with byte_fallback an unknown piece becomes its bytes'
// <0xXX> tokens when all of them exist.
//
// The search is O(len(word) × longest piece). Per-call memory comes from a
// pool owned by the model, not from the model itself.
type unigram struct {
	trie         pieceTrie
	scores       []float64 // by id
	vocab        map[string]int32
	unk          int32 // -1: none
	unkScore     float64
	byteFallback bool
	byteIDs      byteTokens
	pool         sync.Pool // *unigramScratch
}

// bestNode is the best path ending at a byte position.
type bestNode struct {
	score float64
	start int32 // -1: unreached
	id    int32
}

type unigramScratch struct{ best []bestNode }

func buildUnigram(raw json.RawMessage) (*unigram, map[string]int32, error) {
	var c struct {
		UnkID        *int32            `json:"unk_id"`
		Vocab        []json.RawMessage `json:"vocab"`
		ByteFallback bool              `json:"byte_fallback"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, nil, fmt.Errorf("tokenizer: Unigram: %w", err)
	}
	u := &unigram{
		scores:       make([]float64, len(c.Vocab)),
		vocab:        make(map[string]int32, len(c.Vocab)),
		unk:          -1,
		byteFallback: c.ByteFallback,
	}
	minScore := math.Inf(1)
	pieces := make([]string, len(c.Vocab))
	for i, r := range c.Vocab {
		var entry [2]json.RawMessage
		if err := json.Unmarshal(r, &entry); err != nil {
			return nil, nil, fmt.Errorf("tokenizer: Unigram: vocab entry %d: %w", i, err)
		}
		if err := json.Unmarshal(entry[0], &pieces[i]); err != nil {
			return nil, nil, fmt.Errorf("tokenizer: Unigram: vocab entry %d: %w", i, err)
		}
		if err := json.Unmarshal(entry[1], &u.scores[i]); err != nil {
			return nil, nil, fmt.Errorf("tokenizer: Unigram: vocab entry %d: %w", i, err)
		}
		u.vocab[pieces[i]] = int32(i) // a repeated piece maps to its last id, as in Rust
		minScore = min(minScore, u.scores[i])
	}
	if len(c.Vocab) == 0 {
		minScore = 0
	}
	u.unkScore = minScore - unkPenalty
	if c.UnkID != nil {
		if *c.UnkID < 0 || int(*c.UnkID) >= len(c.Vocab) {
			return nil, nil, fmt.Errorf("tokenizer: Unigram: unk_id %d is not in the vocabulary", *c.UnkID)
		}
		u.unk = *c.UnkID
	}
	u.byteIDs = newByteTokens(u.vocab)
	u.trie = buildPieceTrie(u.vocab)
	return u, u.vocab, nil
}

func (u *unigram) tokenize(dst []mtok, word []byte, _ *[]byte) []mtok {
	if len(word) == 0 {
		return dst
	}
	sc, _ := u.pool.Get().(*unigramScratch)
	if sc == nil {
		sc = &unigramScratch{}
	}
	defer u.putScratch(sc)
	n := len(word)
	best := slices.Grow(sc.best[:0], n+1)[:n+1]
	sc.best = best
	for i := range best {
		best[i] = bestNode{start: -1}
	}
	best[0].start = 0
	for start := 0; start < n; {
		base := best[start].score
		clen := charLen(word, start)
		single := false
		offer := func(end int, id int32, score float64) {
			nd := &best[end]
			if s := score + base; nd.start < 0 || s > nd.score {
				*nd = bestNode{score: s, start: int32(start), id: id}
			}
		}
		// walk the trie along the word: every node passed that ends a
		// piece is a candidate, shortest first
		node := u.trie.child(0, word[start])
		for i := start + 1; node > 0; i++ {
			if id := u.trie.nodes[node].id; id >= 0 {
				offer(i, id, u.scores[id])
				if i-start == clen {
					single = true
				}
			}
			if i >= n {
				break
			}
			node = u.trie.child(node, word[i])
		}
		if !single {
			offer(start+clen, u.unk, u.unkScore)
		}
		start += clen
	}
	return u.backtrack(dst, word, best)
}

// backtrack follows the best path from the end and appends its tokens in
// order, fusing runs of unknown characters.
func (u *unigram) backtrack(dst []mtok, word []byte, best []bestNode) []mtok {
	base := len(dst)
	unkEnd := -1 // end of the unknown run being fused
	for end := len(word); end > 0; {
		nd := best[end]
		start := int(nd.start)
		if start < 0 || start >= end { // unreachable: keep the path finite
			break
		}
		if nd.id == u.unk {
			if unkEnd < 0 {
				unkEnd = end
			}
		} else {
			if unkEnd >= 0 {
				dst = append(dst, mtok{id: u.unk, start: int32(end), end: int32(unkEnd)})
				unkEnd = -1
			}
			dst = append(dst, mtok{id: nd.id, start: int32(start), end: int32(end)})
		}
		end = start
	}
	if unkEnd >= 0 {
		dst = append(dst, mtok{id: u.unk, start: 0, end: int32(unkEnd)})
	}
	slices.Reverse(dst[base:])
	if u.unk < 0 {
		// Rust fails the encode without an unk id; drop the unknown text
		// instead of failing (there is no error path).
		return slices.DeleteFunc(dst, func(t mtok) bool { return t.id < 0 })
	}
	// Unknown pieces are looked up by text (a fused run can be a piece)
	// and fall back to bytes.
	for i := base; i < len(dst); i++ {
		t := dst[i]
		if t.id != u.unk {
			continue
		}
		if id, ok := u.vocab[string(word[t.start:t.end])]; ok {
			dst[i].id = id
			continue
		}
		if !u.byteFallback || !u.byteIDs.cover(word[t.start:t.end]) {
			continue
		}
		k := int(t.end - t.start)
		dst = slices.Insert(dst, i+1, make([]mtok, k-1)...)
		for j := 0; j < k; j++ {
			dst[i+j] = mtok{id: u.byteIDs[word[int(t.start)+j]], start: t.start, end: t.end}
		}
		i += k - 1
	}
	return dst
}

func (u *unigram) putScratch(sc *unigramScratch) {
	if cap(sc.best) > 1<<16 {
		return // do not keep the memory of a huge word
	}
	u.pool.Put(sc)
}

// charLen is the byte length of the UTF-8 character at word[i].
func charLen(word []byte, i int) int {
	if word[i] < utf8.RuneSelf {
		return 1
	}
	_, size := utf8.DecodeRune(word[i:])
	return size
}

// pieceTrie is a byte trie of the vocabulary, flattened: node 0 is the
// root, whose children are found through a direct table; other nodes keep
// their children as a sorted run of edges.
type pieceTrie struct {
	root  [256]int32
	nodes []trieNode
	edges []trieEdge
}

type trieNode struct {
	id          int32 // piece ending here, or -1
	first, numE int32 // edges[first : first+numE]
}

type trieEdge struct {
	b     byte
	child int32
}

// child returns the node reached from node by byte b, or 0 when none.
func (t *pieceTrie) child(node int32, b byte) int32 {
	if node == 0 {
		return t.root[b]
	}
	nd := &t.nodes[node]
	edges := t.edges[nd.first : nd.first+nd.numE]
	if len(edges) <= 8 {
		for _, e := range edges {
			if e.b == b {
				return e.child
			}
		}
		return 0
	}
	lo, hi := 0, len(edges)
	for lo < hi {
		m := (lo + hi) / 2
		switch {
		case edges[m].b < b:
			lo = m + 1
		case edges[m].b > b:
			hi = m
		default:
			return edges[m].child
		}
	}
	return 0
}

// buildPieceTrie lays the trie out from the sorted pieces: the keys below
// a node are a contiguous range of the sorted list.
func buildPieceTrie(vocab map[string]int32) pieceTrie {
	keys := make([]string, 0, len(vocab))
	for k := range vocab {
		if k != "" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	t := pieceTrie{nodes: []trieNode{{id: -1}}}
	var build func(node int32, keys []string, depth int)
	build = func(node int32, keys []string, depth int) {
		// keys all share keys[*][:depth]; one of them may end here
		if len(keys) > 0 && len(keys[0]) == depth {
			t.nodes[node].id = vocab[keys[0]]
			keys = keys[1:]
		}
		type group struct {
			b    byte
			keys []string
		}
		var groups []group
		for len(keys) > 0 {
			b := keys[0][depth]
			j := 1
			for j < len(keys) && keys[j][depth] == b {
				j++
			}
			groups = append(groups, group{b, keys[:j]})
			keys = keys[j:]
		}
		first := int32(len(t.edges))
		for _, g := range groups {
			child := int32(len(t.nodes))
			t.nodes = append(t.nodes, trieNode{id: -1})
			t.edges = append(t.edges, trieEdge{b: g.b, child: child})
			if node == 0 {
				t.root[g.b] = child
			}
		}
		t.nodes[node].first, t.nodes[node].numE = first, int32(len(groups))
		for k, g := range groups {
			build(t.edges[first+int32(k)].child, g.keys, depth+1)
		}
	}
	build(0, keys, 0)
	return t
}
