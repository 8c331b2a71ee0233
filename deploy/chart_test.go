package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/internal/testbin"
	"github.com/sluicehq/sluice/kube/manager"
)

const (
	chartDir = "helm/sluice"
	// The release name that gives the kustomize install's object names
	// (sluice-controller, sluice-rollout-operator).
	release = "sluice"
)

// env is the API server the rendered manifests are dry-run against.
// Sluice's own CRDs are not installed: the chart's are what is tried. The
// stand-ins for the ServiceMonitor and Certificate CRDs are, so that the
// optional objects are checked too.
var env = &kubetest.Env{
	Scheme: []func(*runtime.Scheme) error{clientgoscheme.AddToScheme},
	CRDs:   func() ([]string, error) { return []string{"testdata/standin-crds.yaml"}, nil },
}

func TestMain(m *testing.M) { os.Exit(env.Run(m)) }

// helm runs bin/helm with its caches and configuration in a temporary
// folder, and returns its standard output; stderr is in the error.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin := testbin.Path(t, "helm")
	home := t.TempDir()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
		"KUBECONFIG="+filepath.Join(home, "no-kubeconfig"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), &helmError{args: args, err: err, output: stderr.String() + stdout.String()}
	}
	return stdout.String(), nil
}

// helmError is a helm command that failed, with what it printed.
type helmError struct {
	args   []string
	err    error
	output string
}

func (e *helmError) Error() string {
	return fmt.Sprintf("helm %s: %v\n%s", strings.Join(e.args, " "), e.err, e.output)
}

// render is `helm template` of the chart into namespace ns.
func render(t *testing.T, ns string, valueFiles []string, set ...string) ([]*unstructured.Unstructured, error) {
	t.Helper()
	args := []string{"template", release, chartDir, "--namespace", ns}
	for _, f := range valueFiles {
		args = append(args, "--values", f)
	}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	out, err := helm(t, args...)
	if err != nil {
		return nil, err
	}
	return decodeAll(t, "helm template", []byte(out)), nil
}

// decodeAll splits a YAML stream into objects, skipping empty documents.
func decodeAll(t *testing.T, what string, data []byte) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); errors.Is(err, io.EOF) {
			return objs
		} else if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if len(bytes.TrimSpace(raw)) == 0 || string(raw) == "null" {
			continue
		}
		// Through the unstructured decoder, so numbers are int64 as
		// the API machinery has them.
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(raw); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		objs = append(objs, u)
	}
}

func kinds(objs []*unstructured.Unstructured) map[string]int {
	n := map[string]int{}
	for _, o := range objs {
		n[o.GetKind()]++
	}
	return n
}

// find returns the one object of kind named name, failing the test if
// there is none.
func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("no %s %q among %v", kind, name, kinds(objs))
	return nil
}

func nested(t *testing.T, o *unstructured.Unstructured, path ...string) any {
	t.Helper()
	v, ok, err := unstructured.NestedFieldNoCopy(o.Object, path...)
	if err != nil || !ok {
		t.Fatalf("%s %s: no %s (%v)", o.GetKind(), o.GetName(), strings.Join(path, "."), err)
	}
	return v
}

// controllerConfig parses the ConfigMap's controller.yaml as `sluice
// controller` does and checks it as the controller would at start.
func controllerConfig(t *testing.T, cm *unstructured.Unstructured) *manager.Config {
	t.Helper()
	data, _, _ := unstructured.NestedString(cm.Object, "data", "controller.yaml")
	cfg, err := manager.ParseConfig([]byte(data))
	if err != nil {
		t.Fatalf("ConfigMap %s: controller.yaml does not parse as sluice controller's configuration: %v\n%s", cm.GetName(), err, data)
	}
	// The replica name comes from $POD_NAME in a pod.
	cfg.XDS.ReplicaName = "sluice-controller-0"
	if err := cfg.Check(); err != nil {
		t.Fatalf("ConfigMap %s: sluice controller would refuse controller.yaml: %v\n%s", cm.GetName(), err, data)
	}
	return cfg
}

