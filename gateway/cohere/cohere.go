// Package cohere is the codec of Cohere's rerank API, POST /v1/rerank and
// /v2/rerank, which Jina's rerank API shares (on /v1/rerank): request
// decoding, the response every one of their clients reads (Cohere's
// fields plus Jina's model and usage), and Cohere's error body
// {"message": "..."}. It imports only gateway and native (whose wire
// pieces it shares).
//
// The shapes mirror Cohere's API definition as its official clients carry
// it (the cohere-ai TypeScript client's RerankRequest,
// V2RerankRequest, RerankResponse, ApiMeta) and Jina's rerank reference.
package cohere

import (
	"crypto/rand"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/native"
)

// DefaultMaxTokensPerDoc is max_tokens_per_doc when the request leaves it
// out: Cohere's default ("Defaults to 4096. Long documents will be
// automatically truncated to the specified number of tokens.").
const DefaultMaxTokensPerDoc = 4096

// documentsPerSearchUnit is what Cohere bills one search unit for: a query
// with up to 100 documents.
const documentsPerSearchUnit = 100

// Codec decodes and encodes one version of the API: Version 1 (or 0, so
// the zero value is ready) for /v1/rerank, 2 for /v2/rerank. Both take the
// same request (v1's, and v2's as it was until mid-2025, with objects
// among the documents and return_documents; current v2 clients send a
// subset of it) and answer the same body but for meta.api_version.
type Codec struct {
	Version int
}

// request is RerankRequest and V2RerankRequest, the fields this gateway
// reads: model (the served model; absent or null = the default reranker),
// query, documents, top_n, return_documents, max_tokens_per_doc. The rest
// (rank_fields, max_chunks_per_doc, priority) are accepted and ignored.
type request struct {
	Model           *string   `json:"model"`
	Query           *string   `json:"query"`
	Documents       documents `json:"documents"`
	TopN            *int      `json:"top_n"`
	ReturnDocuments *bool     `json:"return_documents"`
	MaxTokensPerDoc *int      `json:"max_tokens_per_doc"`
}

// documents is RerankRequestDocumentsItem[]: each a string, or an object
// whose "text" is the document (RerankDocument, a map of strings: its
// other fields are ignored, and so is rank_fields, which would pick them).
type documents struct {
	list []string
	set  bool // present and not null
}

// document is the object form of a document.
type document struct {
	Text *string `json:"text"`
}

// UnmarshalJSON implements json.Unmarshaler, naming the offending document.
func (d *documents) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		*d = documents{}
		return nil
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return gateway.Errorf(gateway.Validation, "documents", "expected a list of strings or of objects with a text field")
	}
	list := make([]string, len(raw))
	for i, r := range raw {
		text, ok := documentText(r)
		if !ok {
			return gateway.Errorf(gateway.Validation, "documents["+strconv.Itoa(i)+"]", "expected a string or an object with a string text field")
		}
		list[i] = text
	}
	*d = documents{list: list, set: true}
	return nil
}

// documentText is the text of one document: the string, or the object's
// text. A null would decode to "" without complaint, so the first byte
// decides what r may be.
func documentText(r json.RawMessage) (string, bool) {
	switch {
	case len(r) > 0 && r[0] == '"':
		var s string
		return s, json.Unmarshal(r, &s) == nil
	case len(r) > 0 && r[0] == '{':
		var obj document
		if json.Unmarshal(r, &obj) != nil || obj.Text == nil {
			return "", false
		}
		return *obj.Text, true
	}
	return "", false
}

// DecodeRerank parses a /v1/rerank or /v2/rerank body: the shape and
// types of its fields, and what only Cohere refuses (see check). How many
// documents it may hold is gateway.RerankRequest.Validate's to say.
// max_tokens_per_doc defaults to DefaultMaxTokensPerDoc; a document
// longer, or longer than the model takes beside the query, is cut, never
// refused.
func (Codec) DecodeRerank(body []byte, _ gateway.Limits) (*gateway.RerankRequest, error) {
	var w request
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, native.DecodeError(err)
	}
	if err := w.check(); err != nil {
		return nil, err
	}
	req := &gateway.RerankRequest{
		Query:           *w.Query,
		Documents:       w.Documents.list,
		Truncate:        true,
		MaxTokensPerDoc: DefaultMaxTokensPerDoc,
	}
	if w.Model != nil {
		req.Model = *w.Model
	}
	if w.TopN != nil {
		req.TopN = *w.TopN
	}
	if w.ReturnDocuments != nil {
		req.ReturnDocuments = *w.ReturnDocuments
	}
	if w.MaxTokensPerDoc != nil {
		req.MaxTokensPerDoc = *w.MaxTokensPerDoc
	}
	return req, nil
}

