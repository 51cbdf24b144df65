package tei

import (
	"encoding/json"
	"testing"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/native/codectest"
)

// TestRerankFixtures runs testdata/rerank.json: TEI's own request shapes,
// every option, and every error a /rerank client can get, with the exact
// status and body TEI would answer.
func TestRerankFixtures(t *testing.T) {
	codectest.RunRerankCases(t, Codec{}, "testdata/rerank.json", nil)
}

func TestAppendRerankRefusesNonFiniteScores(t *testing.T) {
	req := &gateway.RerankRequest{Query: "q", Documents: []string{"a", "b"}}
	nan := float32(0)
	nan /= nan
	inf := float32(1e38)
	inf *= 10
	for _, tt := range []struct {
		name   string
		scores []float32
		kind   gateway.Kind
		body   string
	}{
		{"NaN", []float32{0.5, nan}, gateway.Backend, `{"error":"score is NaN","error_type":"Backend"}`},
		{"infinite", []float32{inf, 0.5}, gateway.Backend, `{"error":"score is infinite","error_type":"Backend"}`},
		{"too few scores", []float32{0.5}, gateway.Internal, `{"error":"internal error: scores do not match the documents","error_type":"Internal"}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, err := Codec{}.AppendRerank(nil, &gateway.RerankResult{Scores: tt.scores}, req, "m")
			ge, ok := err.(*gateway.Error)
			if !ok || ge.Kind != tt.kind {
				t.Fatalf("AppendRerank(%v) = %s, %v; want a %v error", tt.scores, out, err, tt.kind)
			}
			if got := errorBody(Codec{}.ErrorResponse(ge)); got != tt.body {
				t.Errorf("error body = %s, want %s", got, tt.body)
			}
		})
	}
}

func FuzzDecodeRerank(f *testing.F) {
	f.Add([]byte(`{"query":"q","texts":["a","",{"text":"b"}],"truncate":false,"truncation_direction":"Left","raw_scores":true,"return_text":true,"model":"m"}`))
	f.Add([]byte(`{"query":"q","texts":["a","b","c","d"]}`))
	f.Add([]byte(`{"query":null,"texts":[null]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		lim := codectest.Limits()
		req, err := Codec{}.DecodeRerank(body, lim)
		if err == nil {
			err = req.Validate(lim)
		}
		if err != nil {
			if _, ok := err.(*gateway.Error); !ok {
				t.Fatalf("DecodeRerank(%q) error = %v (%T), want a *gateway.Error", body, err, err)
			}
			return
		}
		if n := len(req.Documents); n == 0 || n > lim.MaxClientBatch || req.Query == "" {
			t.Fatalf("DecodeRerank(%q) = %+v passed validation", body, req)
		}
		scores := make([]float32, len(req.Documents))
		out, err := Codec{}.AppendRerank(nil, &gateway.RerankResult{Scores: scores}, req, "m")
		if err != nil || !json.Valid(out) {
			t.Fatalf("AppendRerank for %q = %s, %v", body, out, err)
		}
	})
}
