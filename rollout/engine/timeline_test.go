package engine

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// simUpdate rewrites the golden timelines: go test ./rollout/engine -run Timeline -update
var simUpdate = flag.Bool("update", false, "rewrite testdata/*.golden from the simulated timelines")

// TestTimeline runs whole rollouts in the simulator and compares their
// timelines with testdata/<name>.golden.
func TestTimeline(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		run  func(t *testing.T) *sim
	}{
		{"canary_bookinfo_reviews", timelineCanaryBookinfo},
		{"canary_analysis_fails_then_retry", timelineCanaryFailRetry},
		{"bluegreen_preview_manual_promote", timelineBlueGreen},
		{"dark_release_then_canary", timelineDarkRelease},
		{"extra_revisions_bookinfo", timelineExtraRevisions},
		{"replicas_router_canary", timelineReplicasRouter},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := tc.run(t)
			got := s.timeline()
			path := filepath.Join("testdata", tc.name+".golden")
			if *simUpdate {
				if err := os.MkdirAll("testdata", 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("timeline differs from %s (run with -update to accept):\n%s", path, simLineDiff(string(want), got))
			}
		})
	}
}

// simLineDiff shows the first lines where want and got differ, with context.
func simLineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	i := 0
	for i < len(w) && i < len(g) && w[i] == g[i] {
		i++
	}
	var b strings.Builder
	for j := max(0, i-3); j < i; j++ {
		b.WriteString("    " + w[j] + "\n")
	}
	for j := i; j < min(len(w), i+6); j++ {
		b.WriteString("  - " + w[j] + "\n")
	}
	for j := i; j < min(len(g), i+6); j++ {
		b.WriteString("  + " + g[j] + "\n")
	}
	return b.String()
}

func simI32(v int32) *int32 { return &v }

func simStr(v string) *string { return &v }

func simDur(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }

func simWeight(w int32) v1alpha1.CanaryStep { return v1alpha1.CanaryStep{SetWeight: &w} }

func simPause(d time.Duration) v1alpha1.CanaryStep {
	p := &v1alpha1.PauseStep{}
	if d > 0 {
		p.Duration = simDur(d)
	}
	return v1alpha1.CanaryStep{Pause: p}
}

func simAnalysis(templates ...string) *v1alpha1.AnalysisStep {
	a := &v1alpha1.AnalysisStep{}
	for _, n := range templates {
		a.Templates = append(a.Templates, v1alpha1.TemplateRef{Name: n})
	}
	return a
}

func simBookinfoTemplate(version string) *corev1.PodTemplateSpec {
	return &corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "reviews"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name:  "reviews",
			Image: "docker.io/istio/examples-bookinfo-reviews-" + version + ":1.20.1",
			Ports: []corev1.ContainerPort{{ContainerPort: 9080}},
		}}},
	}
}

// (i) Bookinfo reviews v1 → v2 in controller mode: 5%, a one-minute pause,
// analysis, 25%, 50%, a manual gate, and promotion by a person.
func timelineCanaryBookinfo(t *testing.T) *sim {
	ro := &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "reviews", Namespace: "bookinfo"},
		Spec: v1alpha1.RolloutSpec{
			Service:  v1alpha1.ServiceSpec{Name: "reviews", Hosts: []string{"reviews"}, Port: 9080},
			Replicas: simI32(4),
			Template: simBookinfoTemplate("v1"),
			Strategy: v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{Steps: []v1alpha1.CanaryStep{
				simWeight(5),
				simPause(time.Minute),
				{Analysis: &v1alpha1.AnalysisStep{
					Templates: []v1alpha1.TemplateRef{{Name: "success-rate"}, {Name: "latency-p99"}},
					Args:      []v1alpha1.Argument{{Name: "threshold", Value: "0.99"}},
				}},
				simWeight(25),
				simWeight(50),
				simPause(0),
			}}},
			ScaleDownDelaySeconds: simI32(60),
		},
	}
	s := newSim(t, ro)
	s.alias(&ro.Spec, "v1")
	v2 := ro.Spec.DeepCopy()
	v2.Template = simBookinfoTemplate("v2")
	s.alias(v2, "v2")
	s.results["1-step3"] = simResult{Phase: v1alpha1.AnalysisSuccessful, After: 3 * time.Minute, Message: "success-rate 0.997, latency-p99 212ms"}
	s.at(0, simPush("reviews image v2", func(sp *v1alpha1.RolloutSpec) { sp.Template = simBookinfoTemplate("v2") }))
	s.at(15*time.Minute, simCommand(v1alpha1.CommandPromote, "alice"))
	s.run(2 * time.Hour)
	return s
}

