package gateway

import (
	"strings"
	"testing"
)

func TestRerankValidate(t *testing.T) {
	lim := Limits{MaxClientBatch: 2}
	cases := []struct {
		name  string
		req   RerankRequest
		kind  Kind
		param string
		ok    bool
	}{
		{name: "valid", req: RerankRequest{Query: "q", Documents: []string{"a", "b"}}, ok: true},
		{name: "empty document is valid", req: RerankRequest{Query: "q", Documents: []string{""}}, ok: true},
		{name: "no documents", req: RerankRequest{Query: "q"}, kind: Empty, param: "texts"},
		{name: "too many", req: RerankRequest{Query: "q", Documents: []string{"a", "b", "c"}}, kind: TooLarge, param: "texts"},
		{name: "empty query", req: RerankRequest{Documents: []string{"a"}}, kind: Empty, param: "query"},
		{name: "negative top_n", req: RerankRequest{Query: "q", Documents: []string{"a"}, TopN: -1}, kind: Validation, param: "top_n"},
		{name: "negative max tokens", req: RerankRequest{Query: "q", Documents: []string{"a"}, MaxTokensPerDoc: -1}, kind: Validation, param: "max_tokens_per_doc"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.req.Validate(lim)
			if c.ok {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			e, isErr := err.(*Error)
			if !isErr || e.Kind != c.kind || e.Param != c.param {
				t.Fatalf("Validate = %#v, want kind %v param %q", err, c.kind, c.param)
			}
		})
	}
}

func TestWrongTaskError(t *testing.T) {
	e := WrongTaskError("bge", TaskRerank)
	if e.Kind != WrongTask || !strings.Contains(e.Msg, "`bge` is a rerank model: it does not embed") {
		t.Fatalf("rerank model: %#v", e)
	}
	e = WrongTaskError("mini", TaskEmbed)
	if e.Kind != WrongTask || !strings.Contains(e.Msg, "`mini` is an embedding model: it does not rerank") ||
		!strings.Contains(e.Msg, "model is not a re-ranker model") {
		t.Fatalf("embedding model: %#v", e)
	}
	if WrongTask.String() != "WrongTask" {
		t.Fatalf("String = %q", WrongTask.String())
	}
}
