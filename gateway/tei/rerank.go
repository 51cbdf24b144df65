package tei

import (
	"encoding/json"
	"strconv"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/native"
)

// rerankRequest is TEI's RerankRequest (router/src/http/types.rs), field
// for field, plus model, which picks the served model as on /embed.
// TEI's raw_scores and return_text are plain bools there; null reads as
// the default here, as every optional field of ours does.
type rerankRequest struct {
	Query               *string          `json:"query"`
	Texts               texts            `json:"texts"`
	Truncate            *bool            `json:"truncate"`
	TruncationDirection native.Direction `json:"truncation_direction"`
	RawScores           *bool            `json:"raw_scores"`
	ReturnText          *bool            `json:"return_text"`
	Model               *string          `json:"model"`
}

// texts is TEI's texts: a list of strings (an empty string among them is a
// text like any other, as TEI takes it).
type texts struct {
	list []string
	set  bool // present and not null
}

// UnmarshalJSON implements json.Unmarshaler, naming the offending text.
func (t *texts) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		*t = texts{}
		return nil
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return gateway.Errorf(gateway.Validation, "texts", "expected a list of strings")
	}
	list := make([]string, len(raw))
	for i, r := range raw {
		// A null would decode to "" without complaint: only a string is a text.
		if len(r) == 0 || r[0] != '"' || json.Unmarshal(r, &list[i]) != nil {
			return gateway.Errorf(gateway.Validation, "texts["+strconv.Itoa(i)+"]", "expected a string")
		}
	}
	*t = texts{list: list, set: true}
	return nil
}

// DecodeRerank parses a POST /rerank body: the shape and types of its
// fields. How many texts it may hold is gateway.RerankRequest.Validate's
// to say (empty texts 400, too many 413), in TEI's field names already.
// truncate defaults to true: a pair longer than the model takes is cut,
// and refused (422) only when the client says truncate false.
func (Codec) DecodeRerank(body []byte, _ gateway.Limits) (*gateway.RerankRequest, error) {
	var w rerankRequest
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, native.DecodeError(err)
	}
	switch {
	case w.Query == nil:
		return nil, gateway.Errorf(gateway.Validation, "query", "missing field")
	case !w.Texts.set:
		return nil, gateway.Errorf(gateway.Validation, "texts", "missing field")
	}
	req := &gateway.RerankRequest{
		Query:     *w.Query,
		Documents: w.Texts.list,
		Truncate:  true,
		Direction: gateway.Direction(w.TruncationDirection),
	}
	if w.Truncate != nil {
		req.Truncate = *w.Truncate
	}
	if w.RawScores != nil {
		req.RawScores = *w.RawScores
	}
	if w.ReturnText != nil {
		req.ReturnDocuments = *w.ReturnText
	}
	if w.Model != nil {
		req.Model = *w.Model
	}
	return req, nil
}

// AppendRerank appends TEI's RerankResponse: [{"index","text"?,"score"}],
// the fields in TEI's Rank order, text only when return_text asked for
// it, every text ranked by score, highest first, ties in TEI's order (the
// later text first: native.LaterFirst).
func (Codec) AppendRerank(dst []byte, res *gateway.RerankResult, req *gateway.RerankRequest, _ string) ([]byte, error) {
	order, err := native.Rank(res, req, native.LaterFirst)
	if err != nil {
		return dst, err
	}
	dst = append(dst, '[')
	for k, i := range order {
		if k > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, `{"index":`...)
		dst = strconv.AppendInt(dst, int64(i), 10)
		if req.ReturnDocuments {
			dst = append(dst, `,"text":`...)
			dst = native.AppendString(dst, req.Documents[i])
		}
		dst = append(dst, `,"score":`...)
		dst, _ = native.AppendFloat(dst, res.Scores[i]) // finite: Rank checked
		dst = append(dst, '}')
	}
	return append(dst, ']'), nil
}
