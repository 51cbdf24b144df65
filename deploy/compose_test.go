// Package deploy holds the deployment files that are not Go code
// (prometheus/, grafana/ here; docker-compose.yml, Dockerfile and .dockerignore at
// the repository root) and the tests that keep them consistent with the
// gateway. Docker cannot run in CI, so these tests load the files the way
// Docker Compose does (compose-go) and check what the services rely on.
package deploy

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"gopkg.in/yaml.v3"

	"github.com/embedgate/embedgate/gateway/config"
	"github.com/embedgate/embedgate/gateway/hub"
)

// testAdminKey stands for the operator's TRITON_ADMIN_KEY, which docker
// compose requires.
const testAdminKey = "0123456789abcdef"

// load reads ../docker-compose.yml as `docker compose` would, with env as
// the only environment (not the test process's), so defaults are tested;
// TRITON_ADMIN_KEY is testAdminKey unless env sets it.
func load(t *testing.T, env map[string]string) *types.Project {
	t.Helper()
	p, err := loadErr(env)
	if err != nil {
		t.Fatalf("loading docker-compose.yml: %v", err)
	}
	return p
}

func loadErr(env map[string]string) (*types.Project, error) {
	kv := []string{"TRITON_ADMIN_KEY=" + testAdminKey}
	for k, v := range env {
		kv = append(kv, k+"="+v) // later wins
	}
	opts, err := cli.NewProjectOptions(
		[]string{filepath.Join("..", "docker-compose.yml")},
		cli.WithWorkingDirectory(".."),
		cli.WithEnv(kv),
		cli.WithInterpolation(true),
	)
	if err != nil {
		return nil, err
	}
	return cli.ProjectFromOptions(context.Background(), opts)
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, err := p.GetService(name)
	if err != nil {
		t.Fatalf("service %s: %v", name, err)
	}
	return s
}

// gatewayEnvNames is every environment variable the gateway reads, taken
// from the code that reads them: config.Parse asks getenv for each flag's
// variable, hub.OptionsFromEnv for the HF_* ones. With nothing set, both ask
// for every name they know.
func gatewayEnvNames(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	record := func(k string) string { names[k] = true; return "" }
	if _, err := config.Parse(nil, record, io.Discard); err != nil {
		t.Fatalf("config.Parse: %v", err)
	}
	hub.OptionsFromEnv(record)
	return names
}

func TestServices(t *testing.T) {
	p := load(t, nil)
	got := p.ServiceNames()
	sort.Strings(got)
	if want := []string{"embedgate", "grafana", "prometheus", "redis", "triton"}; !slices.Equal(got, want) {
		t.Errorf("services = %v, want %v", got, want)
	}
}

func TestTriton(t *testing.T) {
	p := load(t, nil)
	s := service(t, p, "triton")

	// Pinned release tag (YY.MM-py3), never latest: engines and the driver
	// requirement depend on it.
	if !regexp.MustCompile(`^nvcr\.io/nvidia/tritonserver:\d\d\.\d\d-py3$`).MatchString(s.Image) {
		t.Errorf("image = %q, want nvcr.io/nvidia/tritonserver:<YY.MM>-py3", s.Image)
	}
	// triton-serve REPOSITORY tritonserver ARGS: the script adds a
	// --load-model per model with weights (triton_serve_test.go), so the
	// command names none itself, and REPOSITORY is the one Triton serves.
	cmd := strings.Join(s.Command, " ")
	if len(s.Command) < 4 || s.Command[0] != "sh" || s.Command[3] != "tritonserver" {
		t.Fatalf("command %q, want sh <triton-serve> /models tritonserver ...", cmd)
	}
	script, repo := s.Command[1], s.Command[2]
	for _, want := range []string{"--model-repository=" + repo, "--model-control-mode=explicit"} {
		if !slices.Contains(s.Command, want) {
			t.Errorf("command %q lacks %q", cmd, want)
		}
	}
	for _, arg := range s.Command {
		if strings.HasPrefix(arg, "--load-model") {
			t.Errorf("command %q has %q: triton-serve chooses the models (a model without weights fails Triton's start)", cmd, arg)
		}
	}

	checkMount(t, s, repo, "model_repository", true)
	checkMount(t, s, script, filepath.Join("deploy", "triton-serve"), true)
	checkMount(t, s, "/trt-cache", "", false)
	// Nothing published: with explicit model control, whoever reaches
	// Triton's ports could use its APIs; the gateway and Prometheus reach it
	// on the compose network.
	if len(s.Ports) != 0 {
		t.Errorf("triton publishes %+v, want no port", s.Ports)
	}

	if s.Deploy == nil || s.Deploy.Resources.Reservations == nil {
		t.Fatalf("no deploy.resources.reservations: Triton gets no GPU")
	}
	devs := s.Deploy.Resources.Reservations.Devices
	if len(devs) != 1 || devs[0].Driver != "nvidia" || devs[0].Count != 1 || !slices.Equal(devs[0].Capabilities, []string{"gpu"}) {
		t.Errorf("GPU reservation = %+v, want one {driver nvidia, count 1, capabilities [gpu]}", devs)
	}
	checkHealth(t, s, "curl", "localhost:8000/v2/health/ready")
}

func TestRedis(t *testing.T) {
	s := service(t, load(t, nil), "redis")
	if s.Image != "redis:7-alpine" {
		t.Errorf("image = %q, want redis:7-alpine", s.Image)
	}
	// No persistence: limiter state is short-lived.
	if want := []string{"redis-server", "--save", "", "--appendonly", "no"}; !slices.Equal(s.Command, want) {
		t.Errorf("command = %q, want %q", s.Command, want)
	}
	checkHealth(t, s, "redis-cli", "ping")
}

func TestEmbedgate(t *testing.T) {
	p := load(t, nil)
	s := service(t, p, "embedgate")

	if s.Build == nil || s.Build.Dockerfile != "Dockerfile" {
		t.Fatalf("build = %+v, want the repository's Dockerfile", s.Build)
	}
	if root, _ := filepath.Abs(".."); s.Build.Context != root {
		t.Errorf("build context = %q, want the repository root %q", s.Build.Context, root)
	}

	env := map[string]string{}
	for k, v := range s.Environment {
		if v == nil {
			t.Errorf("environment %s has no value", k)
			continue
		}
		env[k] = *v
	}
	want := map[string]string{
		"BACKEND":         "triton",
		"TRITON_URL":      "triton:8001",
		"TRITON_DISCOVER": "true",
		"DEFAULT_MODEL":   "", // the first model by name
		"REDIS_URL":       "redis://redis:6379/0",
		"HF_HOME":         "/data/hf",
		"HOSTNAME":        "0.0.0.0",
		"PORT":            "8080",
	}
	for k, v := range want {
		if got, ok := env[k]; !ok || got != v {
			t.Errorf("environment %s = %q (set: %v), want %q", k, got, ok, v)
		}
	}
	// The models come from Triton: a one-model flag would add a model of
	// its own next to the discovered ones.
	for _, k := range []string{"MODEL_ID", "TRITON_MODEL", "SERVED_MODEL_NAME"} {
		if _, ok := env[k]; ok {
			t.Errorf("environment sets %s: with TRITON_DISCOVER the models come from Triton", k)
		}
	}

	// Every variable must be one the gateway reads: a typo here would be
	// silently ignored in production.
	known := gatewayEnvNames(t)
	for k := range env {
		if !known[k] {
			t.Errorf("environment %s is not read by the gateway (gateway/config, gateway/hub)", k)
		}
	}
	// And the values must pass the gateway's own checks.
	cfg, err := config.Parse(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatalf("config.Parse(compose environment): %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("compose environment fails config.Validate: %v", err)
	}

	checkMount(t, s, env["HF_HOME"], "", false)
	checkPorts(t, s, "", 8080)
	checkHealth(t, s, "curl", "localhost:"+env["PORT"]+"/health")

	for _, dep := range []string{"triton", "redis"} {
		d, ok := s.DependsOn[dep]
		if !ok || d.Condition != types.ServiceConditionHealthy {
			t.Errorf("depends_on %s = %+v, want condition service_healthy", dep, d)
		}
	}
}

// TestRestrictedAPIs: Triton's repository and shared-memory APIs need the
// operator's key on both its endpoints, and the gateway sends that key as
// Triton's gRPC frontend expects it, since discovery lists the repository.
func TestRestrictedAPIs(t *testing.T) {
	p := load(t, nil)
	triton := service(t, p, "triton")
	for _, flag := range []string{"--grpc-restricted-protocol=", "--http-restricted-api="} {
		var got []string
		for _, arg := range triton.Command {
			if v, ok := strings.CutPrefix(arg, flag); ok {
				got = append(got, v)
			}
		}
		// Triton's syntax: <protocols>:<key>=<value>, one group per flag.
		if want := "model-repository,shared-memory:admin-key=" + testAdminKey; !slices.Equal(got, []string{want}) {
			t.Errorf("triton command %s = %q, want [%s]", flag, got, want)
		}
	}

	env := service(t, p, "embedgate").Environment
	v := env["TRITON_RESTRICTED_KEY"]
	if v == nil {
		t.Fatal("embedgate has no TRITON_RESTRICTED_KEY: discovery's RepositoryIndex would be refused")
	}
	cfg, err := config.Parse(nil, func(k string) string {
		if k == "TRITON_RESTRICTED_KEY" {
			return *v
		}
		return ""
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if key, value := cfg.TritonRestricted(); key != "admin-key" || value != testAdminKey {
		t.Errorf("the gateway sends key %q value %q, want admin-key and TRITON_ADMIN_KEY", key, value)
	}
}

// TestAdminKeyRequired: without TRITON_ADMIN_KEY docker compose refuses to
// start, naming it, rather than run Triton with an empty key (which its
// flag parser refuses) or none.
func TestAdminKeyRequired(t *testing.T) {
	_, err := loadErr(map[string]string{"TRITON_ADMIN_KEY": ""})
	if err == nil || !strings.Contains(err.Error(), "required variable TRITON_ADMIN_KEY is missing a value") {
		t.Errorf("loading without TRITON_ADMIN_KEY: %v, want an error naming it", err)
	}
}

// TestPublishedPorts: only the gateway listens on the host's interfaces;
// anything else published is bound to loopback.
func TestPublishedPorts(t *testing.T) {
	for _, s := range load(t, nil).Services {
		for _, port := range s.Ports {
			if port.HostIP != "127.0.0.1" && (s.Name != "embedgate" || port.Target != 8080) {
				t.Errorf("%s publishes %d on %q: only the gateway's 8080 may listen beyond 127.0.0.1", s.Name, port.Target, port.HostIP)
			}
		}
	}
}

// TestDefaultModel: DEFAULT_MODEL from the shell reaches the gateway.
func TestDefaultModel(t *testing.T) {
	const name = "qwen3-embedding-0.6b"
	env := service(t, load(t, map[string]string{"DEFAULT_MODEL": name}), "embedgate").Environment
	if v := env["DEFAULT_MODEL"]; v == nil || *v != name {
		t.Errorf("embedgate DEFAULT_MODEL = %v, want %s", v, name)
	}
}

func TestPrometheus(t *testing.T) {
	s := service(t, load(t, nil), "prometheus")
	if !strings.HasPrefix(s.Image, "prom/prometheus:v") {
		t.Errorf("image = %q, want a pinned prom/prometheus:v… tag", s.Image)
	}
	checkMount(t, s, "/etc/prometheus/prometheus.yml", filepath.Join("deploy", "prometheus", "prometheus.yml"), true)
	checkMount(t, s, "/etc/prometheus/rules.yml", filepath.Join("deploy", "prometheus", "rules.yml"), true)
	checkPorts(t, s, "127.0.0.1", 9090) // no authentication: loopback only
	checkSources(t, s)

	b, err := os.ReadFile(filepath.Join("prometheus", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `yaml:"job_name"`
			MetricsPath   string `yaml:"metrics_path"`
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("prometheus.yml: %v", err)
	}
	var targets []string
	for _, sc := range cfg.ScrapeConfigs {
		if sc.MetricsPath != "" && sc.MetricsPath != "/metrics" {
			t.Errorf("job %s metrics_path = %q, want /metrics", sc.JobName, sc.MetricsPath)
		}
		for _, st := range sc.StaticConfigs {
			targets = append(targets, st.Targets...)
		}
	}
	for _, want := range []string{"embedgate:8080", "triton:8002"} {
		if !slices.Contains(targets, want) {
			t.Errorf("scrape targets = %v, want %s", targets, want)
		}
	}
	// The rules file is loaded from where the service mounts it.
	if !slices.Equal(cfg.RuleFiles, []string{"/etc/prometheus/rules.yml"}) {
		t.Errorf("rule_files = %v, want [/etc/prometheus/rules.yml]", cfg.RuleFiles)
	}
}

// checkMount finds the volume mounted at target; a non-empty source means a
// bind mount of that path (relative to the repository root).
func checkMount(t *testing.T, s types.ServiceConfig, target, source string, readOnly bool) {
	t.Helper()
	for _, v := range s.Volumes {
		if v.Target != target {
			continue
		}
		if source != "" && (v.Type != types.VolumeTypeBind || !strings.HasSuffix(v.Source, string(filepath.Separator)+source)) {
			t.Errorf("%s: %s is mounted from %s %q, want bind %s", s.Name, target, v.Type, v.Source, source)
		}
		if source == "" && v.Type != types.VolumeTypeVolume {
			t.Errorf("%s: %s is a %s mount, want a named volume", s.Name, target, v.Type)
		}
		if v.ReadOnly != readOnly {
			t.Errorf("%s: %s read-only = %v, want %v", s.Name, target, v.ReadOnly, readOnly)
		}
		return
	}
	t.Errorf("%s: nothing is mounted at %s", s.Name, target)
}

// checkPorts: s publishes exactly ports, each as itself, on hostIP (""
// = every interface).
func checkPorts(t *testing.T, s types.ServiceConfig, hostIP string, ports ...uint32) {
	t.Helper()
	if len(s.Ports) != len(ports) {
		t.Errorf("%s: publishes %+v, want %d ports", s.Name, s.Ports, len(ports))
	}
	for _, want := range ports {
		found := false
		for _, p := range s.Ports {
			found = found || (p.Target == want && p.Published == strconv.FormatUint(uint64(want), 10) && p.HostIP == hostIP)
		}
		if !found {
			t.Errorf("%s: port %d is not published as %s:%d:%d (ports %+v)", s.Name, want, hostIP, want, want, s.Ports)
		}
	}
}

func checkHealth(t *testing.T, s types.ServiceConfig, words ...string) {
	t.Helper()
	if s.HealthCheck == nil || len(s.HealthCheck.Test) == 0 {
		t.Fatalf("%s: no healthcheck", s.Name)
	}
	test := strings.Join(s.HealthCheck.Test, " ")
	for _, w := range words {
		if !strings.Contains(test, w) {
			t.Errorf("%s: healthcheck %q lacks %q", s.Name, test, w)
		}
	}
}

// checkSources: every bind mount of s comes from a file or directory that
// exists in the repository, so a moved or renamed file fails here rather
// than as an empty directory Docker creates in its place.
func checkSources(t *testing.T, s types.ServiceConfig) {
	t.Helper()
	for _, v := range s.Volumes {
		if v.Type != types.VolumeTypeBind {
			continue
		}
		if _, err := os.Stat(v.Source); err != nil {
			t.Errorf("%s: %s is mounted from %s, which is missing: %v", s.Name, v.Target, v.Source, err)
		}
	}
}
