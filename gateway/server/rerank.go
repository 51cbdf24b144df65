package server

import (
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/embedgate/embedgate/gateway"
)

// RerankCodec is one rerank API's shape: TEI's, or Cohere's (which Jina
// speaks too) in its v1 or v2 version.
type RerankCodec interface {
	dialect
	// DecodeRerank parses a request body, checking the shape and types
	// of its fields; errors are *gateway.Error naming the field.
	DecodeRerank(body []byte, lim gateway.Limits) (*gateway.RerankRequest, error)
	// AppendRerank appends the 200 body for res to dst: the documents
	// sorted by score, as the dialect answers.
	AppendRerank(dst []byte, res *gateway.RerankResult, req *gateway.RerankRequest, model string) ([]byte, error)
}

// handleRerank serves one rerank route in codec's shape: the steps every
// model route shares (begin), with the default reranker for a request
// naming no model, then the model's engine, which pairs the query with
// each document, tokenizes, charges every pair's tokens, admits, batches
// the pairs as rows and scores them.
func (s *Server) handleRerank(codec RerankCodec) fiber.Handler {
	return func(c *fiber.Ctx) error {
		start := time.Now()
		req, m, rec, err := begin(s, c, gateway.TaskRerank, codec.DecodeRerank, func(req *gateway.RerankRequest, rec *record) string {
			rec.inputs = len(req.Documents)
			return req.Model
		})
		if err != nil {
			return err
		}
		req.Charge = s.charger(rec, m)
		res, err := m.eng.Rerank(c.UserContext(), req)
		if err != nil {
			return err
		}
		rec.tokens, rec.timings = res.Usage.PromptTokens, res.Timings
		return s.send(c, start, res.Usage, res.Timings, func(dst []byte) ([]byte, error) {
			return codec.AppendRerank(dst, res, req, m.name())
		})
	}
}
