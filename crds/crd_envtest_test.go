package crds_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// One envtest control plane (real kube-apiserver + etcd from bin/) with the
// Sluice CRDs serves all tests of this package; it starts with the first
// test that needs it, so `go test -run TestGenerated` does not pay for it.
var env = kubetest.NewEnv(apiextensionsv1.AddToScheme)

func TestMain(m *testing.M) { os.Exit(env.Run(m)) }

// cluster returns a client of the shared API server with the Sluice CRDs
// installed. It skips the test when the binaries are missing (fails with
// CI=true).
func cluster(t *testing.T) client.Client { return env.Client(t) }

// namespace creates a namespace of its own for one test.
func namespace(t *testing.T, c client.Client) string {
	return kubetest.Namespace(t, c, "sluice-test-")
}

func validRollout(ns, name string) *v1alpha1.Rollout {
	return &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.RolloutSpec{
			Service: v1alpha1.ServiceSpec{
				Name:  "checkout",
				Hosts: []string{"checkout.shop.svc.cluster.local"},
				Port:  8080,
			},
			Replicas: ptr.To[int32](3),
			Template: &corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "checkout"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name:  "app",
					Image: "ghcr.io/example/checkout:v2",
				}}},
			},
			Strategy: v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{Steps: []v1alpha1.CanaryStep{
				{SetWeight: ptr.To[int32](10)},
				{Pause: &v1alpha1.PauseStep{Duration: &metav1.Duration{Duration: 2 * time.Minute}}},
				{Analysis: &v1alpha1.AnalysisStep{
					Templates: []v1alpha1.TemplateRef{{Name: "success-rate"}},
					Args:      []v1alpha1.Argument{{Name: "threshold", Value: "0.99"}},
				}},
				{SetHeaderRoute: &v1alpha1.HeaderRouteStep{
					Name: "testers",
					Match: []v1alpha1.RouteMatch{{Headers: []v1alpha1.HeaderMatch{
						{Name: "x-canary", Exact: ptr.To("true")},
					}}},
				}},
				{SetMirror: &v1alpha1.MirrorStep{Percent: 5}},
				{SetWeight: ptr.To[int32](50)},
				{Pause: &v1alpha1.PauseStep{}}, // wait for promote
			}}},
		},
	}
}

func TestRolloutValidIsDefaulted(t *testing.T) {
	c := cluster(t)
	ctx := context.Background()
	ro := validRollout(namespace(t, c), "checkout")
	if err := c.Create(ctx, ro); err != nil {
		t.Fatalf("valid Rollout refused: %v", err)
	}

	got := &v1alpha1.Rollout{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(ro), got); err != nil {
		t.Fatal(err)
	}
	if p := got.Spec.ProgressDeadlineSeconds; p == nil || *p != 600 {
		t.Errorf("progressDeadlineSeconds = %v, want default 600", fmtPtr(p))
	}
	if s := got.Spec.ScaleDownDelaySeconds; s == nil || *s != 30 {
		t.Errorf("scaleDownDelaySeconds = %v, want default 30", fmtPtr(s))
	}
	if a := got.Spec.Rollback.OnAnalysisFailure; a != v1alpha1.ActionAbort {
		t.Errorf("rollback.onAnalysisFailure = %q, want default Abort", a)
	}
	if a := got.Spec.Rollback.OnNack; a != v1alpha1.ActionAbort {
		t.Errorf("rollback.onNack = %q, want default Abort", a)
	}
	// Nothing the user wrote may be pruned, the embedded pod template
	// (whose metadata needs generateEmbeddedObjectMeta) included.
	if got.Spec.Template == nil || got.Spec.Template.Labels["app"] != "checkout" {
		t.Errorf("spec.template.metadata.labels lost: %+v", got.Spec.Template)
	}
	if n := len(got.Spec.Strategy.Canary.Steps); n != 7 {
		t.Fatalf("read back %d steps, want 7", n)
	}
	if got.Spec.Strategy.Canary.Steps[6].Pause == nil {
		t.Error("an empty pause step ({}) was dropped")
	}
	if h := got.Spec.Strategy.Canary.Steps[3].SetHeaderRoute; h == nil || len(h.Match) != 1 || ptr.Deref(h.Match[0].Headers[0].Exact, "") != "true" {
		t.Errorf("setHeaderRoute not read back intact: %+v", h)
	}
}

