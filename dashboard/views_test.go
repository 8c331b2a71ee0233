package dashboard

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
)

func TestParseThreshold(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cond string
		op   string
		v    float64
		ok   bool
	}{
		{"result[0] >= 0.99", ">=", 0.99, true},
		{"result < 5", "<", 5, true},
		{"0.95 <= result[0]", ">=", 0.95, true},
		{"all(result, x, x < 0.05)", "<", 0.05, true},
		{"result[0] > 1e-3", ">", 0.001, true},
		{"result[1] > 3", "", 0, false},
		{"size(result) == 0 || result[0] > 3", "", 0, false},
		{"all(result, x, y < 3)", "", 0, false},
		{"", "", 0, false},
	} {
		op, v, ok := parseThreshold(tc.cond)
		if op != tc.op || v != tc.v || ok != tc.ok {
			t.Errorf("parseThreshold(%q) = %q %v %v; want %q %v %v", tc.cond, op, v, ok, tc.op, tc.v, tc.ok)
		}
	}
}

func TestFirstValue(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]float64{"0.99": 0.99, "[0.5, 0.7]": 0.5, "[3, … 4 more]": 3} {
		if v, ok := firstValue(in); !ok || v != want {
			t.Errorf("firstValue(%q) = %v %v", in, v, ok)
		}
	}
	for _, in := range []string{"", "[]", "NaN", "x"} {
		if _, ok := firstValue(in); ok {
			t.Errorf("firstValue(%q) has a value", in)
		}
	}
}

// TestMetricChart: points in time order from left to right, a higher
// value higher up, the thresholds drawn, no data on the axis, and a text
// equivalent with every measurement.
func TestMetricChart(t *testing.T) {
	t.Parallel()
	at := func(s int) metav1.Time { return metav1.NewTime(tNow.Add(time.Duration(s) * time.Second)) }
	m := rolloutapi.MetricDetail{Name: "success-rate", SuccessCondition: "result[0] >= 0.95", FailureCondition: "result[0] < 0.9",
		Measurements: []v1alpha1.Measurement{
			{Index: 0, Phase: v1alpha1.AnalysisSuccessful, At: at(0), Value: "0.99"},
			{Index: 1, Phase: v1alpha1.AnalysisInconclusive, At: at(10), Value: "[]", Message: "no data"},
			{Index: 2, Phase: v1alpha1.AnalysisFailed, At: at(20), Value: "0.5"},
		}}
	c := metricChart("run-1", m)
	if c == nil || len(c.Points) != 3 || len(c.Thresholds) != 2 || len(c.Rows) != 3 {
		t.Fatalf("chart: %+v", c)
	}
	p := c.Points
	if !(p[0].X < p[1].X && p[1].X < p[2].X) || p[0].X != c.Left || p[2].X != c.Right {
		t.Errorf("x: %v %v %v in [%v, %v]", p[0].X, p[1].X, p[2].X, c.Left, c.Right)
	}
	if !(p[0].Y < p[2].Y) || !p[1].NoData || p[1].Y != c.Bottom || p[2].Class != "p-failed" {
		t.Errorf("points: %+v", p)
	}
	if c.Thresholds[0].Y >= c.Thresholds[1].Y || c.Thresholds[0].Label != "success: >= 0.95" {
		t.Errorf("thresholds: %+v", c.Thresholds)
	}
	if strings.Count(c.Line, ",") != 2 {
		t.Errorf("line %q joins the points with a value", c.Line)
	}
	if !strings.Contains(c.Summary, "3 measurements") || !strings.Contains(c.Summary, "failure: < 0.9") || c.Rows[1].Message != "no data" || c.Rows[2].N != 3 {
		t.Errorf("text: %q %+v", c.Summary, c.Rows)
	}
	if metricChart("run-1", rolloutapi.MetricDetail{Name: "x"}) != nil {
		t.Error("a chart without measurements")
	}
}

func TestForgeCommitURL(t *testing.T) {
	t.Parallel()
	sha := "0123456789abcdef0123456789abcdef01234567"
	for repo, want := range map[string]string{
		"https://github.com/acme/deploy.git":        "https://github.com/acme/deploy/commit/" + sha,
		"git@github.com:acme/deploy.git":            "https://github.com/acme/deploy/commit/" + sha,
		"ssh://git@gitlab.com/acme/sub/deploy.git":  "https://gitlab.com/acme/sub/deploy/-/commit/" + sha,
		"https://bitbucket.org/acme/deploy":         "https://bitbucket.org/acme/deploy/commits/" + sha,
		"https://codeberg.org/acme/deploy.git/":     "https://codeberg.org/acme/deploy/commit/" + sha,
		"https://git.example.com/acme/deploy.git":   "",
		"file:///tmp/remote.git":                    "",
		"https://github.com/acme/deploy\"><script>": "",
		"javascript:alert(1)":                       "",
	} {
		if got := forgeCommitURL(repo, sha); got != want {
			t.Errorf("forgeCommitURL(%q) = %q, want %q", repo, got, want)
		}
	}
	if got := forgeCommitURL("https://github.com/acme/deploy", "not-a-sha"); got != "" {
		t.Errorf("a link for a bad SHA: %q", got)
	}
}

func TestHumanDuration(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		0: "0s", 42 * time.Second: "42s", 200 * time.Second: "3m20s", 2*time.Hour + 5*time.Minute: "2h05m", 76 * time.Hour: "3d4h", -5 * time.Second: "5s",
	} {
		if got := humanDuration(d); got != want {
			t.Errorf("humanDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestTrafficOfStatusOnly(t *testing.T) {
	t.Parallel()
	ro := canaryRollout()
	ro.Plan = nil
	ro.Status.Traffic.MirrorPercent = 10
	hs := trafficOf(ro)
	if len(hs) != 1 || len(hs[0].Routes) != 1 {
		t.Fatalf("traffic from status: %+v", hs)
	}
	r := hs[0].Routes[0]
	if len(r.Segments) != 2 || r.Segments[0].Weight != 80 || r.Segments[1].X != 80 || r.Segments[1].Revision != "v2" || r.Mirror != "10% copied to canary" {
		t.Fatalf("route: %+v", r)
	}
	if r.Text != "route default, every other request: stable (v1) 80%, canary (v2) 20%; mirror 10% copied to canary" {
		t.Fatalf("text: %q", r.Text)
	}
}
