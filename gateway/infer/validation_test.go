package infer

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/embedgate/embedgate/gateway"
)

func TestUnknownPromptNameIsClipped(t *testing.T) {
	eng := startEngine(t, defaultOptions(), &fakeBackend{hidden: 8})
	name := strings.Repeat("p", 100_000)
	_, terr := eng.Tokenize(context.Background(), &gateway.TokenizeRequest{Inputs: []string{"a"}, PromptName: name})
	_, eerr := eng.Embed(context.Background(), &gateway.EmbedRequest{Inputs: texts("a"), PromptName: name})
	for _, err := range []error{terr, eerr} {
		var ge *gateway.Error
		if !errors.As(err, &ge) || ge.Kind != gateway.Validation || ge.Param != "prompt_name" {
			t.Fatalf("unknown prompt name: %.300v, want Validation about prompt_name", err)
		}
		if len(ge.Msg) >= 200 {
			t.Errorf("message is %d bytes, want under 200: %.300s", len(ge.Msg), ge.Msg)
		}
		if !strings.Contains(ge.Msg, "(100000 bytes)") || !strings.Contains(ge.Msg, "query") {
			t.Errorf("message %q does not say the name's length and the model's prompts", ge.Msg)
		}
	}
}