func TestRolloutSchemaRefusesInvalid(t *testing.T) {
	c := cluster(t)
	ns := namespace(t, c)
	tests := []struct {
		name   string
		mutate func(*v1alpha1.Rollout)
		want   string
	}{{
		name:   "setWeight over 100",
		mutate: func(r *v1alpha1.Rollout) { r.Spec.Strategy.Canary.Steps[0].SetWeight = ptr.To[int32](101) },
		want:   "less than or equal to 100",
	}, {
		name: "step with two actions",
		mutate: func(r *v1alpha1.Rollout) {
			r.Spec.Strategy.Canary.Steps[0].Pause = &v1alpha1.PauseStep{}
		},
		want: "a step must set exactly one of setWeight, pause, analysis, setHeaderRoute, setMirror or setRevision",
	}, {
		name: "empty step",
		mutate: func(r *v1alpha1.Rollout) {
			r.Spec.Strategy.Canary.Steps[0] = v1alpha1.CanaryStep{}
		},
		want: "a step must set exactly one of",
	}, {
		name: "both template and backend",
		mutate: func(r *v1alpha1.Rollout) {
			r.Spec.Backend = &v1alpha1.Backend{Version: "v2", Endpoints: []string{"10.0.0.1:8080"}}
		},
		want: "exactly one of template (controller mode) or backend (standalone mode) must be set",
	}, {
		name:   "neither template nor backend",
		mutate: func(r *v1alpha1.Rollout) { r.Spec.Template = nil; r.Spec.Replicas = nil },
		want:   "exactly one of template (controller mode) or backend (standalone mode) must be set",
	}, {
		name:   "template without replicas",
		mutate: func(r *v1alpha1.Rollout) { r.Spec.Replicas = nil },
		want:   "replicas is required with template",
	}, {
		name: "two strategy kinds",
		mutate: func(r *v1alpha1.Rollout) {
			r.Spec.Strategy.BlueGreen = &v1alpha1.BlueGreenStrategy{
				Preview: v1alpha1.PreviewSpec{Hosts: []string{"preview.example.com"}},
			}
		},
		want: "exactly one of canary, blueGreen or darkRelease must be set",
	}, {
		name:   "no strategy kind",
		mutate: func(r *v1alpha1.Rollout) { r.Spec.Strategy = v1alpha1.Strategy{} },
		want:   "exactly one of canary, blueGreen or darkRelease must be set",
	}, {
		name: "header match with exact and prefix",
		mutate: func(r *v1alpha1.Rollout) {
			h := &r.Spec.Strategy.Canary.Steps[3].SetHeaderRoute.Match[0].Headers[0]
			h.Prefix = ptr.To("tr")
		},
		want: "exactly one of exact, prefix, regex or present must be set",
	}, {
		name: "blueGreen preview without match or hosts",
		mutate: func(r *v1alpha1.Rollout) {
			r.Spec.Strategy = v1alpha1.Strategy{BlueGreen: &v1alpha1.BlueGreenStrategy{}}
		},
		want: "preview needs match or hosts",
	}, {
		name: "deny window with unknown kind",
		mutate: func(r *v1alpha1.Rollout) {
			r.Spec.Windows = []v1alpha1.DeploymentWindow{{Kind: "Maybe", Schedule: "@daily", Duration: metav1.Duration{Duration: time.Hour}}}
		},
		want: `supported values: "Allow", "Deny"`,
	}}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ro := validRollout(ns, fmt.Sprintf("invalid-%d", i))
			tt.mutate(ro)
			err := c.Create(context.Background(), ro)
			if err == nil {
				t.Fatalf("created; want refusal containing %q", tt.want)
			}
			if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q, want Invalid containing %q", err, tt.want)
			}
		})
	}
}

