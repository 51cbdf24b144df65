package tokenizer

import (
	"bufio"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sync"
	"testing"
)

// corpusItem is one line of testdata/corpus.jsonl.
type corpusItem struct {
	ID   int    `json:"id"`
	Cat  string `json:"cat"`
	Text string `json:"text"`
	B64  string `json:"b64"`
	raw  string // the bytes to encode
}

// expectedEnc is one configuration of an oracle line.
type expectedEnc struct {
	IDs     []int32  `json:"ids"`
	TypeIDs []int32  `json:"type_ids"`
	Mask    []int32  `json:"mask"`
	STM     []int32  `json:"stm"`
	Offsets [][2]int `json:"offsets"`
	Tokens  []string `json:"tokens"`
}

type expectedLine struct {
	ID      int                     `json:"id"`
	Input   *string                 `json:"input"`
	Configs map[string]*expectedEnc `json:"-"`
}

func (l *expectedLine) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	l.Configs = map[string]*expectedEnc{}
	for k, v := range m {
		switch k {
		case "id":
			if err := json.Unmarshal(v, &l.ID); err != nil {
				return err
			}
		case "input":
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return err
			}
			l.Input = &s
		default:
			var e expectedEnc
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
			l.Configs[k] = &e
		}
	}
	return nil
}

