package native

import (
	"cmp"
	"math"
	"slices"

	"github.com/embedgate/embedgate/gateway"
)

// Ties says which of two documents with the same score a ranking puts
// first. Dialects differ, and a client that reranks duplicates sees it.
type Ties int

const (
	// EarlierFirst keeps input order among equal scores (Cohere's and
	// Jina's results, a stable sort by score).
	EarlierFirst Ties = iota
	// LaterFirst puts the later document first: TEI sorts its ranks by
	// score ascending, stably, then reverses the list
	// (router/src/http/server.rs, rerank), which reverses ties too.
	LaterFirst
)

// Rank is the order of a rerank response: the indices of req's documents,
// highest score first, ties as ties says, cut to req.TopN (0 or more than
// there are: all of them). res must hold one score per document; a NaN or
// infinite score has no place in a ranking and no JSON form, so it is a
// Backend error, as TEI's "score is NaN" is.
func Rank(res *gateway.RerankResult, req *gateway.RerankRequest, ties Ties) ([]int, error) {
	if res == nil || req == nil || len(res.Scores) != len(req.Documents) {
		return nil, gateway.Errorf(gateway.Internal, "", "internal error: scores do not match the documents")
	}
	scores := res.Scores
	order := make([]int, len(scores))
	for i, s := range scores {
		switch {
		case math.IsNaN(float64(s)):
			return nil, gateway.Errorf(gateway.Backend, "", "score is NaN")
		case math.IsInf(float64(s), 0):
			return nil, gateway.Errorf(gateway.Backend, "", "score is infinite")
		}
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		if c := cmp.Compare(scores[b], scores[a]); c != 0 {
			return c
		}
		if ties == LaterFirst {
			return cmp.Compare(b, a)
		}
		return cmp.Compare(a, b)
	})
	if req.TopN > 0 && req.TopN < len(order) {
		order = order[:req.TopN]
	}
	return order, nil
}
