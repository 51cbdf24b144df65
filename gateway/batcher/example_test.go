package batcher_test

import (
	"context"
	"fmt"

	"github.com/embedgate/embedgate/gateway/batcher"
)

// input is a tokenized input as the engine queues it: its ids, and the
// context of the request it belongs to.
type input struct {
	name string
	ids  []int32
	ctx  context.Context
}

func (in *input) Tokens() (ids, typeIDs []int32) { return in.ids, nil }
func (in *input) Context() context.Context       { return in.ctx }

// tokens makes n ids (first, first+1, ...): their values do not matter
// to the batcher, only how many there are.
func tokens(first int32, n int) []int32 {
	ids := make([]int32, n)
	for i := range ids {
		ids[i] = first + int32(i)
	}
	return ids
}

// Inputs of mixed lengths are cut into batches of similar lengths under
// the padded-token budget: a batch costs rows × its longest row, so a
// short input in a batch of long ones would mostly be padding.
func ExampleQueue() {
	q, err := batcher.New[*input](batcher.Options{
		MaxTokens: 24, // --max-batch-tokens: rows × longest ≤ 24
		MaxRows:   4,  // --max-batch-requests
		PadID:     0,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	q.Push(
		&input{"long-1", tokens(100, 10), ctx},
		&input{"short-1", tokens(200, 2), ctx},
		&input{"long-2", tokens(300, 11), ctx},
		&input{"short-2", tokens(400, 3), ctx},
		&input{"mid", tokens(500, 6), ctx},
	)
	// The oldest input (long-1) anchors the first batch, which takes
	// long-2 rather than padding short inputs up to 10 tokens. mid joins
	// the short ones: the 6 tokens of padding it adds to them cost less
	// than a call of its own.
	for q.Len() > 0 {
		batch, _, err := q.Next(ctx) // nothing dropped: no request is done
		if err != nil {
			fmt.Println(err)
			return
		}
		// Pad builds the [rows, longest] call for the backend.
		b := q.Pad(batch)
		fmt.Printf("%d × %d:", b.Rows, b.Len)
		for _, in := range batch {
			fmt.Printf(" %s(%d)", in.name, len(in.ids))
		}
		fmt.Println()
	}
	// Output:
	// 2 × 11: long-1(10) long-2(11)
	// 3 × 6: short-1(2) short-2(3) mid(6)
}

// Pad right-pads each row to the longest with the pad id and attention 0,
// which is what tells the model (and pooling) which positions are real.
func ExampleQueue_Pad() {
	q, err := batcher.New[*input](batcher.Options{MaxTokens: 16, MaxRows: 4, PadID: 0})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	b := q.Pad([]*input{
		{"a", []int32{101, 7592, 102}, ctx},
		{"b", []int32{101, 102}, ctx},
	})
	for r := range b.Rows {
		row := b.InputIDs[r*b.Len : (r+1)*b.Len]
		mask := b.AttentionMask[r*b.Len : (r+1)*b.Len]
		fmt.Println("ids", row, "mask", mask)
	}
	// Output:
	// ids [101 7592 102] mask [1 1 1]
	// ids [101 102 0] mask [1 1 0]
}
