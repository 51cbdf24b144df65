package tokenizer

import (
	"bufio"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
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

// expectedLine is one line of testdata/expected/<name>.jsonl.gz, decoded
// in one pass: each oracle configuration is a field of its own.
type expectedLine struct {
	ID      int          `json:"id"`
	Input   *string      `json:"input"`
	Plain   *expectedEnc `json:"plain"`
	Special *expectedEnc `json:"special"`
	R128    *expectedEnc `json:"r128"`
	L128    *expectedEnc `json:"l128"`
	R512    *expectedEnc `json:"r512"`
	L512    *expectedEnc `json:"l512"`
	Pad128  *expectedEnc `json:"pad128"`
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

// loadExpected decodes an expected file straight into typed lines; a
// configuration the oracle wrote that no field holds is an error, so none is
// silently left unchecked.
func loadExpected(t *testing.T, name string) []expectedLine {
	return loadJSONLines[expectedLine](t, filepath.Join("testdata", "expected", name+".jsonl.gz"))
}

// loadJSONLines decodes a gzipped JSON-lines file into T, one per line;
// an unknown field is an error.
func loadJSONLines[T any](t *testing.T, path string) []T {
	t.Helper()
	dec := openJSONLines(t, path)
	var lines []T
	for {
		var l T
		err := dec.Decode(&l)
		if err == io.EOF {
			return lines
		}
		if err != nil {
			t.Fatalf("%s line %d: %v", filepath.Base(path), len(lines)+1, err)
		}
		lines = append(lines, l)
	}
}

// openJSONLines is a strict decoder (an unknown field is an error) of a
// gzipped JSON-lines file, open until the test ends.
func openJSONLines(t *testing.T, path string) *json.Decoder {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bufio.NewReaderSize(zr, 1<<20))
	dec.DisallowUnknownFields()
	return dec
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
	cp := make([]int, len(raw)+1) // byte position in raw → code point; -1: none starts there
	for i := range cp {
		cp[i] = -1
	}
	k := 0
	for i := range lossy { // i steps over runes of the lossy text
		if cp[pos[i]] < 0 {
			cp[pos[i]] = k
		}
		k++
	}
	cp[len(raw)] = k
	at := func(b int) int {
		if b < 0 || b > len(raw) {
			return -1
		}
		return cp[b]
	}
	out := make([][2]int, len(offs))
	for i, o := range offs {
		s, e := at(o[0]), at(o[1])
		if s < 0 || e < 0 {
			s, e = -1, -1 // not on a character boundary: never matches
		}
		out[i] = [2]int{s, e}
	}
	return out
}

// parityConfigs are the oracle configurations and how to reproduce them.
var parityConfigs = []struct {
	name string
	exp  func(*expectedLine) *expectedEnc
	opts EncodeOptions
	pad  int
}{
	{"plain", func(l *expectedLine) *expectedEnc { return l.Plain }, EncodeOptions{Offsets: true}, 0},
	{"special", func(l *expectedLine) *expectedEnc { return l.Special }, EncodeOptions{AddSpecialTokens: true, Offsets: true}, 0},
	{"r128", func(l *expectedLine) *expectedEnc { return l.R128 }, EncodeOptions{AddSpecialTokens: true, MaxLength: 128, Offsets: true}, 0},
	{"l128", func(l *expectedLine) *expectedEnc { return l.L128 }, EncodeOptions{AddSpecialTokens: true, MaxLength: 128, TruncateLeft: true, Offsets: true}, 0},
	{"r512", func(l *expectedLine) *expectedEnc { return l.R512 }, EncodeOptions{AddSpecialTokens: true, MaxLength: 512, Offsets: true}, 0},
	{"l512", func(l *expectedLine) *expectedEnc { return l.L512 }, EncodeOptions{AddSpecialTokens: true, MaxLength: 512, TruncateLeft: true, Offsets: true}, 0},
	{"pad128", func(l *expectedLine) *expectedEnc { return l.Pad128 }, EncodeOptions{AddSpecialTokens: true, MaxLength: 128}, 128},
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
			t.Parallel() // each subtest has its own tokenizer and expectations
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
			exp := cfg.exp(&want[i])
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
