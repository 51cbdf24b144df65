package deploy

// The Kubernetes manifests (k8s/): the base and the example overlay are
// rendered with the kustomize library, as kubectl apply -k would, every
// object is decoded strictly into its Kubernetes type, and the wiring
// between objects is checked: selectors, ports, volumes, Secrets,
// autoscaler targets. k8s_pods_test.go checks the pods themselves.

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// kustomizations are the directories under k8s/ that kubectl apply -k
// takes, by the name subtests use.
var kustomizations = []struct{ name, dir string }{
	{"base", "base"},
	{"overlay", filepath.Join("overlays", "example")},
}

// The Secrets the base refers to and leaves to an overlay: API keys and
// Triton's admin key are the operator's.
var operatorSecrets = []string{"embedgate-api-keys", "triton-admin"}

// The namespace the example overlay deploys to.
const exampleNamespace = "embedgate"

// manifests is one kustomization's output, decoded, by kind and name.
type manifests struct {
	deployments map[string]*appsv1.Deployment
	services    map[string]*corev1.Service
	configMaps  map[string]*corev1.ConfigMap
	secrets     map[string]*corev1.Secret
	claims      map[string]*corev1.PersistentVolumeClaim
	namespaces  map[string]*corev1.Namespace
	budgets     map[string]*policyv1.PodDisruptionBudget
	autoscalers map[string]*autoscalingv2.HorizontalPodAutoscaler
	monitors    map[string]*monitoringv1.ServiceMonitor
}

// render builds k8s/DIR with krusty on an in-memory copy of k8s/ (so
// nothing outside it can be read, as with kubectl's default load
// restrictions) and decodes every object.
func render(t *testing.T, dir string) *manifests {
	t.Helper()
	mem := filesys.MakeFsInMemory()
	err := filepath.WalkDir("k8s", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		dst := "/" + filepath.ToSlash(path)
		if err := mem.MkdirAll(filepath.Dir(dst)); err != nil {
			return err
		}
		return mem.WriteFile(dst, b)
	})
	if err != nil {
		t.Fatalf("copying k8s/: %v", err)
	}
	out, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(mem, "/k8s/"+filepath.ToSlash(dir))
	if err != nil {
		t.Fatalf("kustomize build k8s/%s: %v", dir, err)
	}
	m := &manifests{
		deployments: map[string]*appsv1.Deployment{}, services: map[string]*corev1.Service{},
		configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{},
		claims: map[string]*corev1.PersistentVolumeClaim{}, namespaces: map[string]*corev1.Namespace{},
		budgets: map[string]*policyv1.PodDisruptionBudget{}, autoscalers: map[string]*autoscalingv2.HorizontalPodAutoscaler{},
		monitors: map[string]*monitoringv1.ServiceMonitor{},
	}
	for _, r := range out.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			t.Fatalf("k8s/%s: %s %s: %v", dir, r.GetKind(), r.GetName(), err)
		}
		if err := m.add(r.GetApiVersion(), r.GetKind(), y); err != nil {
			t.Errorf("k8s/%s: %s %s: %v", dir, r.GetKind(), r.GetName(), err)
		}
	}
	return m
}

// add decodes one object into its type. Unknown fields and unknown kinds
// are errors: a misspelt field would otherwise be dropped by the API
// server (or refused by it), and a kind the test does not know is one
// whose wiring nobody checks.
func (m *manifests) add(apiVersion, kind string, y []byte) error {
	switch apiVersion + " " + kind {
	case "apps/v1 Deployment":
		return decode(m.deployments, y)
	case "v1 Service":
		return decode(m.services, y)
	case "v1 ConfigMap":
		return decode(m.configMaps, y)
	case "v1 Secret":
		return decode(m.secrets, y)
	case "v1 PersistentVolumeClaim":
		return decode(m.claims, y)
	case "v1 Namespace":
		return decode(m.namespaces, y)
	case "policy/v1 PodDisruptionBudget":
		return decode(m.budgets, y)
	case "autoscaling/v2 HorizontalPodAutoscaler":
		return decode(m.autoscalers, y)
	case "monitoring.coreos.com/v1 ServiceMonitor":
		return decode(m.monitors, y)
	}
	return fmt.Errorf("%s %s: a kind this test does not know; decode and check it here", apiVersion, kind)
}