// The chart's values files besides the defaults, as helm/chart-testing
// lays them out (ci/*-values.yaml), and what each must render.
var chartCases = []struct {
	name   string
	values []string
	want   map[string]int
	check  func(t *testing.T, objs []*unstructured.Unstructured, cfg *manager.Config)
}{{
	name: "default",
	want: map[string]int{"CustomResourceDefinition": 4, "ServiceAccount": 1, "ClusterRole": 2, "ClusterRoleBinding": 1,
		"Role": 1, "RoleBinding": 1, "ConfigMap": 1, "Deployment": 1, "Service": 1, "PodDisruptionBudget": 1, "NetworkPolicy": 1},
	check: func(t *testing.T, objs []*unstructured.Unstructured, cfg *manager.Config) {
		if cfg.XDS.TLS.Mode != manager.XDSTLSSelfSigned || cfg.XDS.TLS.SelfSigned.ServiceName != "sluice-controller" {
			t.Errorf("xds.tls = %+v, want selfSigned for the Service sluice-controller", cfg.XDS.TLS)
		}
		if !cfg.LeaderElectionEnabled() {
			t.Error("leader election is off with two replicas")
		}
	},
}, {
	name:   "ha-tls",
	values: []string{chartDir + "/ci/ha-tls-values.yaml"},
	want: map[string]int{"CustomResourceDefinition": 4, "ServiceAccount": 1, "ClusterRole": 2, "ClusterRoleBinding": 1,
		"Role": 1, "RoleBinding": 1, "ConfigMap": 2, "Deployment": 1, "Service": 1, "PodDisruptionBudget": 1, "NetworkPolicy": 1,
		"ServiceMonitor": 1, "Certificate": 1},
	check: func(t *testing.T, objs []*unstructured.Unstructured, cfg *manager.Config) {
		d := find(t, objs, "Deployment", "sluice-controller")
		if r := nested(t, d, "spec", "replicas"); r != int64(3) {
			t.Errorf("replicas = %v, want 3", r)
		}
		if !cfg.LeaderElectionEnabled() {
			t.Error("leader election is off with three replicas")
		}
		cert := find(t, objs, "Certificate", "sluice-xds")
		if cfg.XDS.TLS.Mode != manager.XDSTLSCertManager || cfg.XDS.TLS.CertManager.SecretName != nested(t, cert, "spec", "secretName") {
			t.Errorf("xds.tls = %+v, want certManager reading the Certificate's Secret %v", cfg.XDS.TLS, nested(t, cert, "spec", "secretName"))
		}
		names, _, _ := unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames")
		for _, want := range []string{"sluice-controller." + cert.GetNamespace() + ".svc", "xds.example.com"} {
			if !slices.Contains(names, want) {
				t.Errorf("Certificate dnsNames %v lack %s", names, want)
			}
		}
		if cfg.XDS.ClientCAFile == "" {
			t.Error("xds.clientCA.secretName set, but no xds.clientCAFile: mutual TLS is off")
		}
		dash := find(t, objs, "ConfigMap", "sluice-grafana-dashboard")
		if dash.GetLabels()["grafana_dashboard"] != "1" {
			t.Errorf("dashboard ConfigMap labels %v: the Grafana sidecar would not find it", dash.GetLabels())
		}
		want, err := os.ReadFile("grafana/sluice.json")
		if err != nil {
			t.Fatal(err)
		}
		if got, _, _ := unstructured.NestedString(dash.Object, "data", "sluice.json"); got != strings.TrimSuffix(string(want), "\n") {
			t.Error("the dashboard ConfigMap does not hold grafana/sluice.json")
		}
		sm := find(t, objs, "ServiceMonitor", "sluice-controller")
		eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
		if len(eps) != 1 || eps[0].(map[string]any)["port"] != "http-metrics" {
			t.Errorf("ServiceMonitor endpoints %v, want the Service's http-metrics port", eps)
		}
	},
}, {
	name:   "single-files-tls",
	values: []string{chartDir + "/ci/single-files-tls-values.yaml"},
	want: map[string]int{"CustomResourceDefinition": 4, "ServiceAccount": 1, "ClusterRole": 2, "ClusterRoleBinding": 1,
		"Role": 1, "RoleBinding": 1, "ConfigMap": 1, "Deployment": 1, "Service": 1, "NetworkPolicy": 1},
	check: func(t *testing.T, objs []*unstructured.Unstructured, cfg *manager.Config) {
		if cfg.LeaderElectionEnabled() {
			t.Error("leader election on although the values turn it off")
		}
		if cfg.XDS.TLS.Mode != manager.XDSTLSFiles || cfg.XDS.CertFile == "" {
			t.Errorf("xds = %+v, want files mode with certFile", cfg.XDS)
		}
	},
}, {
	name:   "minimal",
	values: []string{chartDir + "/ci/minimal-values.yaml"},
	want: map[string]int{"ServiceAccount": 1, "ClusterRoleBinding": 1, "ClusterRole": 1,
		"Role": 1, "RoleBinding": 1, "ConfigMap": 1, "Deployment": 1, "Service": 1, "PodDisruptionBudget": 1},
	check: func(t *testing.T, objs []*unstructured.Unstructured, cfg *manager.Config) {
		if !cfg.XDS.InsecurePlaintext || cfg.IstioEnabled() {
			t.Errorf("xds.insecurePlaintext %v, istio %v: want plaintext, no Istio", cfg.XDS.InsecurePlaintext, cfg.IstioEnabled())
		}
		if cfg.Git == nil || cfg.Git.URL != "https://git.example.com/platform/rollouts.git" {
			t.Errorf("git = %+v, want the values' git section", cfg.Git)
		}
		if cfg.Reconcile.MaxConcurrent != 20 {
			t.Errorf("reconcile.maxConcurrent = %d, want 20 from config", cfg.Reconcile.MaxConcurrent)
		}
	},
}}

