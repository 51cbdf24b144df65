package openai_test

import (
	"fmt"

	"github.com/embedgate/embedgate/gateway"
	"github.com/embedgate/embedgate/gateway/openai"
)

// Example is a codec's whole job: an OpenAI body in, the domain request
// out (validated by gateway's one Validate), the result and errors back in
// OpenAI's shape.
func Example() {
	lim := gateway.Limits{MaxClientBatch: 8, MaxInputLength: 512, Dimensions: 4, DefaultTruncate: true}
	codec := openai.Codec{}

	req, err := codec.DecodeEmbed([]byte(`{"input":["hello","world"],"model":"bge-small-en-v1.5","dimensions":2}`), lim)
	if err == nil {
		err = req.Validate(lim)
	}
	fmt.Println(len(req.Inputs), "inputs,", req.Dimensions, "dimensions, error:", err)

	res := &gateway.EmbedResult{Embeddings: [][]float32{{0.6, 0.8}, {1, 0}}, Usage: gateway.Usage{PromptTokens: 6}}
	body, _ := codec.AppendEmbed(nil, res, req, "bge-small-en-v1.5")
	fmt.Println(string(body))

	req, _ = codec.DecodeEmbed([]byte(`{"input":["hello",""]}`), lim)
	status, body := codec.ErrorResponse(req.Validate(lim).(*gateway.Error))
	fmt.Println(status, string(body))
	// Output:
	// 2 inputs, 2 dimensions, error: <nil>
	// {"object":"list","data":[{"object":"embedding","embedding":[0.6,0.8],"index":0},{"object":"embedding","embedding":[1,0],"index":1}],"model":"bge-small-en-v1.5","usage":{"prompt_tokens":6,"total_tokens":6}}
	// 400 {"error":{"message":"input[1]: empty input","type":"invalid_request_error","param":"input[1]","code":null}}
}
