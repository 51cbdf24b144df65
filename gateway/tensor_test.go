package gateway

import (
	"slices"
	"testing"
)

func TestPositionIDs(t *testing.T) {
	for _, tt := range []struct {
		rows, length int
		want         []int64
	}{
		{2, 3, []int64{0, 1, 2, 0, 1, 2}},
		{1, 1, []int64{0}},
		{3, 1, []int64{0, 0, 0}},
	} {
		if got := PositionIDs(tt.rows, tt.length); !slices.Equal(got, tt.want) {
			t.Errorf("PositionIDs(%d, %d) = %v, want %v", tt.rows, tt.length, got, tt.want)
		}
	}
}

// The outputs a backend reads, by preference: pooled, then token states,
// then logits; none of them is -1.
func TestPickOutput(t *testing.T) {
	for _, tt := range []struct {
		names []string
		i     int
		kind  OutputKind
	}{
		{[]string{"logits", "last_hidden_state", "sentence_embedding"}, 2, Pooled},
		{[]string{"logits", "last_hidden_state"}, 1, Hidden},
		{[]string{"pooler_output", "logits"}, 1, Logits},
		{[]string{"pooler_output"}, -1, 0},
		{nil, -1, 0},
	} {
		if i, kind := PickOutput(tt.names); i != tt.i || (i >= 0 && kind != tt.kind) {
			t.Errorf("PickOutput(%v) = %d, %v; want %d, %v", tt.names, i, kind, tt.i, tt.kind)
		}
	}
}
