package window

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

func win(kind v1alpha1.WindowKind, sched string, d time.Duration, tz string) v1alpha1.DeploymentWindow {
	return v1alpha1.DeploymentWindow{Kind: kind, Schedule: sched, Duration: metav1.Duration{Duration: d}, TimeZone: tz}
}

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestAt(t *testing.T) {
	t.Parallel()
	// Friday 22:00 for 60h: a weekend change freeze.
	freeze := win(v1alpha1.WindowDeny, "0 22 * * 5", 60*time.Hour, "")
	office := win(v1alpha1.WindowAllow, "0 9 * * 1-5", 8*time.Hour, "Europe/Berlin")
	cases := []struct {
		name       string
		windows    []v1alpha1.DeploymentWindow
		now        string
		closed     bool
		reason     string
		nextChange string
	}{
		{"no windows", nil, "2026-11-20T12:00:00Z", false, "", ""},
		{"before the freeze", []v1alpha1.DeploymentWindow{freeze}, "2026-11-20T21:59:00Z", false, "", "2026-11-20T22:00:00Z"},
		{"freeze starts", []v1alpha1.DeploymentWindow{freeze}, "2026-11-20T22:00:00Z", true, "deny", "2026-11-23T10:00:00Z"},
		{"inside the freeze", []v1alpha1.DeploymentWindow{freeze}, "2026-11-22T12:00:00Z", true, "deny", "2026-11-23T10:00:00Z"},
		{"freeze ends", []v1alpha1.DeploymentWindow{freeze}, "2026-11-23T10:00:00Z", false, "", "2026-11-27T22:00:00Z"},
		{"office hours in Berlin (UTC+1)", []v1alpha1.DeploymentWindow{office}, "2026-11-23T08:30:00Z", false, "", "2026-11-23T16:00:00Z"},
		{"before office hours", []v1alpha1.DeploymentWindow{office}, "2026-11-23T07:30:00Z", true, "outside allow", "2026-11-23T08:00:00Z"},
		{"deny wins over allow", []v1alpha1.DeploymentWindow{office, win(v1alpha1.WindowDeny, "0 12 * * *", time.Hour, "")}, "2026-11-23T12:30:00Z", true, "deny", "2026-11-23T13:00:00Z"},
		{"overlapping ticks merge", []v1alpha1.DeploymentWindow{win(v1alpha1.WindowDeny, "0 * * * *", 90*time.Minute, "")}, "2026-11-23T12:30:00Z", true, "deny", ""},
		{"descriptor", []v1alpha1.DeploymentWindow{win(v1alpha1.WindowAllow, "@daily", 2*time.Hour, "")}, "2026-11-23T01:00:00Z", false, "", "2026-11-23T02:00:00Z"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := Compile(tc.windows)
			if err != nil {
				t.Fatal(err)
			}
			got := c.At(at(tc.now))
			if got.Closed != tc.closed {
				t.Fatalf("closed = %v (%s), want %v", got.Closed, got.Reason, tc.closed)
			}
			if !strings.Contains(got.Reason, tc.reason) {
				t.Fatalf("reason = %q, want it to mention %q", got.Reason, tc.reason)
			}
			var want time.Time
			if tc.nextChange != "" {
				want = at(tc.nextChange)
			}
			if !got.NextChange.Equal(want) {
				t.Fatalf("next change = %v, want %v", got.NextChange, want)
			}
		})
	}
}

func TestCompileErrorsNameTheField(t *testing.T) {
	t.Parallel()
	cases := []struct {
		w    v1alpha1.DeploymentWindow
		want string
	}{
		{win(v1alpha1.WindowDeny, "61 * * * *", time.Hour, ""), "spec.windows[1].schedule"},
		{win(v1alpha1.WindowDeny, "0 * * * *", time.Hour, "Mars/Olympus"), "spec.windows[1].timeZone"},
		{win(v1alpha1.WindowDeny, "0 * * * *", 0, ""), "spec.windows[1].duration"},
	}
	for _, tc := range cases {
		_, err := Compile([]v1alpha1.DeploymentWindow{win(v1alpha1.WindowAllow, "@daily", time.Hour, ""), tc.w})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Compile(%+v) = %v, want an error naming %s", tc.w, err, tc.want)
		}
	}
}

func TestEvaluate(t *testing.T) {
	t.Parallel()
	now := at("2026-11-22T12:00:00Z")
	if got := Evaluate(nil, now); got.Closed {
		t.Fatalf("no windows: %+v", got)
	}
	if got := Evaluate([]v1alpha1.DeploymentWindow{win(v1alpha1.WindowDeny, "@daily", 24*time.Hour, "")}, now); !got.Closed {
		t.Fatalf("inside a deny window: %+v", got)
	}
	// A window that does not compile holds rather than allows.
	if got := Evaluate([]v1alpha1.DeploymentWindow{win(v1alpha1.WindowAllow, "not cron", time.Hour, "")}, now); !got.Closed || !strings.Contains(got.Reason, "spec.windows[0].schedule") {
		t.Fatalf("broken window: %+v", got)
	}
}
