package deploy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestGrafana: the compose Grafana provisions the compose Prometheus as
// the data source the dashboard names, loads the dashboard from where it is
// mounted, lets anonymous visitors view only, and listens on loopback.
func TestGrafana(t *testing.T) {
	s := service(t, load(t, nil), "grafana")
	if !strings.HasPrefix(s.Image, "grafana/grafana:") || strings.HasSuffix(s.Image, ":latest") {
		t.Errorf("image = %q, want a pinned grafana/grafana tag", s.Image)
	}
	checkPorts(t, s, "127.0.0.1", 3000)
	const dashboards = "/var/lib/grafana/dashboards"
	checkMount(t, s, "/etc/grafana/provisioning/datasources", filepath.Join("deploy", "grafana", "provisioning", "datasources"), true)
	checkMount(t, s, "/etc/grafana/provisioning/dashboards", filepath.Join("deploy", "grafana", "provisioning", "dashboards"), true)
	checkMount(t, s, dashboards, filepath.Join("deploy", "grafana", "dashboards"), true)
	checkSources(t, s)
	for k, want := range map[string]string{
		"GF_AUTH_ANONYMOUS_ENABLED":  "true",
		"GF_AUTH_ANONYMOUS_ORG_ROLE": "Viewer",
		"GF_USERS_ALLOW_SIGN_UP":     "false",
	} {
		if v := s.Environment[k]; v == nil || *v != want {
			t.Errorf("grafana %s = %v, want %s", k, v, want)
		}
	}

	var ds struct {
		Datasources []struct {
			UID  string `yaml:"uid"`
			Type string `yaml:"type"`
			URL  string `yaml:"url"`
		} `yaml:"datasources"`
	}
	readYAML(t, filepath.Join("grafana", "provisioning", "datasources", "prometheus.yml"), &ds)
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || ds.Datasources[0].URL != "http://prometheus:9090" {
		t.Fatalf("data sources = %+v, want the compose prometheus (http://prometheus:9090)", ds.Datasources)
	}
	uid := ds.Datasources[0].UID

	var prov struct {
		Providers []struct {
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, filepath.Join("grafana", "provisioning", "dashboards", "embedgate.yml"), &prov)
	if len(prov.Providers) != 1 || prov.Providers[0].Options.Path != dashboards {
		t.Errorf("dashboard providers = %+v, want one reading %s", prov.Providers, dashboards)
	}

	// Every panel and query of the dashboard uses the provisioned source.
	b, err := os.ReadFile(filepath.Join("grafana", "dashboards", "embedgate.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash any
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("embedgate.json: %v", err)
	}
	n := 0
	walkDatasources(dash, func(got string) {
		n++
		if got != uid {
			t.Errorf("embedgate.json names data source %q, want the provisioned %q", got, uid)
		}
	})
	if n == 0 {
		t.Error("embedgate.json names no data source")
	}
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// walkDatasources calls f with the uid of every "datasource" object in v.
func walkDatasources(v any, f func(uid string)) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if ds, ok := e.(map[string]any); ok && k == "datasource" {
				uid, _ := ds["uid"].(string)
				f(uid)
				continue
			}
			walkDatasources(e, f)
		}
	case []any:
		for _, e := range v {
			walkDatasources(e, f)
		}
	}
}
