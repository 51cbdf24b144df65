package tokenizer

import "unicode/utf8"

// ToValidUTF8 returns b with each ill-formed sequence replaced by one U+FFFD
// per maximal subpart, as Rust's String::from_utf8_lossy (and the WHATWG
// decoder every HTTP client library uses) does, so text decoded at the HTTP
// edge tokenizes as Hugging Face's own servers would see it. Go's
// strings.ToValidUTF8 and encoding/json replace differently. Valid input is
// returned as it is.
func ToValidUTF8(b []byte) []byte {
	if utf8.Valid(b) {
		return b
	}
	s, _ := lossyUTF8(string(b), nil, nil)
	return []byte(s)
}
