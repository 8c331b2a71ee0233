package runner

import (
	"fmt"
	"testing"

	"github.com/sluicehq/sluice/internal/xdstest"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
)

// TestBookinfoExtraRevision is bookinfo's reviews case end to end, with
// real gRPC clients: while v3 rolls out at 50% against v1, end-user jason
// always reaches v2, an extra revision; an abort sends everyone (jason
// too) back to v1, a retry brings v2 back for him, and promotion stops
// v2 with v3 serving all.
func TestBookinfoExtraRevision(t *testing.T) {
	t.Parallel()
	v1, v2, v3 := stratBackend(t, "v1", 0), stratBackend(t, "v2", 0), stratBackend(t, "v3", 0)
	spec := fmt.Sprintf(`  strategy:
    canary:
      steps:
      - setRevision:
          name: jason
          backend: {version: v2, endpoints: [%q]}
          match: [{headers: [{name: end-user, exact: jason}]}]
      - setWeight: 50
      - pause: {}
`, v2.Addr)
	w := stratStart(t, "", spec, v1)
	client := w.client()
	commit := w.repo.Push("ship v3", map[string]string{"reviews.yaml": stratRollout("v3", v3.Addr, spec)})
	w.sync.Trigger()

	atPause := func(what string) rolloutapi.Rollout {
		return waitFor(t, w.r, what, func(ro rolloutapi.Rollout) bool { return stratAt(ro, "pause until promote") })
	}
	ro := atPause("v3 at 50%, v2 for jason")
	if x := ro.Status.ExtraRevisions; len(x) != 1 || x[0].Name != "jason" || x[0].Revision != "v2" {
		t.Fatalf("status.extraRevisions = %+v", x)
	}
	// Git provenance, as for the canary: the commit that started v3 and
	// jason's v2 is the one in status.
	if g := ro.Status.Git; g == nil || g.Commit != commit || g.Path != "reviews.yaml" {
		t.Errorf("status.git = %+v while v2 and v3 run, want commit %s of reviews.yaml", g, commit)
	}
	check := func(what string) {
		t.Helper()
		stratOnly(t, what+": jason", xdstest.Calls(t, client, 200, "end-user", "jason"), 200, "v2")
		const n = 1000
		stratShare(t, xdstest.Calls(t, client, n, "end-user", "mary"), n, "v3", "v1", 50)
	}
	check("first attempt")

	w.command(v1alpha1.CommandAbort)
	waitFor(t, w.r, "aborted", func(ro rolloutapi.Rollout) bool { return ro.Status.Abort != nil && len(ro.Status.ExtraRevisions) == 0 })
	waitFor(t, w.r, "jason back on v1", func(rolloutapi.Rollout) bool {
		return xdstest.Calls(t, client, 20, "end-user", "jason")["v1"] == 20
	})
	stratOnly(t, "after abort: jason", xdstest.Calls(t, client, 200, "end-user", "jason"), 200, "v1")
	stratOnly(t, "after abort: others", xdstest.Calls(t, client, 200), 200, "v1")

	w.command(v1alpha1.CommandRetry)
	atPause("retried")
	check("after retry")

	w.command(v1alpha1.CommandPromote)
	waitFor(t, w.r, "v3 promoted", func(ro rolloutapi.Rollout) bool {
		return ro.Status.StableRevision == "v3" && ro.Status.CanaryRevision == "" && len(ro.Status.ExtraRevisions) == 0
	})
	waitFor(t, w.r, "jason on v3", func(rolloutapi.Rollout) bool {
		return xdstest.Calls(t, client, 20, "end-user", "jason")["v3"] == 20
	})
	stratOnly(t, "after promotion: jason", xdstest.Calls(t, client, 200, "end-user", "jason"), 200, "v3")
	stratOnly(t, "after promotion: others", xdstest.Calls(t, client, 200), 200, "v3")
}