func TestRolloutStatusSubresource(t *testing.T) {
	c := cluster(t)
	ctx := context.Background()
	ro := validRollout(namespace(t, c), "status")
	if err := c.Create(ctx, ro); err != nil {
		t.Fatal(err)
	}

	ro.Status = v1alpha1.RolloutStatus{
		ObservedGeneration: ro.Generation,
		Phase:              v1alpha1.PhaseProgressing,
		StableRevision:     "6d4b9c",
		CanaryRevision:     "7f8e1a",
		CurrentStepIndex:   ptr.To[int32](1),
		StepCount:          7,
		StepDisplay:        "1/7",
		Traffic:            v1alpha1.TrafficStatus{PlanVersion: "p1", StableWeight: 90, CanaryWeight: 10},
		Conditions: []metav1.Condition{{
			Type: v1alpha1.ConditionProgressing, Status: metav1.ConditionTrue,
			Reason: v1alpha1.ReasonStepAdvanced, Message: "step 1/7", LastTransitionTime: metav1.Now(),
		}},
	}
	if err := c.Status().Update(ctx, ro); err != nil {
		t.Fatalf("status update: %v", err)
	}
	got := &v1alpha1.Rollout{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(ro), got); err != nil {
		t.Fatal(err)
	}
	if got.Status.Phase != v1alpha1.PhaseProgressing || got.Status.Traffic.CanaryWeight != 10 || got.Status.StepDisplay != "1/7" {
		t.Errorf("status not stored: %+v", got.Status)
	}

	// With a status subresource, the main resource ignores status changes.
	got.Status.Phase = v1alpha1.PhaseDegraded
	got.Spec.Paused = true
	if err := c.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	again := &v1alpha1.Rollout{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(ro), again); err != nil {
		t.Fatal(err)
	}
	if !again.Spec.Paused || again.Status.Phase != v1alpha1.PhaseProgressing {
		t.Errorf("after a main-resource update: paused=%v phase=%q, want true and Progressing", again.Spec.Paused, again.Status.Phase)
	}

	// The status schema is validated too.
	again.Status.Phase = "Bogus"
	if err := c.Status().Update(ctx, again); !apierrors.IsInvalid(err) {
		t.Errorf("status with phase Bogus: err %v, want Invalid", err)
	}
}

func TestRolloutPrinterColumns(t *testing.T) {
	c := cluster(t)
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := c.Get(context.Background(), client.ObjectKey{Name: "rollouts.sluice.dev"}, crd); err != nil {
		t.Fatal(err)
	}
	if len(crd.Spec.Versions) != 1 || crd.Spec.Versions[0].Name != "v1alpha1" {
		t.Fatalf("versions %+v, want only v1alpha1", crd.Spec.Versions)
	}
	v := crd.Spec.Versions[0]
	if v.Subresources == nil || v.Subresources.Status == nil {
		t.Error("no status subresource")
	}
	var names, wide []string
	for _, col := range v.AdditionalPrinterColumns {
		if col.Priority > 0 {
			wide = append(wide, col.Name)
			continue
		}
		names = append(names, col.Name)
	}
	if want := []string{"Phase", "Step", "Weight", "Stable", "Stable Ready", "Canary", "Canary Ready", "Age"}; !slices.Equal(names, want) {
		t.Errorf("printer columns %v, want %v", names, want)
	}
	// The Git state's full hashes only with -o wide: they would push the
	// default table past a terminal's width.
	if want := []string{"Git Applied", "Git Rejected"}; !slices.Equal(wide, want) {
		t.Errorf("-o wide printer columns %v, want %v", wide, want)
	}
	// "ro" belongs to Argo Rollouts; clusters often run both.
	if !slices.Equal(crd.Spec.Names.ShortNames, []string{"sro"}) || !slices.Contains(crd.Spec.Names.Categories, "sluice") {
		t.Errorf("names %+v, want category sluice and the short name sro (ro is Argo Rollouts')", crd.Spec.Names)
	}
}

