package manager_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/internal/binomial"
	"github.com/sluicehq/sluice/internal/gittest"
	"github.com/sluicehq/sluice/internal/grpcecho"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// The judgements of the end-to-end test, each on one aspect of what the
// recorder, the client, Git and the API server saw.

// checkProvenance: the Rollout says which commit it came from.
func (w *world) checkProvenance(t *testing.T, commit string) {
	t.Helper()
	g := w.rollout(t).Status.Git
	if g == nil || g.Commit == "" || !strings.HasPrefix(commit, g.Commit) {
		t.Errorf("status.git %+v; want commit %s", g, commit)
	}
}

// checkBothServe: every replica's xDS server serves the current plan,
// the leader's as well as the followers'.
func (w *world) checkBothServe(t *testing.T, rs ...*replica) {
	t.Helper()
	pv := w.rollout(t).Status.Traffic.PlanVersion
	for _, r := range rs {
		w.eventually(t, fmt.Sprintf("replica %s to serve plan %s over xDS", r.name, pv), 30*time.Second, func(*v1alpha1.Rollout) (bool, error) {
			return r.c.XDS().HostStatus(w.m.host, pv).Current, nil
		})
	}
}

// declaredAdmin is the admin route as the manifests declare it, in the
// canonical JSON the recorder writes the live one in.
func (w *world) declaredAdmin(t *testing.T, timeout string) string {
	t.Helper()
	var doc struct {
		Spec struct {
			HTTP []map[string]any `json:"http"`
		} `json:"spec"`
	}
	first, _, _ := strings.Cut(w.m.istio(timeout), "\n---\n")
	if err := yaml.Unmarshal([]byte(first), &doc); err != nil || len(doc.Spec.HTTP) == 0 {
		t.Fatalf("istio.yaml: %v", err)
	}
	b, err := json.Marshal(doc.Spec.HTTP[0])
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkAdminRoute waits until the live admin route is exactly the one
// Git declares with timeout.
func (w *world) checkAdminRoute(t *testing.T, timeout string) {
	t.Helper()
	want := w.declaredAdmin(t, timeout)
	got := ""
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		vs, err := w.rec.virtualService(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if vs != nil {
			if got = vs.Admin; got == want {
				return
			}
		}
	}
	t.Fatalf("the VirtualService's admin route is\n%s\nwant it as Git declares it (timeout %s):\n%s", got, timeout, want)
}

// checkAdminHistory: every VirtualService the recorder saw had the admin
// route exactly as one of Git's commits declared it, the new one for good
// once it came.
func (w *world) checkAdminHistory(t *testing.T, vss []vsSample) {
	t.Helper()
	old, cur := w.declaredAdmin(t, "5s"), w.declaredAdmin(t, "7s")
	seenNew := false
	for _, v := range vss {
		switch {
		case v.Admin == cur:
			seenNew = true
		case v.Admin == old && !seenNew:
		default:
			t.Errorf("%s: admin route %s; want %s, then %s", v.At.Format(time.StampMilli), v.Admin, old, cur)
			return
		}
	}
}

// checkWeights: during the rollout of rev, the status went 10% → 50% →
// 100% (after the canary was added at 0%), never back, and so did the
// VirtualService's primary route, carrying each plan's weights.
func (w *world) checkWeights(t *testing.T, samples []sample, vss []vsSample, rev string) {
	t.Helper()
	var weights []int32
	byPlan := map[string]int32{}
	for _, seg := range segments(samples, nil) {
		if seg.Canary != rev {
			continue
		}
		byPlan[seg.PlanVersion] = seg.CanaryWeight
		if n := len(weights); n == 0 || weights[n-1] != seg.CanaryWeight {
			weights = append(weights, seg.CanaryWeight)
		}
	}
	if len(weights) > 0 && weights[0] == 0 {
		weights = weights[1:] // the canary is added at 0% first
	}
	if !slices.Equal(weights, []int32{10, 50, 100}) {
		t.Errorf("canary weights of %s in status: %v; want [10 50 100]", rev, weights)
	}
	var vsWeights []int32
	for _, v := range vss {
		want, ok := byPlan[v.PlanVersion]
		if !ok {
			continue
		}
		if v.Primary["canary"] != int64(want) || v.Primary["stable"] != int64(100-want) {
			t.Errorf("%s: VirtualService at plan %s routes %v; want stable %d, canary %d", v.At.Format(time.StampMilli), v.PlanVersion, v.Primary, 100-want, want)
		}
		if n := len(vsWeights); n == 0 || vsWeights[n-1] != want {
			vsWeights = append(vsWeights, want)
		}
	}
	if len(vsWeights) > 0 && vsWeights[0] == 0 {
		vsWeights = vsWeights[1:]
	}
	if !slices.Equal(vsWeights, []int32{10, 50, 100}) {
		t.Errorf("canary weights of %s in the VirtualService: %v; want [10 50 100]", rev, vsWeights)
	}
}

// guard is left out of each measured window after a client was seen to
// apply a plan: grpc-go ACKs a route update before its picker has
// switched, usually by microseconds, on a loaded machine by more.
const guard = 400 * time.Millisecond

// checkSplits judges the client's calls in every plan of the rollout of
// rev that its xDS server (r's) served for long enough: only the stable
// and canary versions answer, the canary's share is within the binomial
// interval of its weight, and only failing versions fail. Each weight in
// need must have been judged at least once.
func (w *world) checkSplits(t *testing.T, l *grpcecho.Load, r *replica, samples []sample, rev string, need map[int32]bool) {
	t.Helper()
	judged := map[int32]int{}
	segs := segments(samples, r.c.XDS())
	// A test calls checkSplits twice; each call gets half the test's
	// false-failure budget, shared by at most len(segs) windows
	// (Bonferroni, see binomial.Alpha).
	alpha := binomial.Alpha(2 * len(segs))
	for _, seg := range segs {
		if seg.Canary != rev || seg.Applied.IsZero() {
			continue
		}
		from := seg.Applied.Add(guard)
		sp := l.Window(from, seg.To)
		if sp.Total < 100 {
			continue
		}
		stable, canary := w.tags[seg.Stable], w.tags[seg.Canary]
		lo, hi := binomial.Interval(sp.Total, float64(seg.CanaryWeight)/100, alpha)
		t.Logf("step %s at %d%%: %s of %d calls (%s), canary interval [%d, %d]", seg.Step, seg.CanaryWeight, canary, sp.Calls[canary], sp, lo, hi)
		if n := sp.Calls[stable] + sp.Calls[canary]; n != sp.Total {
			t.Errorf("step %s: calls %v; want only %s and %s", seg.Step, sp.Calls, stable, canary)
		}
		if got := sp.Calls[canary]; got < lo || got > hi {
			t.Errorf("step %s at %d%%: %s answered %d of %d calls, outside [%d, %d]", seg.Step, seg.CanaryWeight, canary, got, sp.Total, lo, hi)
		}
		for v, n := range sp.Failed {
			if failPercent[v] == 0 && n > 0 {
				t.Errorf("step %s: %d calls to %s failed", seg.Step, n, v)
			}
		}
		judged[seg.CanaryWeight]++
	}
	for weight := range need {
		if judged[weight] == 0 {
			t.Errorf("the client's split at %d%% of %s was never judged: no plan at that weight was served long enough", weight, rev)
		}
	}
}

// checkRuns: the rollout of rev ran n step analyses, each one object
// (never recreated, so never restarted) ending in phase. Successful runs
// took every measurement exactly once, in order.
func (w *world) checkRuns(t *testing.T, runs map[string]runRecord, rev string, n int, phase v1alpha1.AnalysisPhase) {
	t.Helper()
	var mine []runRecord
	for name, rr := range runs {
		if strings.Contains(name, rev) {
			mine = append(mine, rr)
		}
	}
	if len(mine) != n {
		t.Errorf("%d analysis runs of %s, want %d: %+v", len(mine), rev, n, mine)
	}
	for _, rr := range mine {
		if rr.Phase != phase || len(rr.UIDs) != 1 {
			t.Errorf("run %s: %s, %d objects; want %s, one object", rr.Name, rr.Phase, len(rr.UIDs), phase)
		}
		if phase == v1alpha1.AnalysisSuccessful {
			want := []int32{}
			for i := range int32(measurements) {
				want = append(want, i)
			}
			if !slices.Equal(rr.Indexes, want) || rr.Result.Successful != measurements {
				t.Errorf("run %s: measurements %v, %d successful; want %v, all successful", rr.Name, rr.Indexes, rr.Result.Successful, want)
			}
		}
		if phase == v1alpha1.AnalysisFailed && rr.Result.Failed == 0 {
			t.Errorf("run %s failed without a failed measurement: %+v", rr.Name, rr.Result)
		}
	}
}

// commit is one commit of the bare repository's main branch.
type commit struct{ Hash, Author, Subject string }

// lastCommit is the tip of main in the bare repository: what the
// controllers see, including their own write-backs.
func lastCommit(t *testing.T, r *gittest.Repo) commit {
	t.Helper()
	out := gittest.Git(t, r.Bare, "log", "-1", "--format=%H%x00%an%x00%s", "main")
	parts := strings.SplitN(out, "\x00", 3)
	if len(parts) != 3 {
		t.Fatalf("git log: %q", out)
	}
	return commit{Hash: parts[0], Author: parts[1], Subject: parts[2]}
}

// waitRevert waits for the controller's revert commit on top of bad, and
// checks it sets the Rollout back to v2.
func (w *world) waitRevert(t *testing.T, bad string) commit {
	t.Helper()
	var head commit
	w.eventually(t, "the revert commit in Git", time.Minute, func(*v1alpha1.Rollout) (bool, error) {
		head = lastCommit(t, w.repo)
		return head.Author == sluiceAuthor, nil
	})
	if parent := gittest.Git(t, w.repo.Bare, "rev-parse", head.Hash+"^"); parent != bad {
		t.Errorf("revert commit %s has parent %s, want the bad release %s", head.Hash, parent, bad)
	}
	if got := w.repo.Read(rolloutFile); got != strings.TrimSpace(w.m.rollout("v2")) {
		t.Errorf("%s after the revert:\n%s\nwant v2's:\n%s", rolloutFile, got, w.m.rollout("v2"))
	}
	t.Logf("revert commit %s: %s", head.Hash[:10], head.Subject)
	return head
}

// checkEvents: the Rollout's Events tell the story (step by step,
// promotion, scale-down, and why v3 was aborted); none says write-back
// was impossible.
func (w *world) checkEvents(t *testing.T, failedRun string) {
	t.Helper()
	var evs corev1.EventList
	if err := w.admin.List(context.Background(), &evs, client.InNamespace(w.ns)); err != nil {
		t.Fatal(err)
	}
	seen := map[string][]string{}
	for _, e := range evs.Items {
		if e.InvolvedObject.Kind != "Rollout" || e.InvolvedObject.Name != rolloutName {
			continue
		}
		seen[e.Type+" "+e.Reason] = append(seen[e.Type+" "+e.Reason], e.Message)
	}
	for _, want := range []string{
		"Normal " + v1alpha1.ReasonNewRevision, "Normal " + v1alpha1.ReasonStepAdvanced, "Normal AnalysisStarted",
		"Normal AnalysisSuccessful", "Normal " + v1alpha1.ReasonPromoted, "Normal ScaledDown", "Warning " + v1alpha1.ReasonAnalysisFailed,
	} {
		if len(seen[want]) == 0 {
			t.Errorf("no %s Event for the Rollout; have %v", want, seen)
		}
	}
	if msgs := seen["Warning "+v1alpha1.ReasonAnalysisFailed]; len(msgs) > 0 && !strings.Contains(strings.Join(msgs, "\n"), failedRun) {
		t.Errorf("%s Events %q do not name the failed run %s", v1alpha1.ReasonAnalysisFailed, msgs, failedRun)
	}
	for _, bad := range []string{"Warning GitRevertUnavailable", "Warning GitRevertFailed", "Warning InvalidSpec"} {
		if len(seen[bad]) > 0 {
			t.Errorf("%s Events: %q", bad, seen[bad])
		}
	}
}
