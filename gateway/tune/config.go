package tune

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/embedgate/embedgate/tritonstubs"
)

// Suggest returns a copy of cfg with the recommendation's Triton settings:
// max_batch_size (and no warmup batch above it), dynamic_batching's max_queue_delay_microseconds (adding
// dynamic_batching if cfg has none) and every instance group's count
// (adding one group when cfg has none).
func Suggest(cfg *tritonstubs.ModelConfig, r Recommendation) *tritonstubs.ModelConfig {
	out := proto.Clone(cfg).(*tritonstubs.ModelConfig)
	if v, ok := r.Value(MaxBatchSize); ok {
		out.MaxBatchSize = int32(v)
		// A warmup batch larger than max_batch_size fails the load.
		for _, w := range out.ModelWarmup {
			w.BatchSize = min(w.BatchSize, uint32(v))
		}
	}
	if v, ok := r.Value(MaxQueueDelay); ok {
		db := out.GetDynamicBatching()
		if db == nil {
			db = &tritonstubs.ModelDynamicBatching{}
			out.SchedulingChoice = &tritonstubs.ModelConfig_DynamicBatching{DynamicBatching: db}
		}
		db.MaxQueueDelayMicroseconds = uint64(v)
	}
	if v, ok := r.Value(InstanceCount); ok {
		if len(out.InstanceGroup) == 0 {
			out.InstanceGroup = []*tritonstubs.ModelInstanceGroup{{}}
		}
		for _, g := range out.InstanceGroup {
			g.Count = int32(v)
		}
	}
	return out
}

// ConfigDiff is the suggested config against the current one, both in
// text format as prototext writes them (so only what changed differs): a
// unified-style diff, "" when nothing changes.
func ConfigDiff(current, suggested *tritonstubs.ModelConfig) (string, error) {
	opts := prototext.MarshalOptions{Multiline: true, Indent: "  "}
	a, err := opts.Marshal(current)
	if err != nil {
		return "", fmt.Errorf("tune: current config: %w", err)
	}
	b, err := opts.Marshal(suggested)
	if err != nil {
		return "", fmt.Errorf("tune: suggested config: %w", err)
	}
	return diffLines(textLines(a), textLines(b)), nil
}

// textLines splits prototext output into lines with single spaces between
// tokens outside quoted strings: prototext inserts a random extra space,
// on purpose, so that no one relies on its exact output.
func textLines(b []byte) []string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for i, l := range lines {
		body := strings.TrimLeft(l, " ")
		var sb strings.Builder
		sb.WriteString(l[:len(l)-len(body)])
		quoted, escaped, space := false, false, false
		for _, r := range body {
			switch {
			case quoted: // copied as it is, up to the closing quote
				switch {
				case escaped:
					escaped = false
				case r == '\\':
					escaped = true
				case r == '"':
					quoted = false
				}
			case r == ' ':
				if space {
					continue
				}
				space = true
			default:
				space, quoted = false, r == '"'
			}
			sb.WriteRune(r)
		}
		lines[i] = sb.String()
	}
	return lines
}

// maxDiffLines bounds the quadratic diff; model configs are a few hundred
// lines at most.
const maxDiffLines = 5000

// diffLines prints the lines removed from a ("-") and added in b ("+"),
// each change with two lines of context, from a longest common
// subsequence.
func diffLines(a, b []string) string {
	if len(a) > maxDiffLines || len(b) > maxDiffLines {
		return fmt.Sprintf("(configs of %d and %d lines: too long to diff)\n", len(a), len(b))
	}
	// lcs[i][j] is the LCS length of a[i:] and b[j:].
	lcs := make([][]int, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	type line struct {
		op   byte
		text string
	}
	var lines []line
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			lines = append(lines, line{' ', a[i]})
			i, j = i+1, j+1
		case i < len(a) && (j == len(b) || lcs[i+1][j] >= lcs[i][j+1]):
			lines = append(lines, line{'-', a[i]})
			i++
		default:
			lines = append(lines, line{'+', b[j]})
			j++
		}
	}
	const context = 2
	var sb strings.Builder
	last := -1 // the last line printed
	for k, l := range lines {
		if l.op == ' ' {
			continue
		}
		from := max(k-context, last+1)
		if last >= 0 && from > last+1 {
			sb.WriteString("...\n")
		}
		for c := from; c < k; c++ {
			fmt.Fprintf(&sb, "  %s\n", lines[c].text)
		}
		fmt.Fprintf(&sb, "%c %s\n", l.op, l.text)
		last = k
		for c := k + 1; c < len(lines) && c <= k+context && lines[c].op == ' '; c++ {
			fmt.Fprintf(&sb, "  %s\n", lines[c].text)
			last = c
		}
	}
	return sb.String()
}
