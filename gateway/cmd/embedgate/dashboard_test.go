package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/embedgate/embedgate/gateway/internal/redistest"
)

// The deploy files whose queries TestDashboardAndRulesUseRealMetrics
// checks, relative to this package, and Triton's documented metric names.
var (
	dashboardFile    = filepath.Join("..", "..", "..", "deploy", "grafana", "dashboards", "embedgate.json")
	rulesFile        = filepath.Join("..", "..", "..", "deploy", "prometheus", "rules.yml")
	tritonMetricList = filepath.Join("..", "..", "..", "deploy", "testdata", "triton-metrics.txt")
)

// TestDashboardAndRulesUseRealMetrics: every series the Grafana dashboard
// and the Prometheus rules query exists. The gateway's are taken from its
// real /metrics after embed traffic (misses and a cache hit) with the
// rate limiter and the cache on Redis, and from a gateway on two Triton
// replicas; Triton's from the names Triton
// documents; recorded ones must be recorded by the rules file. The labels
// a query selects on or aggregates by must be on the gateway series it
// names. A typo or a renamed metric leaves a panel or an alert silently
// empty; here it fails.
func TestDashboardAndRulesUseRealMetrics(t *testing.T) {
	t.Parallel()
	rds := redistest.Start(t)
	env := baseEnv(t)
	env["REDIS_URL"], env["CACHE"], env["CACHE_REDIS_URL"] = rds.URL(), "true", rds.URL()
	g := startGateway(t, env)
	for _, texts := range [][]string{{"alpha beta", "gamma"}, {"alpha beta", "delta"}} {
		if r := native(t, g, texts, ""); r.status != 200 {
			t.Fatalf("embed %v: status %d: %s", texts, r.status, r.body)
		}
	}
	r := g.get(t, "/metrics")
	if r.status != 200 {
		t.Fatalf("/metrics: status %d", r.status)
	}
	gateway := exposedLabels(string(r.body))
	// The per-replica series come from a gateway on a list of Triton
	// replicas.
	a, _ := startTriton(t)
	b, _ := startTriton(t)
	tenv := tritonEnv(t, a)
	tenv["TRITON_URL"] = a.Addr() + "," + b.Addr()
	tg := startGateway(t, tenv)
	if r := native(t, tg, []string{"alpha"}, ""); r.status != 200 {
		t.Fatalf("embed through Triton: status %d: %s", r.status, r.body)
	}
	for name, labels := range exposedLabels(string(tg.get(t, "/metrics").body)) {
		if gateway[name] == nil {
			gateway[name] = labels
		}
	}

	triton := map[string]bool{}
	for _, line := range strings.Split(readFile(t, tritonMetricList), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			triton[line] = true
		}
	}
	recorded, ruleExprs := ruleQueries(t)
	queries := append(dashboardQueries(t), ruleExprs...)
	if len(queries) < 20 {
		t.Fatalf("found %d queries in the dashboard and rules: the files or their parsing changed", len(queries))
	}
	for _, q := range queries {
		names := seriesNames(q)
		if len(names) == 0 {
			t.Errorf("query names no series: %s", q)
		}
		for _, name := range names {
			switch {
			case strings.HasPrefix(name, "embedgate_"):
				if gateway[name] == nil {
					t.Errorf("%s is not on the gateway's /metrics (query %s)", name, q)
				}
			case strings.HasPrefix(name, "nv_"):
				if !triton[name] {
					t.Errorf("%s is not a metric Triton documents (%s; query %s)", name, tritonMetricList, q)
				}
			case strings.Contains(name, ":"):
				if !recorded[name] {
					t.Errorf("%s is recorded by no rule in %s (query %s)", name, rulesFile, q)
				}
			case name == "up": // Prometheus's own, per scrape target
			default:
				t.Errorf("%s is neither the gateway's, Triton's nor recorded (query %s)", name, q)
			}
		}
		checkLabels(t, q, names, gateway)
	}
}