var loadCorpusOnce = sync.OnceValues(func() ([]corpusItem, error) {
	f, err := os.Open(filepath.Join("testdata", "corpus.jsonl"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var items []corpusItem
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var it corpusItem
		if err := json.Unmarshal(sc.Bytes(), &it); err != nil {
			return nil, err
		}
		it.raw = it.Text
		if it.B64 != "" {
			b, err := base64.StdEncoding.DecodeString(it.B64)
			if err != nil {
				return nil, err
			}
			it.raw = string(b)
		}
		items = append(items, it)
	}
	return items, sc.Err()
})

func loadCorpus(t testing.TB) []corpusItem {
	t.Helper()
	items, err := loadCorpusOnce()
	if err != nil {
		t.Fatalf("corpus: %v", err)
	}
	return items
}

func loadExpected(t *testing.T, name string) []expectedLine {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "expected", name+".jsonl.gz"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var lines []expectedLine
	sc := bufio.NewScanner(zr)
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for sc.Scan() {
		var l expectedLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		lines = append(lines, l)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

func loadTestTokenizer(t testing.TB, name string) *Tokenizer {
	t.Helper()
	tk, err := LoadFile(filepath.Join("testdata", name+".json"))
	if err != nil {
		t.Fatalf("LoadFile(%s): %v", name, err)
	}
	return tk
}

// cpOffsets converts byte offsets into raw (possibly invalid UTF-8) input to
// code-point offsets into its lossy decoding, the oracle's convention.
func cpOffsets(raw string, offs [][2]int) [][2]int {
	lossy, pos := lossyUTF8(raw, nil, nil)
	cp := make(map[int]int, len(lossy)+1)
	k := 0
	for i := range lossy { // i steps over runes of the lossy text
		if _, ok := cp[int(pos[i])]; !ok {
			cp[int(pos[i])] = k
		}
		k++
	}
	cp[len(raw)] = k
	out := make([][2]int, len(offs))
	for i, o := range offs {
		s, ok1 := cp[o[0]]
		e, ok2 := cp[o[1]]
		if !ok1 || !ok2 {
			s, e = -1, -1 // not on a character boundary: never matches
		}
		out[i] = [2]int{s, e}
	}
	return out
}

// parityConfigs are the oracle configurations and how to reproduce them.
var parityConfigs = []struct {
	name string
	opts EncodeOptions
	pad  int
}{
	{"plain", EncodeOptions{Offsets: true}, 0},
	{"special", EncodeOptions{AddSpecialTokens: true, Offsets: true}, 0},
	{"r128", EncodeOptions{AddSpecialTokens: true, MaxLength: 128, Offsets: true}, 0},
	{"l128", EncodeOptions{AddSpecialTokens: true, MaxLength: 128, TruncateLeft: true, Offsets: true}, 0},
	{"r512", EncodeOptions{AddSpecialTokens: true, MaxLength: 512, Offsets: true}, 0},
	{"l512", EncodeOptions{AddSpecialTokens: true, MaxLength: 512, TruncateLeft: true, Offsets: true}, 0},
	{"pad128", EncodeOptions{AddSpecialTokens: true, MaxLength: 128}, 128},
}

// TestParity compares every corpus item, in every oracle configuration,
// with the Hugging Face tokenizers output. Tokenizers of families not
// implemented yet must fail to load with an unsupported-component error.
func TestParity(t *testing.T) {
	tests := []struct {
		name    string
		wantErr string // regexp of the load error; empty: full parity required
	}{
		{name: "minilm"},
		{name: "bert-cased-wp"},
		{name: "qwen3emb"},
		{name: "qwenstyle-bpe"},
		{name: "roberta-bpe"},
		{name: "roberta-bpe-prefix"}, // add_prefix_space and "a b" merges
		{name: "llama2"},
		{name: "llama3"},
		{name: "xlmr-unigram"},
		{name: "xlmr-precompiled"},
	}
	corpus := loadCorpus(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.wantErr != "" {
				_, err := LoadFile(filepath.Join("testdata", tt.name+".json"))
				if err == nil || !regexp.MustCompile(tt.wantErr).MatchString(err.Error()) {
					t.Fatalf("LoadFile(%s) error = %v, want match %q", tt.name, err, tt.wantErr)
				}
				return
			}
			checkParity(t, tt.name, corpus)
		})
	}
}

func checkParity(t *testing.T, name string, corpus []corpusItem) {
	t.Helper()
	tk := loadTestTokenizer(t, name)
	want := loadExpected(t, name)
	if len(want) != len(corpus) {
		t.Fatalf("%s: %d expected lines for %d corpus items", name, len(want), len(corpus))
	}
	padID, ok := tk.PadID()
	if !ok {
		t.Fatalf("%s: no pad id", name)
	}
	padTok, _ := tk.IDToToken(padID)
	const maxReports = 15
	reports := 0
	for _, cfg := range parityConfigs {
		pass, total := 0, 0
		for i, it := range corpus {
			exp := want[i].Configs[cfg.name]
			if exp == nil {
				continue
			}
			if want[i].ID != it.ID {
				t.Fatalf("%s: expected line %d has id %d, corpus %d", name, i, want[i].ID, it.ID)
			}
			total++
			got := tk.Encode(it.raw, cfg.opts)
			if cfg.pad > 0 {
				got.Pad(cfg.pad, padID, 0, padTok, false)
			}
			diff := compareEncoding(&got, exp, it.raw)
			if diff == "" {
				pass++
				continue
			}
			if reports < maxReports {
				reports++
				t.Errorf("%s/%s item %d (%s): Encode(%q): %s", name, cfg.name, it.ID, it.Cat, clip(it.raw), diff)
			}
		}
		t.Logf("%s %-7s parity %d/%d (%.2f%%)", name, cfg.name, pass, total, 100*float64(pass)/float64(max(total, 1)))
		if pass != total {
			t.Errorf("%s %s: %d of %d items differ, want 100%% parity", name, cfg.name, total-pass, total)
		}
	}
}

func compareEncoding(got *Encoding, exp *expectedEnc, raw string) string {
	if !reflect.DeepEqual(nz(got.IDs), nz(exp.IDs)) {
		return fmt.Sprintf("ids = %v, want %v (tokens %q)", got.IDs, exp.IDs, got.Tokens)
	}
	if exp.TypeIDs != nil && !reflect.DeepEqual(nz(got.TypeIDs), nz(exp.TypeIDs)) {
		return fmt.Sprintf("type_ids = %v, want %v", got.TypeIDs, exp.TypeIDs)
	}
	if exp.Mask != nil && !reflect.DeepEqual(nz(got.AttentionMask), nz(exp.Mask)) {
		return fmt.Sprintf("mask = %v, want %v", got.AttentionMask, exp.Mask)
	}
	if exp.STM != nil && !reflect.DeepEqual(nz(got.SpecialTokensMask), nz(exp.STM)) {
		return fmt.Sprintf("special_tokens_mask = %v, want %v", got.SpecialTokensMask, exp.STM)
	}
	if exp.Offsets != nil {
		g := cpOffsets(raw, got.Offsets)
		if len(g) != len(exp.Offsets) || (len(g) > 0 && !reflect.DeepEqual(g, exp.Offsets)) {
			return fmt.Sprintf("offsets (code points) = %v, want %v (tokens %q)", g, exp.Offsets, got.Tokens)
		}
	}
	if exp.Tokens != nil && !reflect.DeepEqual(nzs(got.Tokens), nzs(exp.Tokens)) {
		return fmt.Sprintf("tokens = %q, want %q", got.Tokens, exp.Tokens)
	}
	return ""
}

func nz(s []int32) []int32 {
	if s == nil {
		return []int32{}
	}
	return s
}

func nzs(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