// decode unmarshals y strictly (unknown or duplicate fields are errors)
// into a new T, kept by name.
func decode[T any, P interface {
	*T
	GetName() string
}](into map[string]P, y []byte) error {
	var obj T
	if err := yaml.UnmarshalStrict(y, &obj); err != nil {
		return fmt.Errorf("strict decoding: %w", err)
	}
	p := P(&obj)
	if _, dup := into[p.GetName()]; dup {
		return fmt.Errorf("a second object named %s", p.GetName())
	}
	into[p.GetName()] = p
	return nil
}

// each runs f on every kustomization, rendered, as a subtest.
func each(t *testing.T, f func(t *testing.T, m *manifests, overlay bool)) {
	for _, k := range kustomizations {
		t.Run(k.name, func(t *testing.T) { f(t, render(t, k.dir), k.dir != "base") })
	}
}

// TestK8sObjects: both render, with the objects expected, and the example
// overlay puts every one in its namespace.
func TestK8sObjects(t *testing.T) {
	each(t, func(t *testing.T, m *manifests, overlay bool) {
		wantNames(t, "Deployments", m.deployments, "embedgate", "redis", "triton")
		wantNames(t, "Services", m.services, "embedgate", "redis", "triton-headless")
		wantNames(t, "HorizontalPodAutoscalers", m.autoscalers, "embedgate", "triton")
		wantNames(t, "PodDisruptionBudgets", m.budgets, "embedgate")
		wantNames(t, "PersistentVolumeClaims", m.claims, "triton-model-repository")
		if !overlay {
			wantNames(t, "ServiceMonitors", m.monitors) // a component, not in the base
			return
		}
		wantNames(t, "ServiceMonitors", m.monitors, "embedgate", "triton")
		wantNames(t, "Namespaces", m.namespaces, exampleNamespace)
		for _, o := range m.namespaced() {
			if ns := o.GetNamespace(); ns != exampleNamespace {
				t.Errorf("%s is in namespace %q, want %s", o.GetName(), ns, exampleNamespace)
			}
		}
	})
}

func wantNames[V any](t *testing.T, what string, got map[string]V, want ...string) {
	t.Helper()
	names := make([]string, 0, len(got))
	for name := range got {
		names = append(names, name)
	}
	sort.Strings(names)
	if !slices.Equal(names, want) {
		t.Errorf("%s = %v, want %v", what, names, want)
	}
}

type named interface {
	GetName() string
	GetNamespace() string
}

func (m *manifests) namespaced() []named {
	var out []named
	out = appendNamed(out, m.deployments)
	out = appendNamed(out, m.services)
	out = appendNamed(out, m.configMaps)
	out = appendNamed(out, m.secrets)
	out = appendNamed(out, m.claims)
	out = appendNamed(out, m.budgets)
	out = appendNamed(out, m.autoscalers)
	return appendNamed(out, m.monitors)
}

// appendNamed appends the objects of one kind to out.
func appendNamed[T named](out []named, objects map[string]T) []named {
	for _, v := range objects {
		out = append(out, v)
	}
	return out
}

