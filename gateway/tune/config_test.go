package tune

import (
	"strings"
	"testing"

	"github.com/embedgate/embedgate/tritonstubs"
)

func TestSuggestAndDiff(t *testing.T) {
	cur := &tritonstubs.ModelConfig{Name: "m", MaxBatchSize: 32,
		ModelWarmup:   []*tritonstubs.ModelWarmup{{Name: "full", BatchSize: 32}, {Name: "one", BatchSize: 1}},
		InstanceGroup: []*tritonstubs.ModelInstanceGroup{{Count: 1, Kind: tritonstubs.ModelInstanceGroup_KIND_GPU}}}
	r := Recommendation{Triton: []Setting{{MaxBatchSize, 16, ""}, {MaxQueueDelay, 0, ""}, {InstanceCount, 2, ""}}}
	sug := Suggest(cur, r)
	if cur.MaxBatchSize != 32 || cur.GetDynamicBatching() != nil {
		t.Error("Suggest changed the current config")
	}
	if sug.MaxBatchSize != 16 || sug.GetDynamicBatching() == nil || sug.GetDynamicBatching().GetMaxQueueDelayMicroseconds() != 0 || sug.InstanceGroup[0].Count != 2 ||
		sug.ModelWarmup[0].BatchSize != 16 || sug.ModelWarmup[1].BatchSize != 1 {
		t.Errorf("suggested %v", sug)
	}
	diff, err := ConfigDiff(cur, sug)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"- max_batch_size: 32", "+ max_batch_size: 16", "+ dynamic_batching: {}", "-   count: 1", "+   count: 2", `  name: "m"`} {
		if !strings.Contains(diff, want) {
			t.Errorf("diff lacks %q:\n%s", want, diff)
		}
	}
	if got := textLines([]byte("m:  {\n" + `  name:  "a  \"b  c"  x`)); got[1] != `  name: "a  \"b  c" x` {
		t.Errorf("textLines: %q", got)
	}
	if same, _ := ConfigDiff(cur, cur); same != "" {
		t.Errorf("diff of a config with itself:\n%s", same)
	}
	if got := diffLines([]string{"a", "b", "c", "d", "e", "f", "g", "h", "i"}, []string{"A", "b", "c", "d", "e", "f", "g", "h", "I"}); got != "- a\n+ A\n  b\n  c\n...\n  g\n  h\n- i\n+ I\n" {
		t.Errorf("diffLines:\n%s", got)
	}
}