// TestChartRendersAndApplies lints the chart, renders it with each values
// file, checks that the controller would accept the configuration it
// renders and that the pod agrees with it (ports, mounted files), and
// applies every object to a real API server with a server-side dry run.
func TestChartRendersAndApplies(t *testing.T) {
	t.Parallel()
	c := env.Client(t)
	for _, tc := range chartCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			lint := []string{"lint", "--strict", chartDir}
			for _, f := range tc.values {
				lint = append(lint, "--values", f)
			}
			if _, err := helm(t, lint...); err != nil {
				t.Fatal(err)
			}
			ns := kubetest.Namespace(t, c, "sluice-chart-")
			objs, err := render(t, ns, tc.values)
			if err != nil {
				t.Fatal(err)
			}
			if got := kinds(objs); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("rendered kinds %v, want %v", got, tc.want)
			}
			for _, o := range objs {
				if o.GetNamespace() == "" && namespaced(o.GetKind()) {
					t.Errorf("%s %s has no namespace", o.GetKind(), o.GetName())
				}
			}
			cfg := controllerConfig(t, find(t, objs, "ConfigMap", "sluice-controller"))
			podAgreesWithConfig(t, objs, cfg)
			if tc.check != nil {
				tc.check(t, objs, cfg)
			}
			for _, o := range objs {
				err := c.Patch(context.Background(), o, client.Apply, client.DryRunAll, client.ForceOwnership,
					client.FieldOwner("helm-chart-test"), client.FieldValidation("Strict"))
				if err != nil {
					t.Errorf("server-side dry run of %s %s: %v", o.GetKind(), o.GetName(), err)
				}
			}
		})
	}
}

func namespaced(kind string) bool {
	switch kind {
	case "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "Namespace":
		return false
	}
	return true
}

