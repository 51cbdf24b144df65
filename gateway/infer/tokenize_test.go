package infer

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/embedgate/embedgate/gateway"
)

func TestTokenizeTakesAnAdmissionPlace(t *testing.T) {
	opts := defaultOptions()
	opts.MaxConcurrent = 1
	eng := startEngine(t, opts, &fakeBackend{hidden: 8})
	req := &gateway.TokenizeRequest{Inputs: []string{"hello"}, AddSpecialTokens: true, Truncate: true}

	if !eng.gate.TryEnter() { // the one place, held by another request
		t.Fatal("the gate is full before any request")
	}
	_, err := eng.Tokenize(context.Background(), req)
	var ge *gateway.Error
	if !errors.As(err, &ge) || ge.Kind != gateway.Overloaded || ge.RetryAfter <= 0 {
		t.Fatalf("Tokenize with the gate full = %v, want Overloaded with a Retry-After", err)
	}
	eng.gate.Done()

	if _, err := eng.Tokenize(context.Background(), req); err != nil {
		t.Fatalf("Tokenize with the gate free = %v", err)
	}
	tooLongReq := &gateway.TokenizeRequest{Inputs: []string{strings.Repeat("word ", 100)}}
	if _, err := eng.Tokenize(context.Background(), tooLongReq); gateway.KindOf(err) != gateway.Validation {
		t.Fatalf("Tokenize(too long) = %v, want Validation", err)
	}
	if n := eng.gate.InFlight(); n != 0 {
		t.Errorf("places taken after Tokenize returned = %d, want 0", n)
	}
}

func TestTokenizeTruncatesBothSides(t *testing.T) {
	eng := startEngine(t, defaultOptions(), &fakeBackend{hidden: 8}) // max input length 16
	wide := defaultOptions()
	wide.MaxInputLength, wide.MaxBatchTokens = 512, 512
	ref := startEngine(t, wide, &fakeBackend{hidden: 8})

	text := "the quick brown fox jumps over the lazy dog while twelve wizards quietly vex a jovial king"
	for _, tt := range []struct {
		name    string
		prompt  string
		special bool
	}{
		{"special tokens", "", true},
		{"no special tokens", "", false},
		{"prompt", "query", true},
	} {
		full, err := ref.Tokenize(context.Background(), &gateway.TokenizeRequest{Inputs: []string{text}, AddSpecialTokens: tt.special, PromptName: tt.prompt})
		if err != nil {
			t.Fatal(err)
		}
		seq := full[0] // the whole text's tokens, special ones at the ends
		if tt.special {
			seq = seq[1 : len(seq)-1]
		}
		keep := 16
		if tt.special {
			keep -= 2
		}
		if len(seq) <= keep {
			t.Fatalf("%s: the text is only %d tokens: too short to truncate", tt.name, len(seq))
		}
		for _, dir := range []gateway.Direction{gateway.Right, gateway.Left} {
			got, err := eng.Tokenize(context.Background(), &gateway.TokenizeRequest{
				Inputs: []string{text}, AddSpecialTokens: tt.special, PromptName: tt.prompt, Truncate: true, Direction: dir,
			})
			if err != nil {
				t.Fatalf("%s, direction %d: %v", tt.name, dir, err)
			}
			toks := got[0]
			if len(toks) != 16 {
				t.Fatalf("%s, direction %d: %d tokens, want the max input length, 16", tt.name, dir, len(toks))
			}
			if tt.special {
				if !toks[0].Special || !toks[15].Special {
					t.Errorf("%s, direction %d: ends %+v, %+v, want special tokens", tt.name, dir, toks[0], toks[15])
				}
				toks = toks[1:15]
			}
			want := seq[:keep] // right: the first tokens
			if dir == gateway.Left {
				want = seq[len(seq)-keep:] // left: the last ones
			}
			for j := range want {
				if toks[j] != want[j] {
					t.Errorf("%s, direction %d: token %d = %+v, want %+v (offsets into the whole text)", tt.name, dir, j, toks[j], want[j])
				}
			}
		}
	}
}

func TestTokenizeRefusesTooLongWithoutTruncate(t *testing.T) {
	eng := startEngine(t, defaultOptions(), &fakeBackend{hidden: 8})
	_, err := eng.Tokenize(context.Background(), &gateway.TokenizeRequest{
		Inputs: []string{"short", strings.Repeat("word ", 100)}, AddSpecialTokens: true,
	})
	var ge *gateway.Error
	if !errors.As(err, &ge) || ge.Kind != gateway.Validation || ge.Param != "inputs[1]" {
		t.Fatalf("Tokenize(too long, no truncation) = %v, want Validation about inputs[1]", err)
	}
	if !strings.Contains(ge.Msg, "truncate") {
		t.Errorf("message %q does not say how to fix it", ge.Msg)
	}
}
