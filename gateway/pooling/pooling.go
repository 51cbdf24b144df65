// Package pooling turns a model's per-token hidden states into one vector per
// input (CLS, mean or last-token, honouring the attention mask), and shapes
// vectors for the client: Matryoshka truncation and L2 normalization.
// It imports only the standard library.
package pooling

import (
	"fmt"
	"math"
	"strings"
)

// Method is a pooling strategy, named as in sentence-transformers.
type Method int

const (
	CLS Method = iota
	Mean
	LastToken
)

func (m Method) String() string {
	switch m {
	case CLS:
		return "cls"
	case Mean:
		return "mean"
	case LastToken:
		return "last-token"
	}
	return fmt.Sprintf("Method(%d)", int(m))
}

// ParseMethod accepts the --pooling values (and TEI's spellings).
func ParseMethod(s string) (Method, error) {
	switch strings.ToLower(strings.ReplaceAll(s, "_", "-")) {
	case "cls":
		return CLS, nil
	case "mean":
		return Mean, nil
	case "last-token", "lasttoken":
		return LastToken, nil
	}
	return 0, fmt.Errorf("pooling: unknown method %q (want cls, mean or last-token)", s)
}

// Pool writes into dst (len h) the pooled vector of one row: hidden holds the
// row's l*h values, mask its l attention values. Padding may sit on either
// side: mean skips masked positions, CLS takes the first unmasked position,
// last-token the last unmasked one.
func Pool(dst, hidden []float32, mask []int64, l, h int, m Method) {
	clear(dst[:h])
	switch m {
	case CLS, LastToken:
		pos := -1
		for i := 0; i < l; i++ {
			j := i
			if m == LastToken {
				j = l - 1 - i
			}
			if mask[j] != 0 {
				pos = j
				break
			}
		}
		if pos >= 0 {
			copy(dst[:h], hidden[pos*h:pos*h+h])
		}
	case Mean:
		// Sum in float64: long inputs lose precision otherwise, and the
		// reference implementation divides a float32 sum only once.
		acc := make([]float64, h)
		n := 0
		for i := 0; i < l; i++ {
			if mask[i] == 0 {
				continue
			}
			n++
			row := hidden[i*h : i*h+h]
			for k, v := range row {
				acc[k] += float64(v)
			}
		}
		if n == 0 {
			return
		}
		for k := range acc {
			dst[k] = float32(acc[k] / float64(n))
		}
	}
}

// Normalize scales v to unit L2 norm in place; a zero vector stays zero
// (sentence-transformers clamps the norm at 1e-12 for the same reason).
func Normalize(v []float32) {
	var sum float64
	for _, x := range v {
		sum += float64(x) * float64(x)
	}
	norm := math.Sqrt(sum)
	if norm < 1e-12 {
		norm = 1e-12
	}
	inv := 1 / norm
	for i, x := range v {
		v[i] = float32(float64(x) * inv)
	}
}

// Shape returns the vector a client gets: the first dims values of v (all
// when dims is 0), L2-normalized when normalize is set. v is not modified.
func Shape(v []float32, dims int, normalize bool) []float32 {
	if dims <= 0 || dims > len(v) {
		dims = len(v)
	}
	out := make([]float32, dims)
	copy(out, v[:dims])
	if normalize {
		Normalize(out)
	}
	return out
}
