package infer

import (
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// New is the one check of the batch budget against the model's max input
// length, and its message names the flag the operator must change.
func TestNewChecksTheBudget(t *testing.T) {
	tests := []struct {
		name        string
		batchTokens int
		maxInput    int
		want        string
	}{
		{"fits", 16384, 512, ""},
		{"equal", 512, 512, ""},
		{"too small", 1384, 32768, "--max-batch-tokens (1384) is smaller than the model's max input length (32768): an input of full length could never be batched; raise --max-batch-tokens"},
		{"no length", 16384, 0, "the model's max input length is 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := defaultOptions()
			opts.MaxBatchTokens, opts.MaxInputLength = tt.batchTokens, tt.maxInput
			_, err := New(opts, loadTokenizer(t), &fakeBackend{hidden: 8}, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
			got := ""
			if err != nil {
				got = err.Error()
			}
			if !strings.Contains(got, tt.want) || (tt.want == "") != (err == nil) {
				t.Errorf("New(max batch tokens %d, max input %d) = %v, want %q", tt.batchTokens, tt.maxInput, err, tt.want)
			}
		})
	}
}
