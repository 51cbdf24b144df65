package tokenizer_test

import (
	"fmt"

	"github.com/embedgate/embedgate/gateway/tokenizer"
)

// A byte-level BPE tokenizer (RoBERTa style): spaces become part of the
// next token ('Ġ'), offsets leave them out, and <mask> takes the space
// before it (lstrip).
func ExampleTokenizer_Encode_byteLevelBPE() {
	tk, err := tokenizer.LoadFile("testdata/roberta-bpe.json")
	if err != nil {
		fmt.Println(err)
		return
	}
	e := tk.Encode("Hello <mask> world", tokenizer.EncodeOptions{AddSpecialTokens: true, Offsets: true})
	fmt.Println(e.Tokens)
	fmt.Println(e.Offsets)
	// Output:
	// [<s> H el lo  <mask> Ġworld </s>]
	// [[0 0] [0 1] [1 3] [3 5] [6 12] [13 18] [0 0]]
}
