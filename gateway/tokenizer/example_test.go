package tokenizer_test

import (
	"fmt"

	"github.com/embedgate/embedgate/gateway/tokenizer"
)

func ExampleTokenizer_Encode() {
	tk, err := tokenizer.LoadFile("testdata/minilm.json")
	if err != nil {
		fmt.Println(err)
		return
	}
	e := tk.Encode("Héllo, wörld!", tokenizer.EncodeOptions{AddSpecialTokens: true, Offsets: true})
	fmt.Println(e.Tokens)
	fmt.Println(e.IDs)
	fmt.Println(e.Offsets)

	padID, _ := tk.PadID()
	e.Pad(10, padID, 0, "[PAD]", false)
	fmt.Println(e.AttentionMask)
	// Output:
	// [[CLS] hello , world ! [SEP]]
	// [101 7592 1010 2088 999 102]
	// [[0 0] [0 6] [6 7] [8 14] [14 15] [0 0]]
	// [1 1 1 1 1 1 0 0 0 0]
}
