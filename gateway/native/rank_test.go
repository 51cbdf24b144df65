package native

import (
	"reflect"
	"testing"

	"github.com/embedgate/embedgate/gateway"
)

func TestRank(t *testing.T) {
	docs := func(n int) []string { return make([]string, n) }
	tests := []struct {
		name   string
		scores []float32
		topN   int
		ties   Ties
		want   []int
	}{
		{"by score", []float32{0.1, 0.9, 0.5}, 0, EarlierFirst, []int{1, 2, 0}},
		{"negative logits", []float32{-3, -1, -2}, 0, EarlierFirst, []int{1, 2, 0}},
		{"ties in input order", []float32{0.5, 0.2, 0.5, 0.5}, 0, EarlierFirst, []int{0, 2, 3, 1}},
		{"ties later first", []float32{0.5, 0.2, 0.5, 0.5}, 0, LaterFirst, []int{3, 2, 0, 1}},
		{"cut to top_n", []float32{0.1, 0.9, 0.5}, 2, EarlierFirst, []int{1, 2}},
		{"top_n of one", []float32{0.1, 0.9, 0.5}, 1, LaterFirst, []int{1}},
		{"top_n as many as there are", []float32{0.1, 0.9, 0.5}, 3, EarlierFirst, []int{1, 2, 0}},
		{"top_n larger than the list", []float32{0.1, 0.9, 0.5}, 10, EarlierFirst, []int{1, 2, 0}},
		{"one document", []float32{0.3}, 0, EarlierFirst, []int{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := &gateway.RerankRequest{Documents: docs(len(tt.scores)), TopN: tt.topN}
			got, err := Rank(&gateway.RerankResult{Scores: tt.scores}, req, tt.ties)
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Rank(%v, top %d) = %v, %v; want %v", tt.scores, tt.topN, got, err, tt.want)
			}
		})
	}
}

func TestRankErrors(t *testing.T) {
	zero := float32(0)
	nan, inf := zero/zero, 1/zero
	tests := []struct {
		name string
		res  *gateway.RerankResult
		req  *gateway.RerankRequest
		kind gateway.Kind
		msg  string
	}{
		{"NaN", &gateway.RerankResult{Scores: []float32{0.5, nan}}, &gateway.RerankRequest{Documents: make([]string, 2)}, gateway.Backend, "score is NaN"},
		{"-Inf", &gateway.RerankResult{Scores: []float32{-inf}}, &gateway.RerankRequest{Documents: make([]string, 1)}, gateway.Backend, "score is infinite"},
		{"too many scores", &gateway.RerankResult{Scores: []float32{1, 2}}, &gateway.RerankRequest{Documents: make([]string, 1)}, gateway.Internal, ""},
		{"no result", nil, &gateway.RerankRequest{Documents: make([]string, 1)}, gateway.Internal, ""},
		{"no request", &gateway.RerankResult{Scores: []float32{1}}, nil, gateway.Internal, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Rank(tt.res, tt.req, EarlierFirst)
			ge, ok := err.(*gateway.Error)
			if !ok || ge.Kind != tt.kind || tt.msg != "" && ge.Msg != tt.msg {
				t.Errorf("Rank = %v, %v; want a %v error %q", got, err, tt.kind, tt.msg)
			}
		})
	}
}

func TestAppendFloat(t *testing.T) {
	zero := float32(0)
	for _, tt := range []struct {
		f    float32
		want string
		ok   bool
	}{
		{0.9976404, "0.9976404", true},
		{-2.5, "-2.5", true},
		{3.4e-05, "3.4e-05", true},
		{0, "0", true},
		{zero / zero, "", false},
		{1 / zero, "", false},
	} {
		got, ok := AppendFloat([]byte("x"), tt.f)
		if string(got) != "x"+tt.want || ok != tt.ok {
			t.Errorf("AppendFloat(%v) = %q, %v; want %q, %v", tt.f, got, ok, "x"+tt.want, tt.ok)
		}
	}
}
