package pooling_test

import (
	"fmt"

	"github.com/embedgate/embedgate/gateway/pooling"
)

// Example pools one padded row of hidden states into a vector, then
// shapes it as a client asked: the first 2 dimensions, normalized.
func Example() {
	const length, hidden = 3, 4
	hiddenStates := []float32{ // [1, 3, 4]: two real tokens, then padding
		1, 2, 3, 4,
		3, 2, 1, 0,
		9, 9, 9, 9,
	}
	mask := []int64{1, 1, 0} // padding does not count
	vec := make([]float32, hidden)
	pooling.Pool(vec, hiddenStates, mask, length, hidden, pooling.Mean)
	fmt.Println("mean:", vec)
	fmt.Printf("2 dims, normalized: %.4f\n", pooling.Shape(vec, 2, true))
	// Output:
	// mean: [2 2 2 2]
	// 2 dims, normalized: [0.7071 0.7071]
}
