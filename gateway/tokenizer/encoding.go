package tokenizer

// Encoding is the result of encoding one text.
type Encoding struct {
	IDs, TypeIDs, AttentionMask, SpecialTokensMask []int32
	// Offsets are byte offsets [start, stop) into the input text; special
	// tokens and padding have (0, 0). Filled only with EncodeOptions.Offsets.
	Offsets [][2]int
	// Tokens are the token strings. Filled only with EncodeOptions.Offsets.
	Tokens []string
}

// Len is the number of tokens.
func (e *Encoding) Len() int { return len(e.IDs) }

// Pad pads the encoding to length tokens (nothing happens if it is already at
// least that long), on the left or the right, like Rust's Encoding::pad:
// padding has attention 0, special-tokens mask 1, offsets (0, 0) and token
// padToken. Offsets and Tokens are padded only if present.
func (e *Encoding) Pad(length int, padID, padTypeID int32, padToken string, left bool) {
	n := len(e.IDs)
	if length <= n {
		return
	}
	k := length - n
	e.IDs = padInt32(e.IDs, k, padID, left)
	e.TypeIDs = padInt32(e.TypeIDs, k, padTypeID, left)
	e.AttentionMask = padInt32(e.AttentionMask, k, 0, left)
	e.SpecialTokensMask = padInt32(e.SpecialTokensMask, k, 1, left)
	if e.Offsets != nil {
		e.Offsets = padSlice(e.Offsets, k, [2]int{}, left)
	}
	if e.Tokens != nil {
		e.Tokens = padSlice(e.Tokens, k, padToken, left)
	}
}

func padInt32(s []int32, k int, v int32, left bool) []int32 {
	return padSlice(s, k, v, left)
}

func padSlice[T any](s []T, k int, v T, left bool) []T {
	out := make([]T, len(s)+k)
	if left {
		for i := 0; i < k; i++ {
			out[i] = v
		}
		copy(out[k:], s)
		return out
	}
	copy(out, s)
	for i := len(s); i < len(out); i++ {
		out[i] = v
	}
	return out
}
