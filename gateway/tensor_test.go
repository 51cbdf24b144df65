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
