package tokenizer

import "fmt"

// byteTokens maps each byte to the id of its byte-fallback token <0xNN>, or
// -1 where the vocabulary has none. BPE and Unigram with byte_fallback spell
// a piece they have no token for with these.
type byteTokens [256]int32

func newByteTokens(vocab map[string]int32) byteTokens {
	var t byteTokens
	for i := range t {
		t[i] = -1
		if id, ok := vocab[fmt.Sprintf("<0x%02X>", i)]; ok {
			t[i] = id
		}
	}
	return t
}

// cover reports whether every byte of s has a token, so that s can fall
// back to bytes.
func (t *byteTokens) cover(s []byte) bool {
	for _, c := range s {
		if t[c] < 0 {
			return false
		}
	}
	return true
}
