package auth_test

import (
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/embedgate/embedgate/gateway/auth"
)

func ExampleKeys_Match() {
	keys, _ := auth.New([]auth.KeyEntry{
		{Key: auth.Key{Name: "alice", RPS: 10}, Hash: sha256.Sum256([]byte("sk-alice"))},
		{Key: auth.Key{Name: "retired", Disabled: true}, Hash: sha256.Sum256([]byte("sk-retired"))},
	})
	for _, header := range []string{"Bearer sk-alice", "bearer sk-retired", "Bearer sk-guess", "Basic xyz"} {
		presented, _ := auth.FromHeaders(header, "")
		k, err := keys.Match(presented)
		switch {
		case errors.Is(err, auth.ErrDisabled):
			fmt.Println("401 disabled:", k.Name)
		case err != nil:
			fmt.Println("401:", err)
		default:
			fmt.Println("ok:", k.Name, k.RPS)
		}
	}
	// Output:
	// ok: alice 10
	// 401 disabled: retired
	// 401: unknown API key
	// 401: no API key presented
}