// check refuses what Cohere refuses beyond the domain's rules: no query,
// a query of only whitespace (Cohere's own message, 400), and a top_n or
// max_tokens_per_doc below 1 (0 would read as "all" and "no cut" in the
// domain request; on the wire it is a mistake).
func (w *request) check() error {
	switch {
	case w.Query == nil:
		return gateway.Errorf(gateway.Validation, "query", "missing field")
	case strings.TrimSpace(*w.Query) == "":
		return gateway.Errorf(gateway.Validation, "", "invalid request: query must not be empty or be only whitespace")
	case !w.Documents.set:
		return gateway.Errorf(gateway.Validation, "documents", "missing field")
	case w.TopN != nil && *w.TopN < 1:
		return gateway.Errorf(gateway.Validation, "", "invalid request: top_n must be at least 1 - received %d", *w.TopN)
	case w.MaxTokensPerDoc != nil && *w.MaxTokensPerDoc < 1:
		return gateway.Errorf(gateway.Validation, "", "invalid request: max_tokens_per_doc must be at least 1 - received %d", *w.MaxTokensPerDoc)
	}
	return nil
}

// AppendRerank appends the response:
//
//	{"id":"<uuid>","results":[{"index":i,"relevance_score":s,"document"?:{"text":..}}],
//	 "meta":{"api_version":{"version":"1"|"2"},"billed_units":{"search_units":n}},
//	 "model":"<served name>","usage":{"prompt_tokens":t,"total_tokens":t}}
//
// id, results and meta are Cohere's RerankResponse (v2's api_version also
// says is_experimental false, as Cohere's v2 answers do); model and usage
// are Jina's, which Cohere's clients pass through. results are ranked by
// score, highest first (ties in input order), cut to top_n; document only
// when return_documents asked for it (Cohere's default is false on both
// versions).
func (c Codec) AppendRerank(dst []byte, res *gateway.RerankResult, req *gateway.RerankRequest, model string) ([]byte, error) {
	order, err := native.Rank(res, req, native.EarlierFirst)
	if err != nil {
		return dst, err
	}
	dst = append(dst, `{"id":`...)
	dst = native.AppendString(dst, newID())
	dst = append(dst, `,"results":[`...)
	for k, i := range order {
		if k > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"index":`...)
		dst = strconv.AppendInt(dst, int64(i), 10)
		dst = append(dst, `,"relevance_score":`...)
		dst, _ = native.AppendFloat(dst, res.Scores[i]) // finite: Rank checked
		if req.ReturnDocuments {
			dst = append(dst, `,"document":{"text":`...)
			dst = native.AppendString(dst, req.Documents[i])
			dst = append(dst, '}')
		}
		dst = append(dst, '}')
	}
	dst = append(dst, `],"meta":{"api_version":{"version":`...)
	dst = native.AppendString(dst, strconv.Itoa(max(c.Version, 1)))
	if c.Version >= 2 {
		dst = append(dst, `,"is_experimental":false`...)
	}
	dst = append(dst, `},"billed_units":{"search_units":`...)
	units := (len(req.Documents) + documentsPerSearchUnit - 1) / documentsPerSearchUnit
	dst = strconv.AppendInt(dst, int64(units), 10)
	dst = append(dst, `}},"model":`...)
	dst = native.AppendString(dst, model)
	dst = append(dst, `,"usage":`...)
	dst = native.AppendUsage(dst, res.Usage)
	return append(dst, '}'), nil
}

// ErrorResponse is Cohere's error: {"message":"..."} (its API reference:
// "the response will be an error object in the following shape"), with
// the status of the error table's OpenAI column (Cohere's statuses are the
// same: 400 for a bad request, 401, 404, 429, 500, 503...) and params in
// Cohere's names.
func (Codec) ErrorResponse(e *gateway.Error) (int, []byte) {
	dst := append([]byte(nil), `{"message":`...)
	dst = native.AppendString(dst, native.Message(Param(e.Param), e))
	return native.WireOf(e.Kind).OpenAIStatus, append(dst, '}')
}

// Param is a native param path in Cohere's names: the domain names the
// documents "texts", as TEI does; Cohere calls them "documents".
func Param(native string) string {
	if rest, ok := strings.CutPrefix(native, "texts"); ok && (rest == "" || rest[0] == '[') {
		return "documents" + rest
	}
	return native
}

// newID is a response id as Cohere's are: a random (version 4) UUID.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])  // never fails: crypto/rand crashes the program rather than return an error
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	const hex = "0123456789abcdef"
	out := make([]byte, 0, 36)
	for i, c := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out = append(out, '-')
		}
		out = append(out, hex[c>>4], hex[c&0xf])
	}
	return string(out)
}