// exposedLabels maps each series name of a Prometheus text exposition
// (histograms' _bucket, _sum and _count included) to its label names.
func exposedLabels(text string) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		// name{labels} value, or name value
		i := strings.IndexAny(line, "{ ")
		if i < 0 {
			continue
		}
		name, labels := line[:i], ""
		if line[i] == '{' {
			labels, _, _ = strings.Cut(line[i+1:], "}")
		}
		if out[name] == nil {
			out[name] = map[string]bool{}
		}
		for _, m := range exposedLabel.FindAllStringSubmatch(labels, -1) {
			out[name][m[1]] = true
		}
	}
	return out
}

var exposedLabel = regexp.MustCompile(`([a-zA-Z_]\w*)="`)

var (
	// quoted strips label values and strings, which could look like names.
	quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	// series is a name followed by a selector or a range.
	series = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{\[]`)
	// bareName is an embedgate, Triton or recorded name without selector.
	bareName  = regexp.MustCompile(`\b(embedgate_[a-z0-9_]+|nv_[a-z0-9_]+|[a-z]+:[a-z0-9_:]+)\b`)
	selector  = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}`)
	matcher   = regexp.MustCompile(`([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)`)
	grouping  = regexp.MustCompile(`\b(?:by|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
	labelName = regexp.MustCompile(`[a-zA-Z_]\w*`)
)

// seriesNames are the metric names query q reads.
func seriesNames(q string) []string {
	q = quoted.ReplaceAllString(q, `""`)
	var names []string
	for _, m := range series.FindAllStringSubmatch(q, -1) {
		names = append(names, m[1])
	}
	for _, m := range bareName.FindAllStringSubmatch(q, -1) {
		names = append(names, m[1])
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// checkLabels: each label q selects a gateway series on is one of that
// series' labels, and each label q groups by is on one of the gateway
// series it reads (or is Prometheus's: instance, job; or le).
func checkLabels(t *testing.T, q string, names []string, gateway map[string]map[string]bool) {
	t.Helper()
	stripped := quoted.ReplaceAllString(q, `""`)
	for _, m := range selector.FindAllStringSubmatch(stripped, -1) {
		labels, ok := gateway[m[1]]
		if !ok {
			continue
		}
		for _, l := range matcher.FindAllStringSubmatch(m[2], -1) {
			if !labels[l[1]] {
				t.Errorf("%s has no label %s (query %s)", m[1], l[1], q)
			}
		}
	}
	// Grouping is checked only where every series is the gateway's:
	// Triton's and recorded series have labels of their own.
	for _, n := range names {
		if gateway[n] == nil {
			return
		}
	}
	for _, m := range grouping.FindAllStringSubmatch(stripped, -1) {
		for _, l := range labelName.FindAllString(m[1], -1) {
			if l == "instance" || l == "job" || l == "le" {
				continue
			}
			if !slices.ContainsFunc(names, func(n string) bool { return gateway[n][l] }) {
				t.Errorf("query groups by %s, which none of %v has: %s", l, names, q)
			}
		}
	}
}

// dashboardQueries are the PromQL of every panel target and template
// variable of the dashboard.
func dashboardQueries(t *testing.T) []string {
	t.Helper()
	var dash any
	if err := json.Unmarshal([]byte(readFile(t, dashboardFile)), &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				if s, ok := e.(string); ok && (k == "expr" || k == "definition") {
					out = append(out, s)
				}
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(dash)
	return out
}

// ruleQueries are the names the rules file records and the expressions of
// all its rules.
func ruleQueries(t *testing.T) (recorded map[string]bool, exprs []string) {
	t.Helper()
	var f struct {
		Groups []struct {
			Rules []struct {
				Record string `yaml:"record"`
				Expr   string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal([]byte(readFile(t, rulesFile)), &f); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	recorded = map[string]bool{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				recorded[r.Record] = true
			}
			exprs = append(exprs, r.Expr)
		}
	}
	return recorded, exprs
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