func simBackend(version string, ip string) *v1alpha1.Backend {
	return &v1alpha1.Backend{Version: version, Endpoints: []string{ip + ":8080"}}
}

// (ii) Standalone checkout v1 → v2: analysis fails at 25%, the rollout
// aborts to 100% stable and asks for a Git revert; an operator retries and
// the second attempt goes through.
func timelineCanaryFailRetry(t *testing.T) *sim {
	ro := &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "checkout"},
		Spec: v1alpha1.RolloutSpec{
			Service: v1alpha1.ServiceSpec{Name: "checkout", Hosts: []string{"checkout.shop.svc"}, Port: 8080,
				Policy: &v1alpha1.RoutePolicy{Timeout: simDur(2 * time.Second)}},
			Backend: simBackend("v1", "10.0.1.10"),
			Strategy: v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{Steps: []v1alpha1.CanaryStep{
				simWeight(10),
				simPause(30 * time.Second),
				simWeight(25),
				{Analysis: simAnalysis("error-rate")},
				simWeight(50),
				simPause(time.Minute),
			}}},
			Rollback: v1alpha1.RollbackPolicy{GitRevert: true},
		},
	}
	s := newSim(t, ro)
	s.results["1-step4"] = simResult{Phase: v1alpha1.AnalysisFailed, After: 90 * time.Second, Message: "error-rate: 0.071 > 0.05 (3 of 3 measurements)"}
	s.results["2-step4"] = simResult{Phase: v1alpha1.AnalysisSuccessful, After: 2 * time.Minute, Message: "error-rate: 0.004"}
	s.at(0, simPush("checkout backend v2", func(sp *v1alpha1.RolloutSpec) { sp.Backend = simBackend("v2", "10.0.1.20") }))
	// The revert commit waits for review; meanwhile the cause (a bad
	// config flag) is fixed outside the Rollout and v2 is retried.
	s.at(20*time.Minute, simCommand(v1alpha1.CommandRetry, "oncall"))
	s.run(2 * time.Hour)
	if len(s.reverts) != 1 {
		t.Errorf("got %d Git reverts, want 1", len(s.reverts))
	}
	return s
}

