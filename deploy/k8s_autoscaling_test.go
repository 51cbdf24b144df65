package deploy

// The autoscalers of the Kubernetes manifests (k8s/, rendered by
// k8s_test.go): their Pods metrics come from the prometheus-adapter rules
// (k8s/prometheus-adapter.yaml), made from metrics that exist.

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// adapterRule is one prometheus-adapter rule (its config's rules[]).
type adapterRule struct {
	SeriesQuery string `json:"seriesQuery"`
	Resources   struct {
		Overrides map[string]struct {
			Resource string `json:"resource"`
		} `json:"overrides"`
	} `json:"resources"`
	Name struct {
		Matches string `json:"matches"`
		As      string `json:"as"`
	} `json:"name"`
	MetricsQuery string `json:"metricsQuery"`
}

// adapterRules reads k8s/prometheus-adapter.yaml strictly, as the values
// of prometheus-adapter's Helm chart, and keys the rules by the metric
// each serves.
func adapterRules(t *testing.T) map[string]adapterRule {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("k8s", "prometheus-adapter.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values struct {
		Prometheus struct {
			URL  string `json:"url"`
			Port int    `json:"port"`
		} `json:"prometheus"`
		Rules struct {
			Default bool          `json:"default"`
			Custom  []adapterRule `json:"custom"`
		} `json:"rules"`
	}
	if err := yaml.UnmarshalStrict(b, &values); err != nil {
		t.Fatalf("prometheus-adapter.yaml: %v", err)
	}
	rules := map[string]adapterRule{}
	for _, r := range values.Rules.Custom {
		series, _, _ := strings.Cut(r.SeriesQuery, "{")
		if re, err := regexp.Compile(r.Name.Matches); err != nil || !re.MatchString(series) {
			t.Errorf("rule for %s: name.matches %q does not match it (%v)", series, r.Name.Matches, err)
		}
		for _, label := range []string{"namespace", "pod"} {
			if r.Resources.Overrides[label].Resource != label {
				t.Errorf("rule for %s: label %s is not mapped to the %s resource", series, label, label)
			}
		}
		if !strings.Contains(r.MetricsQuery, "<<.LabelMatchers>>") || !strings.Contains(r.MetricsQuery, "by (<<.GroupBy>>)") {
			t.Errorf("rule for %s: metricsQuery %q, want <<.LabelMatchers>> and by (<<.GroupBy>>)", series, r.MetricsQuery)
		}
		as := r.Name.As
		if as == "" {
			as = series
		}
		rules[as] = r
	}
	return rules
}

// promName is a metric name followed by its label matchers in a query.
var promName = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\{`)

// TestK8sAutoscaling: the gateway scales on CPU and its queue, Triton on
// its queue time; every Pods metric is a prometheus-adapter rule's, made
// from metrics the gateway or Triton export.
func TestK8sAutoscaling(t *testing.T) {
	rules := adapterRules(t)
	each(t, func(t *testing.T, m *manifests, overlay bool) {
		for name, wantSeries := range map[string]string{"embedgate": "embedgate_queue_tokens", "triton": "nv_inference_queue_duration_us"} {
			h := m.autoscalers[name]
			if h == nil {
				t.Fatalf("no autoscaler %s", name)
			}
			var pods []string
			for _, mt := range h.Spec.Metrics {
				if mt.Type == autoscalingv2.PodsMetricSourceType {
					pods = append(pods, mt.Pods.Metric.Name)
				}
			}
			if len(pods) != 1 {
				t.Fatalf("autoscaler %s: Pods metrics %v, want one", name, pods)
			}
			r, ok := rules[pods[0]]
			if !ok {
				t.Errorf("autoscaler %s: metric %s is no prometheus-adapter rule's", name, pods[0])
				continue
			}
			if series, _, _ := strings.Cut(r.SeriesQuery, "{"); series != wantSeries {
				t.Errorf("autoscaler %s: metric %s is made from %s, want %s", name, pods[0], series, wantSeries)
			}
			query := strings.ReplaceAll(r.MetricsQuery, "<<.Series>>", wantSeries)
			for _, match := range promName.FindAllStringSubmatch(query, -1) {
				checkExported(t, match[1])
			}
		}
		hasCPU := slices.ContainsFunc(m.autoscalers["embedgate"].Spec.Metrics, func(mt autoscalingv2.MetricSpec) bool {
			return mt.Type == autoscalingv2.ResourceMetricSourceType && mt.Resource.Name == corev1.ResourceCPU
		})
		if !hasCPU {
			t.Error("autoscaler embedgate does not scale on CPU")
		}
	})
}

// checkExported: an embedgate_ metric is declared by the gateway's
// inference metrics (its name a string there), an nv_ one is one Triton
// documents (testdata/triton-metrics.txt, one name a line).
func checkExported(t *testing.T, name string) {
	t.Helper()
	file := filepath.Join("testdata", "triton-metrics.txt")
	if strings.HasPrefix(name, "embedgate_") {
		file = filepath.Join("..", "gateway", "infer", "metrics.go")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)("|^)` + regexp.QuoteMeta(name) + `("|$)`).Match(b) {
		t.Errorf("the adapter reads %s, which %s does not export", name, file)
	}
}
