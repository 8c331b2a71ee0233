package validation

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

func dur(s string) *metav1.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		panic(err)
	}
	return &metav1.Duration{Duration: d}
}

func jasonMatch() []v1alpha1.RouteMatch {
	return []v1alpha1.RouteMatch{{Headers: []v1alpha1.HeaderMatch{{Name: "end-user", Exact: new("jason")}}}}
}

func analysis(names ...string) *v1alpha1.AnalysisStep {
	a := &v1alpha1.AnalysisStep{}
	for _, n := range names {
		a.Templates = append(a.Templates, v1alpha1.TemplateRef{Name: n})
	}
	return a
}

// canary is a valid controller-mode Rollout that uses every kind of step.
// Steps: 0 setWeight, 1 pause, 2 analysis, 3 setHeaderRoute jason,
// 4 setMirror, 5 setWeight, 6 remove jason.
func canary() *v1alpha1.Rollout {
	return &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "reviews", Namespace: "bookinfo", Labels: map[string]string{"app": "reviews"}},
		Spec: v1alpha1.RolloutSpec{
			Service: v1alpha1.ServiceSpec{
				Name:  "reviews",
				Hosts: []string{"reviews", "reviews.bookinfo.svc.cluster.local"},
				Port:  9080,
			},
			Replicas: new(int32(3)),
			Template: &corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "reviews"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "reviews", Image: "docker.io/istio/examples-bookinfo-reviews-v2:1.20.2"}}},
			},
			Strategy: v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{Steps: []v1alpha1.CanaryStep{
				{SetWeight: new(int32(5))},
				{Pause: &v1alpha1.PauseStep{Duration: dur("1m")}},
				{Analysis: &v1alpha1.AnalysisStep{
					Templates: []v1alpha1.TemplateRef{{Name: "success-rate"}},
					Args:      []v1alpha1.Argument{{Name: "threshold", Value: "0.99"}},
				}},
				{SetHeaderRoute: &v1alpha1.HeaderRouteStep{Name: "jason", Match: jasonMatch()}},
				{SetMirror: &v1alpha1.MirrorStep{Percent: 10}},
				{SetWeight: new(int32(50))},
				{SetHeaderRoute: &v1alpha1.HeaderRouteStep{Name: "jason"}},
			}}},
			Analysis: &v1alpha1.BackgroundAnalysis{AnalysisStep: *analysis("success-rate"), StartingStep: new(int32(1))},
			Windows: []v1alpha1.DeploymentWindow{
				{Kind: v1alpha1.WindowAllow, Schedule: "0 9 * * 1-5", Duration: metav1.Duration{Duration: 8 * time.Hour}, TimeZone: "Europe/Berlin"},
				{Kind: v1alpha1.WindowDeny, Schedule: "@monthly", Duration: metav1.Duration{Duration: time.Hour}},
			},
			ProgressDeadlineSeconds: new(int32(600)),
			ScaleDownDelaySeconds:   new(int32(30)),
		},
	}
}

func blueGreen() *v1alpha1.Rollout {
	r := canary()
	r.Spec.Analysis = nil
	r.Spec.Strategy = v1alpha1.Strategy{BlueGreen: &v1alpha1.BlueGreenStrategy{
		Preview: v1alpha1.PreviewSpec{
			Match: []v1alpha1.RouteMatch{{Headers: []v1alpha1.HeaderMatch{{Name: "x-preview", Present: new(true)}}}},
			Hosts: []string{"preview.reviews.example.com"},
		},
		PrePromotionAnalysis:  analysis("smoke"),
		PostPromotionAnalysis: analysis("success-rate"),
		AutoPromotionSeconds:  new(int32(300)),
	}}
	return r
}

func darkRelease() *v1alpha1.Rollout {
	r := canary()
	r.Spec.Analysis = nil
	r.Spec.Strategy = v1alpha1.Strategy{DarkRelease: &v1alpha1.DarkReleaseStrategy{
		Match: []v1alpha1.RouteMatch{
			{Headers: []v1alpha1.HeaderMatch{{Name: "end-user", Exact: new("jason")}}},
			{Cookies: []v1alpha1.CookieMatch{{Name: "canary", Value: "always"}}},
		},
		Analysis: analysis("success-rate"),
		Duration: dur("10m"),
		Steps:    []v1alpha1.CanaryStep{{SetWeight: new(int32(20))}, {SetWeight: new(int32(100))}},
	}}
	return r
}

func standalone() *v1alpha1.Rollout {
	r := canary()
	r.Spec.Template = nil
	r.Spec.Replicas = nil
	r.Spec.Backend = &v1alpha1.Backend{Version: "v2", Endpoints: []string{"10.0.0.7:9080", "[fd00::7]:9080", "reviews-v2:9080"}}
	return r
}

func template() *v1alpha1.AnalysisTemplate {
	return &v1alpha1.AnalysisTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: "success-rate", Namespace: "bookinfo"},
		Spec: v1alpha1.AnalysisTemplateSpec{
			Args: []v1alpha1.ArgumentSpec{{Name: "threshold", Value: new("0.99")}, {Name: "window"}},
			Metrics: []v1alpha1.Metric{{
				Name:             "success-rate",
				Interval:         dur("1m"),
				Count:            new(int32(5)),
				SuccessCondition: "result[0] >= 0.99",
				FailureLimit:     new(int32(1)),
				Provider: v1alpha1.MetricProvider{Prometheus: &v1alpha1.PrometheusProvider{
					Address: "http://prometheus.istio-system:9090",
					Query:   `sum(rate(istio_requests_total{destination_service=~"{{args.host}}",response_code!~"5.*"}[{{ args.window }}])) / sum(rate(istio_requests_total{destination_service=~"{{args.host}}"}[{{args.window}}]))`,
					Timeout: dur("10s"),
				}},
			}},
		},
	}
}

// checkErrors asserts that errs has exactly one error per want entry, in
// order, each starting with that entry: the exact field path, the error type
// and usually the value.
func checkErrors(t *testing.T, errs field.ErrorList, want []string) {
	t.Helper()
	var got []string
	for _, e := range errs {
		got = append(got, e.Error())
	}
	ok := len(got) == len(want)
	for i := 0; ok && i < len(want); i++ {
		ok = strings.HasPrefix(got[i], want[i])
	}
	if !ok {
		t.Errorf("errors:\n  got  %q\n  want %q", got, want)
	}
}

func endUser(name string) v1alpha1.RouteMatch {
	return v1alpha1.RouteMatch{Headers: []v1alpha1.HeaderMatch{{Name: "end-user", Exact: new(name)}}}
}