// (iii) Blue/green in controller mode: a preview header and a preview host,
// pre-promotion analysis, a manual promote, post-promotion analysis, and the
// old revision kept for the scale-down delay.
func timelineBlueGreen(t *testing.T) *sim {
	tmpl := func(v string) *corev1.PodTemplateSpec {
		return &corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "frontend"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "frontend", Image: "registry.example.com/frontend:" + v}}},
		}
	}
	ro := &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "frontend", Namespace: "web"},
		Spec: v1alpha1.RolloutSpec{
			Service:  v1alpha1.ServiceSpec{Name: "frontend", Hosts: []string{"www.example.com"}, Port: 8080},
			Replicas: simI32(3),
			Template: tmpl("2.3.0"),
			Strategy: v1alpha1.Strategy{BlueGreen: &v1alpha1.BlueGreenStrategy{
				Preview: v1alpha1.PreviewSpec{
					Match: []v1alpha1.RouteMatch{{Headers: []v1alpha1.HeaderMatch{{Name: "x-preview", Exact: simStr("true")}}}},
					Hosts: []string{"preview.example.com"},
				},
				PrePromotionAnalysis:  simAnalysis("smoke-tests"),
				PostPromotionAnalysis: simAnalysis("success-rate"),
			}},
			ScaleDownDelaySeconds: simI32(300),
		},
	}
	s := newSim(t, ro)
	s.alias(&ro.Spec, "2.3.0")
	v2 := ro.Spec.DeepCopy()
	v2.Template = tmpl("2.4.0")
	s.alias(v2, "2.4.0")
	s.readyDelay = 45 * time.Second
	s.results["1-pre"] = simResult{Phase: v1alpha1.AnalysisSuccessful, After: 90 * time.Second, Message: "smoke-tests: 12/12 passed"}
	s.results["1-post"] = simResult{Phase: v1alpha1.AnalysisSuccessful, After: 5 * time.Minute, Message: "success-rate 0.998"}
	s.at(0, simPush("frontend image 2.4.0", func(sp *v1alpha1.RolloutSpec) { sp.Template = tmpl("2.4.0") }))
	s.at(10*time.Minute, simCommand(v1alpha1.CommandPromote, "bob"))
	s.run(2 * time.Hour)
	return s
}

// (iv) A dark release for `end-user: jason` and a beta cookie, judged by
// analysis for at least five minutes, then canary steps; a person pauses and
// resumes on the way.
func timelineDarkRelease(t *testing.T) *sim {
	ro := &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "reviews"},
		Spec: v1alpha1.RolloutSpec{
			Service: v1alpha1.ServiceSpec{Name: "reviews", Hosts: []string{"reviews"}, Port: 9080,
				SessionAffinity: &v1alpha1.SessionAffinity{Cookie: &v1alpha1.CookieAffinity{}}},
			Backend: simBackend("v2", "10.0.2.2"),
			Strategy: v1alpha1.Strategy{DarkRelease: &v1alpha1.DarkReleaseStrategy{
				Match: []v1alpha1.RouteMatch{
					{Headers: []v1alpha1.HeaderMatch{{Name: "end-user", Exact: simStr("jason")}}},
					{Cookies: []v1alpha1.CookieMatch{{Name: "beta", Value: "on"}}},
				},
				Analysis: &v1alpha1.AnalysisStep{
					Templates: []v1alpha1.TemplateRef{{Name: "error-rate"}},
					Args:      []v1alpha1.Argument{{Name: "match", Value: "end-user=jason"}},
				},
				Duration: simDur(5 * time.Minute),
				Steps: []v1alpha1.CanaryStep{
					simWeight(20),
					simPause(2 * time.Minute),
					simWeight(50),
					simPause(2 * time.Minute),
				},
			}},
		},
	}
	s := newSim(t, ro)
	s.ackDelay = time.Second
	s.results["1-dark"] = simResult{Phase: v1alpha1.AnalysisSuccessful, After: 3 * time.Minute, Message: "error-rate 0.001 over 212 dark requests"}
	s.at(0, simPush("reviews backend v3", func(sp *v1alpha1.RolloutSpec) { sp.Backend = simBackend("v3", "10.0.2.3") }))
	s.at(6*time.Minute, simCommand(v1alpha1.CommandPause, "carol"))
	s.at(9*time.Minute, simCommand(v1alpha1.CommandResume, "carol"))
	s.run(2 * time.Hour)
	return s
}

