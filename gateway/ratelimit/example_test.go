package ratelimit_test

import (
	"context"
	"fmt"

	"github.com/embedgate/embedgate/gateway/ratelimit"
)

// Example charges one API key's requests and tokens the way the server
// does: one request per HTTP request, then its tokens once they are
// counted. A key's own limits fill in over the gateway's defaults.
func Example() {
	lim := ratelimit.NewMemory(ratelimit.MemoryOptions{}) // or ratelimit.NewRedis(url, ...), shared by replicas
	defaults := ratelimit.Limit{RPS: 1, Burst: 50, TPM: 1000}
	alice := ratelimit.Limit{Burst: 2}.Or(defaults)
	ctx := context.Background()

	for range 3 {
		req, _ := lim.AllowRequest(ctx, "key:alice", alice)
		if !req.Allowed {
			fmt.Printf("refused: %d/%d requests left, retry after %v\n", req.Remaining, req.Limit, req.RetryAfter.Round(100e6))
			continue
		}
		tok, _ := lim.AllowTokens(ctx, "key:alice", alice, 300) // after tokenization
		fmt.Printf("allowed: %d/%d requests left, %d/%d tokens left\n", req.Remaining, req.Limit, tok.Remaining, tok.Limit)
	}
	// Output:
	// allowed: 1/2 requests left, 700/1000 tokens left
	// allowed: 0/2 requests left, 400/1000 tokens left
	// refused: 0/2 requests left, retry after 1s
}