// podAgreesWithConfig checks the Deployment, Service and NetworkPolicy
// against the configuration: the container exposes the ports it listens
// on, every file it names is in a mounted volume, and the Service the
// self-signed certificate is for exists.
func podAgreesWithConfig(t *testing.T, objs []*unstructured.Unstructured, cfg *manager.Config) {
	t.Helper()
	d := find(t, objs, "Deployment", "sluice-controller")
	containers, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	if len(containers) != 1 {
		t.Fatalf("%d containers, want 1", len(containers))
	}
	ctr := containers[0].(map[string]any)
	ports := map[string]int64{}
	for _, p := range ctr["ports"].([]any) {
		p := p.(map[string]any)
		ports[p["name"].(string)] = p["containerPort"].(int64)
	}
	port := func(addr string) int64 {
		_, p, _ := strings.Cut(addr, ":")
		n, _ := strconv.ParseInt(p, 10, 64)
		return n
	}
	for name, addr := range map[string]string{"grpc-xds": cfg.XDS.Address, "http-metrics": cfg.HTTP.MetricsAddress, "http-probes": cfg.HTTP.ProbeAddress} {
		if ports[name] != port(addr) {
			t.Errorf("container port %s = %d, but the controller listens on %s", name, ports[name], addr)
		}
	}
	if p, ok := ports["http-web"]; ok && p != port(cfg.HTTP.WebhookAddress) {
		t.Errorf("container port http-web = %d, but the controller listens on %s", p, cfg.HTTP.WebhookAddress)
	}
	var mounts []string
	for _, m := range ctr["volumeMounts"].([]any) {
		mounts = append(mounts, m.(map[string]any)["mountPath"].(string))
	}
	for _, f := range []string{"/etc/sluice/controller.yaml", cfg.StateDir + "/", cfg.XDS.CertFile, cfg.XDS.KeyFile, cfg.XDS.ClientCAFile} {
		if f == "" {
			continue
		}
		if !slices.ContainsFunc(mounts, func(m string) bool { return strings.HasPrefix(f, m+"/") }) {
			t.Errorf("%s is in no mounted volume (%v)", f, mounts)
		}
	}
	if cfg.XDS.TLS.Mode == manager.XDSTLSSelfSigned {
		find(t, objs, "Service", cfg.XDS.TLS.SelfSigned.ServiceName)
	}
	for _, o := range objs {
		if o.GetKind() != "NetworkPolicy" {
			continue
		}
		ingress, _, _ := unstructured.NestedSlice(o.Object, "spec", "ingress")
		var open []int64
		for _, rule := range ingress {
			for _, p := range rule.(map[string]any)["ports"].([]any) {
				open = append(open, p.(map[string]any)["port"].(int64))
			}
		}
		for name, p := range ports {
			if !slices.Contains(open, p) {
				t.Errorf("the NetworkPolicy lets nothing reach port %s (%d)", name, p)
			}
		}
	}
}

// TestChartRefusesBadValues: values the controller would refuse, or that
// would break high availability, fail at `helm template` with a message
// naming the value.
func TestChartRefusesBadValues(t *testing.T) {
	t.Parallel()
	testbin.Require(t, "helm")
	for _, tc := range []struct {
		set  []string
		want string
	}{
		{[]string{"leaderElection.enabled=false"}, "leaderElection.enabled: false with replicaCount > 1"},
		// values.schema.json
		{[]string{"xds.tls.mode=vault"}, "/xds/tls/mode"},
		{[]string{"replicas=3"}, "'replicas' not allowed"},
		{[]string{"replicaCount=0"}, "/replicaCount"},
		{[]string{"xds.tls.mode=files"}, "xds.tls.files.secretName"},
		{[]string{"xds.tls.mode=certManager", "xds.tls.certManager.createCertificate=true"}, "xds.tls.certManager.issuerRef.name"},
		{[]string{"serviceAccount.create=false"}, "serviceAccount.name"},
	} {
		t.Run(strings.Join(tc.set, ","), func(t *testing.T) {
			t.Parallel()
			_, err := render(t, "sluice-system", nil, tc.set...)
			var he *helmError
			if !errors.As(err, &he) || !strings.Contains(he.output, tc.want) {
				t.Errorf("helm template --set %v: err %v, want one saying %q", tc.set, err, tc.want)
			}
		})
	}
}