// (v) bookinfo's reviews with extra revisions: jason pinned to v2 for the
// whole rollout, a baseline of v1 at 10% for five minutes next to the
// canary's 10% with an analysis comparing the two, then 50/50 v1/v3 and
// promotion; a first attempt is aborted by a person and retried.
func timelineExtraRevisions(t *testing.T) *sim {
	ro := &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "reviews"},
		Spec: v1alpha1.RolloutSpec{
			Service: v1alpha1.ServiceSpec{Name: "reviews", Hosts: []string{"reviews"}, Port: 9080},
			Backend: simBackend("v1", "10.0.3.1"),
			Strategy: v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{Steps: []v1alpha1.CanaryStep{
				{SetRevision: &v1alpha1.RevisionStep{Name: "jason", Backend: simBackend("v2", "10.0.3.2"),
					Match: []v1alpha1.RouteMatch{{Headers: []v1alpha1.HeaderMatch{{Name: "end-user", Exact: simStr("jason")}}}}}},
				{SetRevision: &v1alpha1.RevisionStep{Name: "baseline", Backend: simBackend("v1-baseline", "10.0.3.4"), Weight: 10, Duration: simDur(5 * time.Minute)}},
				simWeight(10),
				{Analysis: &v1alpha1.AnalysisStep{Templates: []v1alpha1.TemplateRef{{Name: "compare"}}, Baseline: "baseline"}},
				simWeight(50),
				simPause(5 * time.Minute),
			}}},
		},
	}
	s := newSim(t, ro)
	s.ackDelay = time.Second
	s.results["1-3"] = simResult{Phase: v1alpha1.AnalysisSuccessful, After: 3 * time.Minute, Message: "canary vs baseline: no significant difference"}
	s.results["2-3"] = simResult{Phase: v1alpha1.AnalysisSuccessful, After: 3 * time.Minute, Message: "canary vs baseline: no significant difference"}
	s.at(0, simPush("reviews backend v3", func(sp *v1alpha1.RolloutSpec) { sp.Backend = simBackend("v3", "10.0.3.3") }))
	s.at(30*time.Second, simCommand(v1alpha1.CommandAbort, "dave"))
	s.at(2*time.Minute, simCommand(v1alpha1.CommandRetry, "dave"))
	s.run(2 * time.Hour)
	return s
}

// (vi) No router: checkout's canary as pod counts behind one Service, ten
// replicas. v2 goes 10% → analysis → 50% → promotion; each step waits for
// its pods, the canary grows before stable shrinks, and no data-plane
// answer is needed. v3 is then aborted by a person at 30%, which three
// replicas of ten run exactly.
func timelineReplicasRouter(t *testing.T) *sim {
	tmpl := func(v string) *corev1.PodTemplateSpec {
		return &corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "checkout"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "checkout", Image: "registry.example.com/checkout:" + v}}},
		}
	}
	ro := &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "checkout", Namespace: "shop"},
		Spec: v1alpha1.RolloutSpec{
			Service: v1alpha1.ServiceSpec{Name: "checkout", Hosts: []string{"checkout"}, Port: 8080,
				Routers: []v1alpha1.Router{{Replicas: &v1alpha1.ReplicasRouter{}}}},
			Replicas: simI32(10),
			Template: tmpl("v1"),
			Strategy: v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{Steps: []v1alpha1.CanaryStep{
				simWeight(10),
				{Analysis: simAnalysis("error-rate")},
				simWeight(50),
				simPause(5 * time.Minute),
			}}},
			ScaleDownDelaySeconds: simI32(60),
		},
	}
	s := newSim(t, ro)
	for _, v := range []string{"v1", "v2", "v3"} {
		spec := ro.Spec.DeepCopy()
		spec.Template = tmpl(v)
		s.alias(spec, v)
	}
	s.at(0, simPush("checkout image v2", func(sp *v1alpha1.RolloutSpec) { sp.Template = tmpl("v2") }))
	s.at(30*time.Minute, simPush("checkout image v3, steps 30% and a manual gate", func(sp *v1alpha1.RolloutSpec) {
		sp.Template = tmpl("v3")
		sp.Strategy.Canary.Steps = []v1alpha1.CanaryStep{simWeight(30), simPause(0)}
	}))
	s.at(33*time.Minute, simCommand(v1alpha1.CommandAbort, "erin"))
	s.run(2 * time.Hour)
	return s
}