// TestCRDsAcceptLastAppliedAnnotation stores each CRD, with the annotation
// client-side `kubectl apply` would add, through a dry-run update: the API
// server itself enforces the size limit.
func TestCRDsAcceptLastAppliedAnnotation(t *testing.T) {
	c := cluster(t)
	files, _ := filepath.Glob(crdGlob)
	for _, f := range files {
		doc, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		fromFile := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.Unmarshal(doc, fromFile); err != nil {
			t.Fatal(err)
		}
		lastApplied, err := json.Marshal(fromFile)
		if err != nil {
			t.Fatal(err)
		}
		live := &apiextensionsv1.CustomResourceDefinition{}
		if err := c.Get(context.Background(), client.ObjectKey{Name: fromFile.Name}, live); err != nil {
			t.Fatal(err)
		}
		if live.Annotations == nil {
			live.Annotations = map[string]string{}
		}
		live.Annotations["kubectl.kubernetes.io/last-applied-configuration"] = string(lastApplied)
		if err := c.Update(context.Background(), live, client.DryRunAll); err != nil {
			t.Errorf("%s with a %d-byte last-applied annotation: %v", f, len(lastApplied), err)
		}
	}
}

func validAnalysisTemplate(ns, name string) *v1alpha1.AnalysisTemplate {
	return &v1alpha1.AnalysisTemplate{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1alpha1.AnalysisTemplateSpec{
			Args: []v1alpha1.ArgumentSpec{{Name: "service"}, {Name: "threshold", Value: ptr.To("0.99")}},
			Metrics: []v1alpha1.Metric{{
				Name:             "success-rate",
				Interval:         &metav1.Duration{Duration: time.Minute},
				Count:            ptr.To[int32](5),
				SuccessCondition: "result[0] >= 0.99",
				FailureLimit:     ptr.To[int32](1),
				Provider: v1alpha1.MetricProvider{Prometheus: &v1alpha1.PrometheusProvider{
					Address: "http://prometheus.monitoring:9090",
					Query:   `sum(rate(http_requests_total{service="{{args.service}}",code!~"5.."}[1m])) / sum(rate(http_requests_total{service="{{args.service}}"}[1m]))`,
				}},
			}},
		},
	}
}

func TestAnalysisTemplateSchema(t *testing.T) {
	c := cluster(t)
	ctx := context.Background()
	ns := namespace(t, c)

	at := validAnalysisTemplate(ns, "success-rate")
	if err := c.Create(ctx, at); err != nil {
		t.Fatalf("valid AnalysisTemplate refused: %v", err)
	}
	got := &v1alpha1.AnalysisTemplate{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(at), got); err != nil {
		t.Fatal(err)
	}
	if len(got.Spec.Metrics) != 1 || got.Spec.Metrics[0].Provider.Prometheus == nil || got.Spec.Metrics[0].Provider.Prometheus.Query != at.Spec.Metrics[0].Provider.Prometheus.Query {
		t.Errorf("AnalysisTemplate not read back intact: %+v", got.Spec)
	}

	tests := []struct {
		name   string
		mutate func(*v1alpha1.AnalysisTemplate)
		want   string
	}{{
		name:   "no metrics",
		mutate: func(a *v1alpha1.AnalysisTemplate) { a.Spec.Metrics = []v1alpha1.Metric{} },
		want:   "should have at least 1 items",
	}, {
		name:   "metric name not a DNS label",
		mutate: func(a *v1alpha1.AnalysisTemplate) { a.Spec.Metrics[0].Name = "Success_Rate" },
		want:   "spec.metrics[0].name",
	}, {
		name:   "empty query",
		mutate: func(a *v1alpha1.AnalysisTemplate) { a.Spec.Metrics[0].Provider.Prometheus.Query = "" },
		want:   "spec.metrics[0].provider.prometheus.query",
	}, {
		name:   "count zero",
		mutate: func(a *v1alpha1.AnalysisTemplate) { a.Spec.Metrics[0].Count = ptr.To[int32](0) },
		want:   "greater than or equal to 1",
	}, {
		name:   "argument name with a dash",
		mutate: func(a *v1alpha1.AnalysisTemplate) { a.Spec.Args[0].Name = "my-arg" },
		want:   "spec.args[0].name",
	}}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := validAnalysisTemplate(ns, fmt.Sprintf("invalid-%d", i))
			tt.mutate(a)
			err := c.Create(ctx, a)
			if err == nil {
				t.Fatalf("created; want refusal containing %q", tt.want)
			}
			if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q, want Invalid containing %q", err, tt.want)
			}
		})
	}
}

func fmtPtr[T any](p *T) string {
	if p == nil {
		return "<nil>"
	}
	return fmt.Sprint(*p)
}