// selects reports whether a selector of labels picks a pod with labels:
// an empty selector picks nothing here (Kubernetes would take every pod).
func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// selected lists the Deployments whose pods selector picks.
func (m *manifests) selected(selector map[string]string) []string {
	var names []string
	for name, d := range m.deployments {
		if selects(selector, d.Spec.Template.Labels) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// containerPort finds the port p (a name or a number) among cs's ports.
func containerPort(cs []corev1.Container, p intstr.IntOrString) (corev1.ContainerPort, bool) {
	for _, c := range cs {
		for _, cp := range c.Ports {
			if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
				return cp, true
			}
		}
	}
	return corev1.ContainerPort{}, false
}

// TestK8sSelectors: every Deployment selects its own pods and only those;
// every Service selects one Deployment's pods and sends each port to a
// port its containers open; the PodDisruptionBudget covers the gateways
// only; ServiceMonitors scrape a named port of a Service.
func TestK8sSelectors(t *testing.T) {
	each(t, func(t *testing.T, m *manifests, overlay bool) {
		for name, d := range m.deployments {
			if d.Spec.Selector == nil || len(d.Spec.Selector.MatchExpressions) > 0 {
				t.Errorf("deployment %s: selector %v, want matchLabels only", name, d.Spec.Selector)
				continue
			}
			if got := m.selected(d.Spec.Selector.MatchLabels); !slices.Equal(got, []string{name}) {
				t.Errorf("deployment %s: its selector %v picks the pods of %v, want its own only", name, d.Spec.Selector.MatchLabels, got)
			}
		}
		for name, s := range m.services {
			got := m.selected(s.Spec.Selector)
			if len(got) != 1 {
				t.Errorf("service %s: selector %v picks the pods of %v, want one deployment", name, s.Spec.Selector, got)
				continue
			}
			containers := m.deployments[got[0]].Spec.Template.Spec.Containers
			for _, p := range s.Spec.Ports {
				target := p.TargetPort
				if target.Type == intstr.Int && target.IntVal == 0 {
					target = intstr.FromInt32(p.Port) // unset: the same number
				}
				if _, ok := containerPort(containers, target); !ok {
					t.Errorf("service %s: port %s targets %s, which no container of %s opens", name, p.Name, target.String(), got[0])
				}
			}
		}
		pdb := m.budgets["embedgate"]
		if pdb == nil || pdb.Spec.Selector == nil {
			t.Fatal("no PodDisruptionBudget embedgate with a selector")
		}
		if got := m.selected(pdb.Spec.Selector.MatchLabels); len(pdb.Spec.Selector.MatchExpressions) > 0 || !slices.Equal(got, []string{"embedgate"}) {
			t.Errorf("PodDisruptionBudget selects the pods of %v, want the gateway's (embedgate) only", got)
		}
		if mu := pdb.Spec.MaxUnavailable; pdb.Spec.MinAvailable != nil || mu == nil || mu.Type != intstr.Int || mu.IntVal != 1 {
			t.Errorf("PodDisruptionBudget: minAvailable %v maxUnavailable %v, want maxUnavailable 1", pdb.Spec.MinAvailable, mu)
		}
		for name, sm := range m.monitors {
			checkMonitor(t, m, name, sm)
		}
	})
}

func checkMonitor(t *testing.T, m *manifests, name string, sm *monitoringv1.ServiceMonitor) {
	t.Helper()
	var svc *corev1.Service
	for _, s := range m.services {
		if selects(sm.Spec.Selector.MatchLabels, s.Labels) {
			if svc != nil {
				t.Errorf("ServiceMonitor %s selects services %s and %s, want one", name, svc.Name, s.Name)
			}
			svc = s
		}
	}
	if svc == nil || len(sm.Spec.Endpoints) == 0 {
		t.Errorf("ServiceMonitor %s: selects no service (%v) or scrapes nothing", name, sm.Spec.Selector.MatchLabels)
		return
	}
	for _, e := range sm.Spec.Endpoints {
		found := false
		for _, p := range svc.Spec.Ports {
			found = found || (e.Port != "" && p.Name == e.Port)
		}
		if !found || (e.Path != "" && e.Path != "/metrics") {
			t.Errorf("ServiceMonitor %s: endpoint port %v path %q, want a named port of service %s and /metrics", name, e.Port, e.Path, svc.Name)
		}
	}
}

// TestK8sReferences: every ConfigMap, Secret and claim a pod uses is in
// the output, with the key asked for; the base leaves out exactly the
// operator's Secrets, and the example overlay supplies them.
func TestK8sReferences(t *testing.T) {
	each(t, func(t *testing.T, m *manifests, overlay bool) {
		var missing []string
		for name, d := range m.deployments {
			for _, miss := range m.missingRefs(d) {
				missing = append(missing, name+": "+miss)
			}
		}
		want := []string{}
		if !overlay {
			// The gateway mounts the keys; Triton takes the admin key.
			want = []string{"embedgate: secret " + operatorSecrets[0], "triton: secret " + operatorSecrets[1]}
		}
		sort.Strings(missing)
		if !slices.Equal(missing, want) {
			t.Errorf("missing references %q, want %q", missing, want)
		}
		for name, h := range m.autoscalers {
			ref := h.Spec.ScaleTargetRef
			if ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || m.deployments[ref.Name] == nil {
				t.Errorf("autoscaler %s scales %s %s %s, which is not a Deployment here", name, ref.APIVersion, ref.Kind, ref.Name)
			}
			if m.deployments[ref.Name] != nil && m.deployments[ref.Name].Spec.Replicas != nil {
				t.Errorf("deployment %s sets replicas: every apply would reset the count autoscaler %s chose", ref.Name, name)
			}
			if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 1 || *h.Spec.MinReplicas > h.Spec.MaxReplicas {
				t.Errorf("autoscaler %s: min %v max %d, want 1 <= min <= max", name, h.Spec.MinReplicas, h.Spec.MaxReplicas)
			}
		}
	})
}

// missingRefs lists what d's pods use and the output lacks: "secret
// NAME" for a whole object, "secret NAME key KEY" for a key of one.
func (m *manifests) missingRefs(d *appsv1.Deployment) []string {
	var missing []string
	for _, v := range d.Spec.Template.Spec.Volumes {
		switch {
		case v.ConfigMap != nil && m.configMaps[v.ConfigMap.Name] == nil:
			missing = append(missing, "configmap "+v.ConfigMap.Name)
		case v.Secret != nil && m.secrets[v.Secret.SecretName] == nil:
			missing = append(missing, "secret "+v.Secret.SecretName)
		case v.PersistentVolumeClaim != nil && m.claims[v.PersistentVolumeClaim.ClaimName] == nil:
			missing = append(missing, "claim "+v.PersistentVolumeClaim.ClaimName)
		}
	}
	for _, c := range d.Spec.Template.Spec.Containers {
		for _, e := range c.Env {
			if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
				continue
			}
			ref := e.ValueFrom.SecretKeyRef
			switch s := m.secrets[ref.Name]; {
			case s == nil:
				missing = append(missing, "secret "+ref.Name)
			case len(s.Data[ref.Key]) == 0:
				missing = append(missing, "secret "+ref.Name+" key "+ref.Key)
			}
		}
	}
	return missing
}

// TestK8sTritonServeCopy: the base's triton-serve is deploy/triton-serve
// (kustomize reads only files under a kustomization, so it is a copy).
func TestK8sTritonServeCopy(t *testing.T) {
	orig, err := os.ReadFile("triton-serve")
	if err != nil {
		t.Fatal(err)
	}
	cp, err := os.ReadFile(filepath.Join("k8s", "base", "triton-serve"))
	if err != nil {
		t.Fatal(err)
	}
	if string(orig) != string(cp) {
		t.Error("k8s/base/triton-serve differs from triton-serve: copy it again (cp deploy/triton-serve deploy/k8s/base/)")
	}
}

// mounted finds the volume mounted at the directory holding path in c,
// and the file's name inside it.
func mounted(pod corev1.PodSpec, c corev1.Container, path string) (corev1.Volume, corev1.VolumeMount, string, bool) {
	for _, vm := range c.VolumeMounts {
		rest, ok := strings.CutPrefix(path, strings.TrimSuffix(vm.MountPath, "/")+"/")
		if !ok || vm.SubPath != "" {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name == vm.Name {
				return v, vm, rest, true
			}
		}
	}
	return corev1.Volume{}, corev1.VolumeMount{}, "", false
}