// TestChartMatchesKustomizeInstall renders the chart with its defaults as
// `helm install sluice -n sluice-system` would and compares it with the
// kustomize install (crds/install.yaml, the bundle of crds/): the same
// CRDs, RBAC rules and bindings, controller configuration, container,
// volumes, Service ports, PodDisruptionBudget and NetworkPolicy. Only the
// Namespace is left to Helm (--create-namespace), and the chart's labels
// add the release.
func TestChartMatchesKustomizeInstall(t *testing.T) {
	t.Parallel()
	const ns = "sluice-system"
	chart, err := render(t, ns, nil)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("../crds/install.yaml")
	if err != nil {
		t.Fatal(err)
	}
	kust := decodeAll(t, "crds/install.yaml", data)
	for _, k := range kust {
		if k.GetKind() == "Namespace" {
			continue
		}
		h := find(t, chart, k.GetKind(), k.GetName())
		if h.GetNamespace() != k.GetNamespace() {
			t.Errorf("%s %s: namespace %q, kustomize %q", k.GetKind(), k.GetName(), h.GetNamespace(), k.GetNamespace())
		}
		same := func(path ...string) {
			t.Helper()
			kv, _, _ := unstructured.NestedFieldNoCopy(k.Object, path...)
			hv, _, _ := unstructured.NestedFieldNoCopy(h.Object, path...)
			if !reflect.DeepEqual(kv, hv) {
				t.Errorf("%s %s: %s differs from crds/:\n chart:     %v\n kustomize: %v", k.GetKind(), k.GetName(), strings.Join(path, "."), hv, kv)
			}
		}
		switch k.GetKind() {
		case "CustomResourceDefinition":
			same("spec")
			same("metadata", "annotations", "controller-gen.kubebuilder.io/version")
		case "ClusterRole", "Role":
			same("rules")
			same("aggregationRule")
			for key, v := range k.GetLabels() {
				if strings.HasPrefix(key, "rbac.authorization.k8s.io/") && h.GetLabels()[key] != v {
					t.Errorf("%s %s: label %s=%q, kustomize %q", k.GetKind(), k.GetName(), key, h.GetLabels()[key], v)
				}
			}
		case "ClusterRoleBinding", "RoleBinding":
			same("roleRef")
			same("subjects")
		case "ConfigMap":
			kc, hc := controllerConfig(t, k), controllerConfig(t, h)
			if !reflect.DeepEqual(kc, hc) {
				t.Errorf("the controller's configuration differs from crds/:\n chart:     %+v\n kustomize: %+v", hc, kc)
			}
		case "Deployment":
			same("spec", "replicas")
			same("spec", "template", "spec", "serviceAccountName")
			same("spec", "template", "spec", "securityContext")
			same("spec", "template", "spec", "volumes")
			hc, _, _ := unstructured.NestedSlice(h.Object, "spec", "template", "spec", "containers")
			for _, c := range hc {
				delete(c.(map[string]any), "imagePullPolicy")
			}
			if err := unstructured.SetNestedSlice(h.Object, hc, "spec", "template", "spec", "containers"); err != nil {
				t.Fatal(err)
			}
			same("spec", "template", "spec", "containers")
		case "Service":
			same("spec", "ports")
			same("spec", "clusterIP")
		case "PodDisruptionBudget":
			same("spec", "minAvailable")
			same("spec", "maxUnavailable")
		case "NetworkPolicy":
			same("spec", "policyTypes")
			same("spec", "ingress")
			same("spec", "egress")
		case "ServiceAccount":
		default:
			t.Errorf("crds/install.yaml has a %s (%s) the test does not compare: add it", k.GetKind(), k.GetName())
		}
	}
	if got, want := len(chart), len(kust)-1; got != want {
		t.Errorf("the chart renders %d objects (%v), crds/install.yaml has %d besides the Namespace (%v)", got, kinds(chart), want, kinds(kust))
	}
}

// TestChartCopiesUpToDate: the chart reads the CRDs, the controller's RBAC
// rules and the Grafana dashboard from copies under files/, which `make
// generate` refreshes from crds/ and grafana/.
func TestChartCopiesUpToDate(t *testing.T) {
	t.Parallel()
	pairs := map[string]string{
		"../crds/rbac/role.yaml": chartDir + "/files/rbac/role.yaml",
		"grafana/sluice.json":    chartDir + "/files/grafana/sluice.json",
	}
	crds, err := filepath.Glob("../crds/sluice.dev_*.yaml")
	if err != nil || len(crds) == 0 {
		t.Fatalf("no CRDs in ../crds (err %v)", err)
	}
	for _, f := range crds {
		pairs[f] = chartDir + "/files/crds/" + filepath.Base(f)
	}
	copies, err := filepath.Glob(chartDir + "/files/crds/*")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range copies {
		if !slices.Contains(crds, "../crds/"+filepath.Base(c)) {
			t.Errorf("%s is no CRD of crds/ any more: run `make generate` and commit deploy/helm/sluice/files/", c)
		}
	}
	for src, dst := range pairs {
		want, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(dst)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s is not a copy of %s (err %v): run `make generate` and commit deploy/helm/sluice/files/ with the change to %s", dst, src, err, src)
		}
	}
}
