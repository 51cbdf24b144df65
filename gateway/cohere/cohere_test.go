package cohere

import (
	"bytes"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/native/codectest"
)

// uuid4 is a random UUID, as Cohere's response ids are.
var uuid4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// normalizeID checks the response's id and replaces it with "<uuid>", the
// fixtures' placeholder for the one part of a body that varies.
func normalizeID(t *testing.T, body []byte) []byte {
	t.Helper()
	const prefix = `{"id":"`
	if !bytes.HasPrefix(body, []byte(prefix)) || len(body) < len(prefix)+37 {
		t.Fatalf("body %s does not start with an id", body)
	}
	id := string(body[len(prefix) : len(prefix)+36])
	if !uuid4.MatchString(id) || body[len(prefix)+36] != '"' {
		t.Fatalf("id %q of %s is not a random UUID", id, body)
	}
	return bytes.Replace(body, []byte(id), []byte("<uuid>"), 1)
}

// TestRerankFixtures runs testdata/v1.json and v2.json: the bodies the
// official cohere-ai client and Jina's reference send, every option, and
// every error a client of either route can get, with the exact status and
// body.
func TestRerankFixtures(t *testing.T) {
	t.Run("v1", func(t *testing.T) { codectest.RunRerankCases(t, Codec{Version: 1}, "testdata/v1.json", normalizeID) })
	t.Run("v2", func(t *testing.T) { codectest.RunRerankCases(t, Codec{Version: 2}, "testdata/v2.json", normalizeID) })
}

func TestZeroCodecIsV1(t *testing.T) {
	req := &gateway.RerankRequest{Query: "q", Documents: []string{"a"}}
	out, err := Codec{}.AppendRerank(nil, &gateway.RerankResult{Scores: []float32{1}}, req, "m")
	if err != nil || !bytes.Contains(out, []byte(`"meta":{"api_version":{"version":"1"},`)) {
		t.Errorf("AppendRerank = %s, %v; want api_version 1", out, err)
	}
}

func TestIDsDiffer(t *testing.T) {
	req := &gateway.RerankRequest{Query: "q", Documents: []string{"a"}}
	res := &gateway.RerankResult{Scores: []float32{1}}
	seen := map[string]bool{}
	for range 100 {
		out, err := Codec{Version: 2}.AppendRerank(nil, res, req, "m")
		if err != nil {
			t.Fatal(err)
		}
		var body struct{ ID string }
		if err := json.Unmarshal(out, &body); err != nil || !uuid4.MatchString(body.ID) {
			t.Fatalf("AppendRerank = %s, %v; want a UUID id", out, err)
		}
		if seen[body.ID] {
			t.Fatalf("id %s given twice", body.ID)
		}
		seen[body.ID] = true
	}
}

// TestSearchUnits: Cohere bills a search unit per 100 documents.
func TestSearchUnits(t *testing.T) {
	for _, tt := range []struct{ docs, units int }{{1, 1}, {100, 1}, {101, 2}, {250, 3}} {
		req := &gateway.RerankRequest{Query: "q", Documents: make([]string, tt.docs), TopN: 1}
		res := &gateway.RerankResult{Scores: make([]float32, tt.docs)}
		out, err := Codec{}.AppendRerank(nil, res, req, "m")
		want := `"billed_units":{"search_units":` + itoa(tt.units) + `}`
		if err != nil || !strings.Contains(string(out), want) {
			t.Errorf("%d documents: AppendRerank = %s, %v; want %s", tt.docs, out, err, want)
		}
	}
}

func TestAppendRerankRefusesNonFiniteScores(t *testing.T) {
	zero := float32(0)
	req := &gateway.RerankRequest{Query: "q", Documents: []string{"a", "b"}}
	out, err := Codec{}.AppendRerank(nil, &gateway.RerankResult{Scores: []float32{0.5, zero / zero}}, req, "m")
	var ge *gateway.Error
	if !errors.As(err, &ge) || ge.Kind != gateway.Backend {
		t.Fatalf("AppendRerank(NaN) = %s, %v; want a Backend error", out, err)
	}
	status, body := Codec{}.ErrorResponse(ge)
	if status != 500 || string(body) != `{"message":"score is NaN"}` {
		t.Errorf("ErrorResponse = %d %s", status, body)
	}
}

func TestParam(t *testing.T) {
	for in, want := range map[string]string{"texts": "documents", "texts[3]": "documents[3]", "query": "query", "textsx": "textsx", "": ""} {
		if got := Param(in); got != want {
			t.Errorf("Param(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzDecodeRerank(f *testing.F) {
	f.Add([]byte(`{"model":"m","query":"q","documents":["a",{"text":"b","x":1},""],"top_n":2,"return_documents":true,"max_tokens_per_doc":9}`))
	f.Add([]byte(`{"query":" ","documents":[null,{"text":null}],"top_n":0}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		lim := codectest.Limits()
		req, err := Codec{}.DecodeRerank(body, lim)
		if err == nil {
			err = req.Validate(lim)
		}
		if err != nil {
			var ge *gateway.Error
			if !errors.As(err, &ge) {
				t.Fatalf("DecodeRerank(%q) error = %v (%T), want a *gateway.Error", body, err, err)
			}
			return
		}
		if n := len(req.Documents); n == 0 || n > lim.MaxClientBatch || strings.TrimSpace(req.Query) == "" || req.TopN < 0 || req.MaxTokensPerDoc < 1 {
			t.Fatalf("DecodeRerank(%q) = %+v passed validation", body, req)
		}
		out, err := Codec{Version: 2}.AppendRerank(nil, &gateway.RerankResult{Scores: make([]float32, len(req.Documents))}, req, "m")
		if err != nil || !json.Valid(out) {
			t.Fatalf("AppendRerank for %q = %s, %v", body, out, err)
		}
	})
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }
