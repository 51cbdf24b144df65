package deploy

// The pods of the Kubernetes manifests (k8s/, rendered by k8s_test.go):
// the gateway's settings are ones it reads and accepts, its files are
// mounted, its probes and shutdown fit what the gateway does; Triton has
// one GPU, the flags docker compose gives it and the headless Service the
// gateways resolve. k8s_autoscaling_test.go checks the autoscalers.

import (
	"io"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/embedgate/embedgate/gateway/auth"
	"github.com/embedgate/embedgate/gateway/catalog"
	"github.com/embedgate/embedgate/gateway/config"
	"github.com/embedgate/embedgate/gateway/modelrepo"
)

// container is the one container of deployment name.
func container(t *testing.T, m *manifests, name string) (*appsv1.Deployment, corev1.Container) {
	t.Helper()
	d := m.deployments[name]
	if d == nil || len(d.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("deployment %s: want one with one container", name)
	}
	return d, d.Spec.Template.Spec.Containers[0]
}

// gatewayEnv is the gateway container's environment as the gateway would
// see it: values, limits.cpu as Kubernetes rounds it (up, to whole CPUs),
// and Secret keys when the output has them (the base has none).
func gatewayEnv(t *testing.T, m *manifests, c corev1.Container) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.ResourceFieldRef != nil && e.ValueFrom.ResourceFieldRef.Resource == "limits.cpu":
			lim := c.Resources.Limits.Cpu()
			if lim.IsZero() {
				t.Errorf("env %s takes limits.cpu, but the container has no CPU limit (it would get the node's CPUs)", e.Name)
			}
			env[e.Name] = strconv.FormatInt(int64(math.Ceil(lim.AsApproximateFloat64())), 10)
		case e.ValueFrom.SecretKeyRef != nil:
			if s := m.secrets[e.ValueFrom.SecretKeyRef.Name]; s != nil {
				env[e.Name] = string(s.Data[e.ValueFrom.SecretKeyRef.Key])
			}
		default:
			t.Errorf("env %s: a source this test does not resolve: %+v", e.Name, e.ValueFrom)
		}
	}
	return env
}

// gatewayConfig parses env as the gateway would, and runs its checks.
func gatewayConfig(t *testing.T, env map[string]string) *config.Config {
	t.Helper()
	cfg, err := config.Parse(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatalf("config.Parse(the gateway's env): %v", err)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("the gateway's env fails config.Validate: %v", err)
	}
	return cfg
}

// TestK8sGatewayEnv: every variable is one the gateway reads, the values
// pass its checks, it listens on every interface on its container port,
// and its addresses are the Services here.
func TestK8sGatewayEnv(t *testing.T) {
	known := gatewayEnvNames(t)
	each(t, func(t *testing.T, m *manifests, overlay bool) {
		_, c := container(t, m, "embedgate")
		for _, e := range c.Env {
			if !known[e.Name] {
				t.Errorf("env %s is not read by the gateway (gateway/config, gateway/hub)", e.Name)
			}
		}
		env := gatewayEnv(t, m, c)
		cfg := gatewayConfig(t, env)
		if env["HOSTNAME"] != "0.0.0.0" {
			t.Errorf("HOSTNAME = %q, want 0.0.0.0 (Kubernetes sets it to the pod's name otherwise)", env["HOSTNAME"])
		}
		if _, ok := containerPort([]corev1.Container{c}, intstr.FromInt(cfg.Port)); !ok {
			t.Errorf("the gateway listens on %d, which the container does not declare", cfg.Port)
		}
		if cfg.Backend != "triton" || cfg.ModelsFile == "" {
			t.Errorf("backend %q, models file %q: want triton and a models file", cfg.Backend, cfg.ModelsFile)
		}

		// Every Triton pod, through the headless Service's DNS name.
		tr := m.services["triton-headless"]
		if tr == nil || tr.Spec.ClusterIP != corev1.ClusterIPNone {
			t.Fatalf("service triton-headless = %+v, want a headless one (clusterIP: None)", tr)
		}
		if want := "dns:///" + tr.Name + ":8001"; cfg.TritonURL != want {
			t.Errorf("TRITON_URL = %q, want %q", cfg.TritonURL, want)
		}
		checkServicePort(t, m, tr.Name, 8001, "grpc")

		u, err := url.Parse(cfg.RedisURL)
		if err != nil || u.Scheme != "redis" {
			t.Fatalf("REDIS_URL = %q, want redis://SERVICE:PORT/DB (%v)", cfg.RedisURL, err)
		}
		port, _ := strconv.Atoi(u.Port())
		checkServicePort(t, m, u.Hostname(), int32(port), "redis")
	})
}

// checkServicePort: service name has port, sent to a container port named
// target.
func checkServicePort(t *testing.T, m *manifests, name string, port int32, target string) {
	t.Helper()
	s := m.services[name]
	if s == nil {
		t.Errorf("no service %s", name)
		return
	}
	for _, p := range s.Spec.Ports {
		if p.Port == port {
			if p.TargetPort.String() != target {
				t.Errorf("service %s port %d targets %s, want %s", name, port, p.TargetPort.String(), target)
			}
			return
		}
	}
	t.Errorf("service %s has no port %d", name, port)
}

// TestK8sGatewayFiles: the models file and the keys file are where a
// ConfigMap and a Secret are mounted, and the gateway loads both; what
// the gateway writes is on emptyDirs under a read-only root.
func TestK8sGatewayFiles(t *testing.T) {
	each(t, func(t *testing.T, m *manifests, overlay bool) {
		d, c := container(t, m, "embedgate")
		pod := d.Spec.Template.Spec
		cfg := gatewayConfig(t, gatewayEnv(t, m, c))

		v, vm, key, ok := mounted(pod, c, cfg.ModelsFile)
		if !ok || v.ConfigMap == nil || !vm.ReadOnly {
			t.Fatalf("MODELS_FILE %s: not in a ConfigMap mounted read-only (%+v)", cfg.ModelsFile, v)
		}
		cm := m.configMaps[v.ConfigMap.Name]
		if cm == nil || cm.Data[key] == "" {
			t.Fatalf("MODELS_FILE %s: configmap %s has no %s", cfg.ModelsFile, v.ConfigMap.Name, key)
		}
		checkModels(t, cm.Data[key])

		v, vm, key, ok = mounted(pod, c, cfg.APIKeysFile)
		if !ok || v.Secret == nil || !vm.ReadOnly {
			t.Fatalf("API_KEYS_FILE %s: not in a Secret mounted read-only (%+v)", cfg.APIKeysFile, v)
		}
		if s := m.secrets[v.Secret.SecretName]; s != nil { // the overlay's example
			path := filepath.Join(t.TempDir(), key)
			if err := os.WriteFile(path, s.Data[key], 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := auth.LoadFile(path); err != nil {
				t.Errorf("secret %s: %v", s.Name, err)
			}
		}

		checkLocked(t, pod, c)
		hfHome := gatewayEnv(t, m, c)["HF_HOME"]
		for _, dir := range []string{hfHome, os.TempDir()} {
			v, vm, _, ok := mounted(pod, c, dir+"/x")
			if !ok || v.EmptyDir == nil || vm.ReadOnly {
				t.Errorf("%s: want a writable emptyDir there (the root filesystem is read-only)", dir)
			}
		}
	})
}

// checkModels loads the catalogue as the gateway does: every model is a
// Triton model of model_repository/ (its tokenizer the one its
// config.pbtxt names), served through --triton-url, sized within it.
func checkModels(t *testing.T, data string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "models.yaml")
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	entries, err := catalog.Load(path)
	if err != nil {
		t.Fatalf("catalog.Load: %v", err)
	}
	if err := catalog.Check(entries, ""); err != nil {
		t.Errorf("catalog.Check: %v", err)
	}
	for _, e := range entries {
		if e.Backend != "triton" || e.TritonURL != "" {
			t.Errorf("%s: backend %q triton_url %q, want triton through --triton-url (every Triton pod)", e.Name, e.Backend, e.TritonURL)
			continue
		}
		name := e.TritonModel
		if name == "" {
			name = e.Name
		}
		cfg, err := modelrepo.Load(filepath.Join("..", "model_repository", name, "config.pbtxt"))
		if err != nil {
			t.Errorf("%s: triton model %q: %v", e.Name, name, err)
			continue
		}
		if got := cfg.GetParameters()["hf_model_id"].GetStringValue(); got != e.ModelID {
			t.Errorf("%s: model_id %q, but model_repository/%s says hf_model_id %q", e.Name, e.ModelID, name, got)
		}
		if mbs := int(cfg.GetMaxBatchSize()); e.MaxBatchRequests > mbs {
			t.Errorf("%s: max_batch_requests %d > max_batch_size %d", e.Name, e.MaxBatchRequests, mbs)
		}
		if e.MaxInputLength > 0 && !warms(cfg, int(cfg.GetMaxBatchSize()), e.MaxInputLength) {
			t.Errorf("%s: max_input_length %d, but model_repository/%s warms no batch of that length", e.Name, e.MaxInputLength, name)
		}
	}
}

// checkLocked: the pod runs as a non-root user with a read-only root
// filesystem, no privilege escalation and no capabilities.
func checkLocked(t *testing.T, pod corev1.PodSpec, c corev1.Container) {
	t.Helper()
	ps, cs := pod.SecurityContext, c.SecurityContext
	if ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot || ps.RunAsUser == nil || *ps.RunAsUser == 0 {
		t.Errorf("%s: pod securityContext %+v, want runAsNonRoot and a non-zero runAsUser", c.Name, ps)
	}
	if cs == nil || cs.ReadOnlyRootFilesystem == nil || !*cs.ReadOnlyRootFilesystem ||
		cs.AllowPrivilegeEscalation == nil || *cs.AllowPrivilegeEscalation ||
		cs.Capabilities == nil || !slices.Equal(cs.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("%s: securityContext %+v, want readOnlyRootFilesystem, no privilege escalation, capabilities drop ALL", c.Name, cs)
	}
}

// gatewayRoute reports whether the gateway serves GET path
// (gateway/server/routes.go).
func gatewayRoute(t *testing.T, path string) bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "gateway", "server", "routes.go"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(b), `app.Get("`+path+`"`)
}

// TestK8sGatewayLifecycle: probes ask real routes on the container's port,
// liveness cannot fail because Triton is down, and a stopping pod leaves
// the Service before it drains and drains before it is killed.
func TestK8sGatewayLifecycle(t *testing.T) {
	each(t, func(t *testing.T, m *manifests, overlay bool) {
		d, c := container(t, m, "embedgate")
		cfg := gatewayConfig(t, gatewayEnv(t, m, c))
		r := c.ReadinessProbe
		if r == nil || r.HTTPGet == nil || r.HTTPGet.Path != "/ready" || !gatewayRoute(t, "/ready") {
			t.Errorf("readiness probe %+v, want GET /ready (a route of gateway/server)", r)
		} else if _, ok := containerPort([]corev1.Container{c}, r.HTTPGet.Port); !ok {
			t.Errorf("readiness probe on port %s, which the container does not open", r.HTTPGet.Port.String())
		}
		// /health asks the default model's backend: a Triton outage would
		// fail it in every gateway at once, and restarting them cures
		// nothing. Liveness is the listener answering.
		for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "startup": c.StartupProbe} {
			if p == nil || p.TCPSocket == nil {
				t.Errorf("%s probe %+v, want tcpSocket on the API port", name, p)
				continue
			}
			if port, ok := containerPort([]corev1.Container{c}, p.TCPSocket.Port); !ok || int(port.ContainerPort) != cfg.Port {
				t.Errorf("%s probe on port %s, want the gateway's %d", name, p.TCPSocket.Port.String(), cfg.Port)
			}
		}

		sleep := preStopSleep(t, c)
		if sleep < 5*time.Second {
			t.Errorf("preStop sleeps %s, want >= 5s for endpoints to drop the pod before the drain", sleep)
		}
		grace := time.Duration(*d.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
		if grace <= sleep+cfg.ShutdownGrace {
			t.Errorf("terminationGracePeriodSeconds %s <= preStop %s + --shutdown-grace %s: the drain is killed", grace, sleep, cfg.ShutdownGrace)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("resources %+v, want a CPU request (the HPA's CPU target is a share of it) and a memory limit", c.Resources)
		}
	})
}

// preStopSleep is how long c's preStop hook sleeps (a sleep action or an
// exec of sleep).
func preStopSleep(t *testing.T, c corev1.Container) time.Duration {
	t.Helper()
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
		t.Errorf("%s: no preStop hook", c.Name)
		return 0
	}
	h := c.Lifecycle.PreStop
	switch {
	case h.Sleep != nil:
		return time.Duration(h.Sleep.Seconds) * time.Second
	case h.Exec != nil && len(h.Exec.Command) == 2 && h.Exec.Command[0] == "sleep":
		n, err := strconv.Atoi(h.Exec.Command[1])
		if err == nil {
			return time.Duration(n) * time.Second
		}
	}
	t.Errorf("%s: preStop %+v, want a sleep", c.Name, h)
	return 0
}

// flagValue is the value of --name=VALUE in args; ok false when absent.
func flagValue(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// TestK8sTriton: docker compose's Triton (image, script, flags, restricted
// APIs) on one GPU per pod, with gRPC connections that age out, and a
// shutdown the gateways see coming.
func TestK8sTriton(t *testing.T) {
	composed := service(t, load(t, nil), "triton")
	each(t, func(t *testing.T, m *manifests, overlay bool) {
		d, c := container(t, m, "triton")
		pod := d.Spec.Template.Spec
		if c.Image != composed.Image {
			t.Errorf("image %s, want docker compose's %s", c.Image, composed.Image)
		}
		if len(c.Command) > 0 {
			t.Errorf("command %q replaces the image's entrypoint; put it in args", c.Command)
		}
		// The same four words as compose: sh SCRIPT REPOSITORY tritonserver.
		args := c.Args
		if len(args) < 4 || !slices.Equal([]string{args[0], args[2], args[3]}, []string{"sh", composed.Command[2], "tritonserver"}) {
			t.Fatalf("args %q, want sh <triton-serve> %s tritonserver ...", args, composed.Command[2])
		}
		for _, flag := range []string{"model-repository", "model-control-mode"} {
			want, _ := flagValue(composed.Command, flag)
			if got, _ := flagValue(args, flag); got != want {
				t.Errorf("--%s=%q, want compose's %q", flag, got, want)
			}
		}
		v, _, key, ok := mounted(pod, c, args[1])
		if !ok || v.ConfigMap == nil || m.configMaps[v.ConfigMap.Name] == nil ||
			!strings.HasPrefix(m.configMaps[v.ConfigMap.Name].Data[key], "#!/bin/sh\n# triton-serve") {
			t.Errorf("%s: not the triton-serve script from a ConfigMap (%+v)", args[1], v)
		}
		if v, vm, _, ok := mounted(pod, c, args[2]+"/x"); !ok || v.PersistentVolumeClaim == nil || !vm.ReadOnly {
			t.Errorf("%s: want the model repository claim, mounted read-only (%+v)", args[2], v)
		}
		checkTritonSecret(t, m, c)

		gpus := c.Resources.Limits[corev1.ResourceName("nvidia.com/gpu")]
		if gpus.Value() != 1 {
			t.Errorf("nvidia.com/gpu limit %s, want 1 per pod", gpus.String())
		}
		for name, p := range map[string]*corev1.Probe{"startup": c.StartupProbe, "readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
			want := map[string]string{"liveness": "/v2/health/live"}[name]
			if want == "" {
				want = "/v2/health/ready"
			}
			if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != want {
				t.Errorf("%s probe %+v, want GET %s", name, p, want)
			} else if port, ok := containerPort([]corev1.Container{c}, p.HTTPGet.Port); !ok || port.ContainerPort != 8000 {
				t.Errorf("%s probe on %s, want Triton's HTTP port 8000", name, p.HTTPGet.Port.String())
			}
		}
		if ps := pod.SecurityContext; ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot {
			t.Errorf("pod securityContext %+v, want runAsNonRoot", ps)
		}
		checkTritonTiming(t, m, d, c)
	})
}

// checkTritonSecret: both restricted-API flags take the admin key from
// the Secret, and the overlay's example is one the gateway could send.
func checkTritonSecret(t *testing.T, m *manifests, c corev1.Container) {
	t.Helper()
	var ref *corev1.SecretKeySelector
	for _, e := range c.Env {
		if e.Name == "TRITON_RESTRICTED_KEY" && e.ValueFrom != nil {
			ref = e.ValueFrom.SecretKeyRef
		}
	}
	if ref == nil {
		t.Fatal("no env TRITON_RESTRICTED_KEY from a Secret")
	}
	for _, flag := range []string{"grpc-restricted-protocol", "http-restricted-api"} {
		if got, _ := flagValue(c.Args, flag); got != "model-repository,shared-memory:$(TRITON_RESTRICTED_KEY)" {
			t.Errorf("--%s=%q, want model-repository,shared-memory:$(TRITON_RESTRICTED_KEY)", flag, got)
		}
	}
	s := m.secrets[ref.Name]
	if s == nil {
		return // the base: the operator's
	}
	cfg, err := config.Parse([]string{"--triton-restricted-key", string(s.Data[ref.Key])}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("secret %s key %s is not KEY=VALUE as Triton and the gateway read it: %v", s.Name, ref.Key, err)
	}
}

// checkTritonTiming: connections age out after in-flight batches had
// their time; a stopping pod waits for the gateways to resolve it away,
// then for Triton's exit timeout, before it is killed.
func checkTritonTiming(t *testing.T, m *manifests, d *appsv1.Deployment, c corev1.Container) {
	t.Helper()
	_, gw := container(t, m, "embedgate")
	gcfg := gatewayConfig(t, gatewayEnv(t, m, gw))
	ms := func(flag string) time.Duration {
		v, ok := flagValue(c.Args, flag)
		n, err := strconv.Atoi(v)
		if !ok || err != nil || n <= 0 {
			t.Errorf("--%s=%q, want milliseconds > 0", flag, v)
		}
		return time.Duration(n) * time.Millisecond
	}
	if age := ms("grpc-max-connection-age"); age > 5*time.Minute {
		t.Errorf("--grpc-max-connection-age %s: gateways would keep a connection for minutes", age)
	}
	if grace := ms("grpc-max-connection-age-grace"); grace < gcfg.TritonTimeout {
		t.Errorf("--grpc-max-connection-age-grace %s < the gateway's --triton-timeout %s: batches cut off", grace, gcfg.TritonTimeout)
	}
	sleep := preStopSleep(t, c)
	if sleep <= gcfg.TritonResolveInterval {
		t.Errorf("preStop sleeps %s, want more than the gateways' resolve interval %s", sleep, gcfg.TritonResolveInterval)
	}
	v, _ := flagValue(c.Args, "exit-timeout-secs")
	exit, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("--exit-timeout-secs=%q: %v", v, err)
	}
	grace := time.Duration(*d.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
	if grace <= sleep+time.Duration(exit)*time.Second {
		t.Errorf("terminationGracePeriodSeconds %s <= preStop %s + --exit-timeout-secs %ds", grace, sleep, exit)
	}
}

// TestK8sRedis: docker compose's Redis, locked down, bounded in memory.
func TestK8sRedis(t *testing.T) {
	composed := service(t, load(t, nil), "redis")
	each(t, func(t *testing.T, m *manifests, overlay bool) {
		d, c := container(t, m, "redis")
		if c.Image != composed.Image {
			t.Errorf("image %s, want docker compose's %s", c.Image, composed.Image)
		}
		if len(c.Args) < len(composed.Command) || !slices.Equal(c.Args[:len(composed.Command)], composed.Command) {
			t.Errorf("args %q, want compose's %q first", c.Args, composed.Command)
		}
		if !slices.Contains(c.Args, "--maxmemory") {
			t.Errorf("args %q: no --maxmemory; the cache's entries would grow Redis until it is killed", c.Args)
		}
		if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
			t.Errorf("replicas %v, want 1 (each Redis would hold its own limits)", d.Spec.Replicas)
		}
		checkLocked(t, d.Spec.Template.Spec, c)
	})
}
