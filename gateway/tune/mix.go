package tune

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/embedgate/embedgate/gateway"
)

// maxTexts bounds a texts file: a mix needs hundreds, not millions.
const maxTexts = 100000

// ReadTexts reads a JSONL file of {"text": "..."} lines (blank lines
// skipped), as --texts gives it.
func ReadTexts(r io.Reader) ([]string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	var texts []string
	for line := 1; sc.Scan(); line++ {
		b := strings.TrimSpace(sc.Text())
		if b == "" {
			continue
		}
		var v struct {
			Text *string `json:"text"`
		}
		if err := json.Unmarshal([]byte(b), &v); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if v.Text == nil || *v.Text == "" {
			return nil, fmt.Errorf(`line %d: want {"text": "..."} with a non-empty text`, line)
		}
		if len(texts) == maxTexts {
			return nil, fmt.Errorf("more than %d texts", maxTexts)
		}
		texts = append(texts, *v.Text)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(texts) == 0 {
		return nil, errors.New("no texts")
	}
	return texts, nil
}

// BuiltinTexts is the mix used without --texts: search queries, titles,
// sentences and passages, in the proportions a retrieval workload sends
// them (mostly short, a long tail).
func BuiltinTexts() []string {
	short := []string{"how to reset a router", "best hiking boots", "python list comprehension", "weather tomorrow",
		"embedding models compared", "cheap flights to lisbon"}
	sentence := "The gateway tokenizes each request, groups inputs of similar length into padded batches and sends them to the inference server."
	var texts []string
	for i, s := range short {
		texts = append(texts, s, s+" near me", sentence)
		texts = append(texts, strings.Repeat(sentence+" ", 2+i%3))   // a paragraph
		texts = append(texts, strings.Repeat(sentence+" ", 8+4*i%9)) // a passage
	}
	return texts
}

// Mix is a tokenized length mix that cuts batches the way the gateway's
// batcher does: inputs of similar length, padded to the batch's length.
type Mix struct {
	seqs [][]int32 // token ids, sorted by length

	mu   sync.Mutex
	next map[int]int // per padded length, where the next batch starts
}

// NewMix takes the token ids of each text of the mix.
func NewMix(seqs [][]int32) (*Mix, error) {
	var kept [][]int32
	for _, s := range seqs {
		if len(s) > 0 {
			kept = append(kept, s)
		}
	}
	if len(kept) == 0 {
		return nil, errors.New("tune: the mix has no tokens")
	}
	slices.SortStableFunc(kept, func(a, b []int32) int { return len(a) - len(b) })
	return &Mix{seqs: kept, next: map[int]int{}}, nil
}

// Batch is rows inputs padded to length: the longest inputs of the mix
// that fit length (inputs longer are cut to it, as the gateway truncates),
// taken in turn. It returns the batch and its real tokens.
func (m *Mix) Batch(rows, length int) (*gateway.Batch, int) {
	// The inputs that fill a batch of this length are those longer than
	// half of it: shorter ones would go to a batch of a smaller length.
	// With none that fit, longer inputs are cut to it.
	lo, hi := m.span(length/2+1), m.span(length+1)
	if hi == lo {
		hi = len(m.seqs)
		if lo == hi {
			lo = 0
		}
	}
	m.mu.Lock()
	start := m.next[length]
	m.next[length] = start + rows
	m.mu.Unlock()
	b := &gateway.Batch{Rows: rows, Len: length,
		InputIDs: make([]int64, rows*length), AttentionMask: make([]int64, rows*length), TokenTypeIDs: make([]int64, rows*length)}
	tokens := 0
	for r := range rows {
		s := m.seqs[lo+(start+r)%(hi-lo)]
		s = s[:min(len(s), length)]
		for i, id := range s {
			b.InputIDs[r*length+i], b.AttentionMask[r*length+i] = int64(id), 1
		}
		tokens += len(s)
	}
	return b, tokens
}

// span is the index of the first input of at least n tokens.
func (m *Mix) span(n int) int {
	i, _ := slices.BinarySearchFunc(m.seqs, n, func(s []int32, n int) int { return len(s) - n })
	return i
}
