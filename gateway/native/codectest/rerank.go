package codectest

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"testing"

	"github.com/embedgate/embedgate/gateway"
)

// RerankCodec is a rerank dialect's codec, as the server drives it.
type RerankCodec interface {
	DecodeRerank(body []byte, lim gateway.Limits) (*gateway.RerankRequest, error)
	AppendRerank(dst []byte, res *gateway.RerankResult, req *gateway.RerankRequest, model string) ([]byte, error)
	ErrorResponse(e *gateway.Error) (status int, body []byte)
}

// RerankCase is one exchange of a fixture file: a body as a client sends
// it, what it decodes to, the scores the engine gives, and the exact
// status and body the client gets back. The body is either Request (JSON
// as written) or RequestText (any bytes, for malformed bodies). Error,
// instead of a body, is an error raised past the codec (a model of the
// wrong task, a full queue) that the dialect must render.
type RerankCase struct {
	Name  string `json:"name"`
	About string `json:"about"` // where the shape comes from
	// MaxClientBatch overrides Limits()'s 3 documents per request, for a
	// client's own example body with more.
	MaxClientBatch int             `json:"max_client_batch"`
	Request        json.RawMessage `json:"request"`
	RequestText    string          `json:"request_text"`
	Error          *CaseError      `json:"error"`
	Decoded        *Decoded        `json:"decoded"`
	Scores         []float32       `json:"scores"` // one per document, in input order
	PromptTokens   int             `json:"prompt_tokens"`
	Model          string          `json:"model"` // the served name the response reports
	Status         int             `json:"status"`
	Response       json.RawMessage `json:"response"` // compared byte for byte once compacted
}

// CaseError is a gateway.Error by its kind's name.
type CaseError struct {
	Kind  string `json:"kind"`
	Param string `json:"param"`
	Msg   string `json:"msg"`
}

// Decoded is a gateway.RerankRequest in JSON.
type Decoded struct {
	Model           string   `json:"model"`
	Query           string   `json:"query"`
	Documents       []string `json:"documents"`
	TopN            int      `json:"top_n"`
	ReturnDocuments bool     `json:"return_documents"`
	RawScores       bool     `json:"raw_scores"`
	Truncate        bool     `json:"truncate"`
	Left            bool     `json:"left"` // Direction Left
	MaxTokensPerDoc int      `json:"max_tokens_per_doc"`
}

func (d *Decoded) request() *gateway.RerankRequest {
	r := &gateway.RerankRequest{Model: d.Model, Query: d.Query, Documents: d.Documents, TopN: d.TopN,
		ReturnDocuments: d.ReturnDocuments, RawScores: d.RawScores, Truncate: d.Truncate, MaxTokensPerDoc: d.MaxTokensPerDoc}
	if d.Left {
		r.Direction = gateway.Left
	}
	return r
}

// RunRerankCases runs every case of the fixture file at path against c
// with Limits() (but for a case's MaxClientBatch): decode, then validate as the engine does, then encode
// the case's scores or the error. normalize, if set, rewrites what varies
// from one response to the next (an id) before the comparison; it fails
// t if that part is malformed.
func RunRerankCases(t *testing.T, c RerankCodec, path string, normalize func(t *testing.T, body []byte) []byte) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cases []RerankCase
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(cases) == 0 {
		t.Fatalf("%s holds no cases", path)
	}
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			status, body := exchange(t, c, &tc)
			if normalize != nil && status == 200 {
				body = normalize(t, body)
			}
			var want bytes.Buffer
			if err := json.Compact(&want, tc.Response); err != nil {
				t.Fatalf("the case's response is not JSON: %v", err)
			}
			if status != tc.Status || !bytes.Equal(body, want.Bytes()) {
				t.Errorf("got %d %s\nwant %d %s", status, body, tc.Status, want.Bytes())
			}
			if !json.Valid(body) {
				t.Errorf("body %s is not valid JSON", body)
			}
		})
	}
}

// exchange is what the server does with the case: its status and body.
func exchange(t *testing.T, c RerankCodec, tc *RerankCase) (int, []byte) {
	t.Helper()
	if tc.Error != nil {
		return c.ErrorResponse(&gateway.Error{Kind: kindNamed(t, tc.Error.Kind), Param: tc.Error.Param, Msg: tc.Error.Msg})
	}
	body := []byte(tc.RequestText)
	if tc.Request != nil {
		body = tc.Request
	}
	lim := Limits()
	if tc.MaxClientBatch > 0 {
		lim.MaxClientBatch = tc.MaxClientBatch
	}
	req, err := c.DecodeRerank(body, lim)
	if err == nil {
		err = req.Validate(lim)
	}
	if err != nil {
		if tc.Decoded != nil {
			t.Errorf("decode error %v, want %+v", err, tc.Decoded)
		}
		return c.ErrorResponse(asError(t, err))
	}
	if tc.Decoded == nil {
		t.Fatalf("decoded to %+v; the case says what it should decode to", req)
	}
	if want := tc.Decoded.request(); !reflect.DeepEqual(req, want) {
		t.Errorf("decoded to %+v, want %+v", req, want)
	}
	res := &gateway.RerankResult{Scores: tc.Scores, Usage: gateway.Usage{PromptTokens: tc.PromptTokens}}
	out, err := c.AppendRerank(nil, res, req, tc.Model)
	if err != nil {
		return c.ErrorResponse(asError(t, err))
	}
	return 200, out
}

func asError(t *testing.T, err error) *gateway.Error {
	t.Helper()
	var ge *gateway.Error
	if !errors.As(err, &ge) {
		t.Fatalf("error %v (%T) is not a *gateway.Error", err, err)
	}
	return ge
}

// kindNamed is the Kind whose String is name.
func kindNamed(t *testing.T, name string) gateway.Kind {
	t.Helper()
	for k := range gateway.Kind(64) {
		if k.String() == name {
			return k
		}
	}
	t.Fatalf("no kind named %q", name)
	return 0
}
