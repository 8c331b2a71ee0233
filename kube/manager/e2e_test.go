package manager_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/internal/binomial"
	"github.com/sluicehq/sluice/internal/grpcecho"
	"github.com/sluicehq/sluice/kube/workload"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// TestControllerEndToEnd runs `sluice controller` as it runs in a cluster
// (two replicas with leader election, as the controller's service account
// under the generated RBAC, Git as the source) against a real API server,
// a real Prometheus and real gRPC backends, and watches a release from the
// outside: the Rollout's status and Events, the VirtualService, the
// AnalysisRuns, the Git repository, and the traffic a real proxyless gRPC
// client (connected to the follower's xDS server) sends to each version.
//
//  1. v1 is applied from Git and serves alone.
//  2. v2 is pushed and walks every step (10% → analysis → 50% → analysis
//     → 100%): the weights follow in the VirtualService and at the client,
//     an edit of the unmanaged admin route in Git goes through meanwhile,
//     and the leader is killed mid-analysis: the follower resumes the same
//     step with the same weights and the same run. v2 is promoted and v1
//     scaled down after the delay.
//  3. v3 fails half its calls: its analysis fails, traffic returns to v2,
//     status and Events say why, and a revert commit appears in Git, which
//     the controller then applies.
func TestControllerEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end: about a minute")
	}
	w := newWorld(t)
	a, b := w.startReplica("a"), w.startReplica("b")
	leader, follower := w.electedOf(t, a, b)
	t.Logf("replica %s leads, %s follows", leader.name, follower.name)

	// 1. v1 serves.
	w.eventually(t, "v1 to be applied from Git and serve alone", 2*time.Minute, func(ro *v1alpha1.Rollout) (bool, error) {
		if ro == nil {
			return false, nil
		}
		return healthyOn(ro, w.revs["v1"]), nil
	})
	w.checkProvenance(t, w.repo.head().Hash)
	load := w.startLoad(t, follower)
	w.waitAllOn(t, load, "v1")
	w.checkAdminRoute(t, "5s")
	w.checkBothServe(t, leader, follower)

	var successor *replica
	ok := t.Run("v2 walks every step and is promoted", func(t *testing.T) {
		successor = w.releaseGood(t, leader, follower, load)
	})
	if !ok {
		return
	}
	// successor replaced the killed leader and follows; its client sees
	// the bad release.
	load2 := w.startLoad(t, successor)
	w.waitAllOn(t, load2, "v2")
	t.Run("v3 fails its analysis and is rolled back in traffic and in Git", func(t *testing.T) {
		w.releaseBad(t, load, load2, successor)
	})
}

// releaseGood is phase 2. It returns the replica started after the
// leader was killed.
func (w *world) releaseGood(t *testing.T, leader, follower *replica, load *grpcecho.Load) *replica {
	v1, v2 := w.revs["v1"], w.revs["v2"]
	startsBefore := w.rollout(t).Status.Starts
	w.repo.push("echo: release v2", map[string]string{rolloutFile: rolloutYAML("v2")})

	w.eventually(t, "the rollout of v2 to reach its first analysis (step 2, 10%)", time.Minute, func(ro *v1alpha1.Rollout) (bool, error) {
		st := ro.Status
		if st.CanaryRevision != "" && st.CanaryRevision != v2 {
			return false, fmt.Errorf("canary revision %s, want %s, the hash of v2's pod template as Git declares it: "+
				"did the API server default a field of spec.template?", st.CanaryRevision, v2)
		}
		return stepAt(ro, 1) && st.Traffic.CanaryWeight == 10, nil
	})

	// An edit of the unmanaged route during the rollout reaches the
	// cluster as Git declares it, and the weights stay where the rollout
	// put them.
	w.repo.push("echo: admin timeout 7s", map[string]string{istioFile: istioYAML("7s")})
	w.checkAdminRoute(t, "7s")
	w.eventually(t, "the VirtualService to carry the plan in force", 30*time.Second, func(ro *v1alpha1.Rollout) (bool, error) {
		vs := w.virtualService(t)
		st := ro.Status
		if vs.PlanVersion != st.Traffic.PlanVersion {
			return false, nil // read between a step's status and its write
		}
		if st.Phase != v1alpha1.PhaseProgressing || st.Starts != startsBefore+1 ||
			vs.Primary["canary"] != int64(st.Traffic.CanaryWeight) || vs.Primary["stable"] != int64(st.Traffic.StableWeight) {
			return false, fmt.Errorf("after the admin route edit: phase %s, starts %d (want %d), VirtualService primary %v, status weights %d/%d",
				st.Phase, st.Starts, startsBefore+1, vs.Primary, st.Traffic.StableWeight, st.Traffic.CanaryWeight)
		}
		return true, nil
	})

	// Kill the leader in the middle of the analysis at 50%, once its run
	// has measured.
	var run string
	measured := func() int {
		_, _, runs := w.rec.snapshot()
		return len(runs[run].Indexes)
	}
	w.eventually(t, "the analysis at 50% (step 4) to have measured", time.Minute, func(ro *v1alpha1.Rollout) (bool, error) {
		if !stepAt(ro, 3) {
			return false, nil
		}
		run = currentRun(ro)
		_, _, runs := w.rec.snapshot()
		rr, ok := runs[run]
		return ok && len(rr.Indexes) >= 1 && !rr.Phase.Completed(), nil
	})
	before := w.rollout(t).Status
	measuredBefore := measured()
	leader.stop(t)
	if !follower.elected() {
		w.eventually(t, "the follower to take the lease", 30*time.Second, func(*v1alpha1.Rollout) (bool, error) {
			return follower.elected(), nil
		})
	}
	after := w.rollout(t).Status
	if !stepAt(&v1alpha1.Rollout{Status: after}, 3) || after.Traffic.CanaryWeight != 50 || after.Traffic.PlanVersion != before.Traffic.PlanVersion ||
		after.Starts != before.Starts || currentRun(&v1alpha1.Rollout{Status: after}) != run {
		t.Errorf("after the takeover: step %s weight %d plan %s starts %d run %s; want step 4/5, 50%%, plan %s, starts %d, run %s",
			after.StepDisplay, after.Traffic.CanaryWeight, after.Traffic.PlanVersion, after.Starts, currentRun(&v1alpha1.Rollout{Status: after}),
			before.Traffic.PlanVersion, before.Starts, run)
	}
	// The new leader carries on with the same run: its analysis
	// controller takes the next measurement, none is taken twice
	// (checkRuns).
	w.eventually(t, "the new leader to measure the run of step 4", 30*time.Second, func(*v1alpha1.Rollout) (bool, error) {
		return measured() > measuredBefore, nil
	})
	// A new replica replaces the one killed, as its Deployment would.
	successor := w.startReplica("c")

	w.eventually(t, "v2 to be promoted", time.Minute, func(ro *v1alpha1.Rollout) (bool, error) {
		if ro.Status.Abort != nil {
			return false, fmt.Errorf("the rollout of v2 was aborted: %s", ro.Status.Abort.Message)
		}
		return healthyOn(ro, v2), nil
	})
	w.waitAllOn(t, load, "v2")
	w.eventually(t, "the v1 ReplicaSet to be scaled down after the delay", 30*time.Second, func(*v1alpha1.Rollout) (bool, error) {
		rs := &appsv1.ReplicaSet{}
		if err := w.admin.Get(context.Background(), client.ObjectKey{Namespace: appNamespace, Name: workload.Name(rolloutName, v1)}, rs); err != nil {
			return false, err
		}
		return *rs.Spec.Replicas == 0, nil
	})
	if rs := w.replicaSet(t, v2); *rs.Spec.Replicas != 2 {
		t.Errorf("the v2 ReplicaSet has %d replicas, want 2", *rs.Spec.Replicas)
	}
	if elected := []bool{follower.elected(), successor.elected()}; !elected[0] || elected[1] {
		t.Errorf("elected: %s %v, %s %v; want only %s", follower.name, elected[0], successor.name, elected[1], follower.name)
	}
	w.checkBothServe(t, follower, successor)

	samples, vss, runs := w.rec.snapshot()
	w.checkWeights(t, samples, vss, v2)
	w.checkSplits(t, load, follower, samples, v2, map[int32]bool{10: true, 50: true})
	w.checkAdminHistory(t, vss)
	w.checkRuns(t, runs, v2, 2, v1alpha1.AnalysisSuccessful)
	return successor
}

// releaseBad is phase 3.
func (w *world) releaseBad(t *testing.T, load, load2 *grpcecho.Load, serving *replica) {
	v2, v3 := w.revs["v2"], w.revs["v3"]
	bad := w.repo.push("echo: release v3", map[string]string{rolloutFile: rolloutYAML("v3")})

	var abort v1alpha1.AbortStatus
	var degraded string
	w.eventually(t, "the rollout of v3 to be aborted by its analysis", time.Minute, func(*v1alpha1.Rollout) (bool, error) {
		samples, _, _ := w.rec.snapshot()
		for _, s := range samples {
			st := s.Status
			if st.CanaryRevision == v3 && st.Phase == v1alpha1.PhaseDegraded && st.Abort != nil {
				abort, degraded = *st.Abort, st.Message
				return true, nil
			}
			if st.StableRevision == v3 {
				return false, fmt.Errorf("v3 was promoted; its analysis should have failed")
			}
		}
		return false, nil
	})
	failedRun := ""
	history, _, _ := w.rec.snapshot()
	for _, s := range history {
		for _, r := range s.Status.Analysis {
			if r.Phase == v1alpha1.AnalysisFailed && strings.Contains(r.Name, v3) {
				failedRun = r.Name
			}
		}
	}
	if abort.Reason != v1alpha1.ReasonAnalysisFailed || !abort.Automatic || failedRun == "" || !strings.Contains(abort.Message, failedRun) {
		t.Errorf("abort %+v; want reason %s, automatic, naming the failed run %q", abort, v1alpha1.ReasonAnalysisFailed, failedRun)
	}
	if degraded == "" {
		t.Error("status.message is empty while Degraded")
	}
	t.Logf("Degraded: %s", degraded)
	// Traffic goes back at once, on both replicas' clients.
	for _, l := range []*grpcecho.Load{load2, load} {
		back := w.waitAllOn(t, l, "v2")
		t.Logf("all calls on v2 again within %s of the abort", max(0, back.Sub(abort.At.Time)).Round(time.Millisecond))
	}

	revert := w.waitRevert(t, bad)
	w.eventually(t, "the revert commit to be applied", time.Minute, func(ro *v1alpha1.Rollout) (bool, error) {
		g := ro.Status.Git
		return healthyOn(ro, v2) && g != nil && strings.HasPrefix(revert.Hash, g.Commit), nil
	})
	if lr := w.rollout(t).Status.LastRollout; lr == nil || lr.Revision != v3 || lr.Outcome != v1alpha1.OutcomeAborted || lr.Reason != v1alpha1.ReasonAnalysisFailed {
		t.Errorf("status.lastRollout %+v; want v3 (%s) %s, reason %s", lr, v3, v1alpha1.OutcomeAborted, v1alpha1.ReasonAnalysisFailed)
	}

	samples, _, runs := w.rec.snapshot()
	w.checkSplits(t, load2, serving, samples, v3, map[int32]bool{10: true})
	w.checkRuns(t, runs, v3, 1, v1alpha1.AnalysisFailed)
	w.checkEvents(t, failedRun)
}

// electedOf waits until one replica leads and returns it first.
func (w *world) electedOf(t *testing.T, a, b *replica) (leader, follower *replica) {
	t.Helper()
	w.eventually(t, "a replica to be elected", time.Minute, func(*v1alpha1.Rollout) (bool, error) {
		return a.elected() || b.elected(), nil
	})
	// Give a second leader, which must not exist, the time to show up.
	time.Sleep(500 * time.Millisecond)
	if a.elected() && b.elected() {
		t.Fatal("both replicas are elected")
	}
	if a.elected() {
		return a, b
	}
	return b, a
}

// startLoad starts a client of xds:///echo through r's xDS server, 200
// calls a second, and records what the server says it applied.
func (w *world) startLoad(t *testing.T, r *replica) *grpcecho.Load {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := grpcecho.StartLoad(ctx, grpcecho.LoadOptions{XDSAddr: r.xdsAddr, Target: host, Rate: 200, NodeID: "e2e-client-of-" + r.name})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Stop)
	w.rec.watchXDS(r.c.XDS())
	return l
}

// waitAllOn waits until the client's calls all go to the image tag's
// backend, and returns since when.
func (w *world) waitAllOn(t *testing.T, l *grpcecho.Load, tag string) time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	since, err := l.WaitFor(ctx, tag, 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	return since
}

// eventually polls cond with the Rollout (nil while it does not exist)
// every 100 ms until it holds; an error from cond fails at once.
func (w *world) eventually(t *testing.T, what string, timeout time.Duration, cond func(*v1alpha1.Rollout) (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ro := &v1alpha1.Rollout{}
		if err := w.admin.Get(context.Background(), client.ObjectKey{Namespace: appNamespace, Name: rolloutName}, ro); err != nil {
			if client.IgnoreNotFound(err) != nil {
				t.Fatal(err)
			}
			ro = nil
		}
		done, err := cond(ro)
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			state := "no Rollout"
			if ro != nil {
				st := ro.Status
				state = fmt.Sprintf("phase %s, step %s, stable %s, canary %s, weight %d: %s", st.Phase, st.StepDisplay, st.StableRevision, st.CanaryRevision, st.Traffic.CanaryWeight, st.Message)
			}
			t.Fatalf("timed out after %s waiting for %s (%s)", timeout, what, state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (w *world) rollout(t *testing.T) *v1alpha1.Rollout {
	t.Helper()
	ro := &v1alpha1.Rollout{}
	if err := w.admin.Get(context.Background(), client.ObjectKey{Namespace: appNamespace, Name: rolloutName}, ro); err != nil {
		t.Fatal(err)
	}
	return ro
}

func (w *world) replicaSet(t *testing.T, rev string) *appsv1.ReplicaSet {
	t.Helper()
	rs := &appsv1.ReplicaSet{}
	if err := w.admin.Get(context.Background(), client.ObjectKey{Namespace: appNamespace, Name: workload.Name(rolloutName, rev)}, rs); err != nil {
		t.Fatal(err)
	}
	return rs
}

func (w *world) virtualService(t *testing.T) vsSample {
	t.Helper()
	vs, err := w.rec.virtualService(context.Background(), time.Now())
	if err != nil || vs == nil {
		t.Fatalf("VirtualService %s/%s: %v", appNamespace, rolloutName, err)
	}
	return *vs
}

// healthyOn: rev serves 100%, no rollout runs, and the plan is
// acknowledged.
func healthyOn(ro *v1alpha1.Rollout, rev string) bool {
	st := ro.Status
	return st.Phase == v1alpha1.PhaseHealthy && st.StableRevision == rev && st.CanaryRevision == "" &&
		st.Traffic.PlanVersion != "" && st.Traffic.AcknowledgedVersion == st.Traffic.PlanVersion
}

// stepAt: the rollout executes step i and its plan is acknowledged.
func stepAt(ro *v1alpha1.Rollout, i int32) bool {
	st := ro.Status
	return st.Phase == v1alpha1.PhaseProgressing && st.CurrentStepIndex != nil && *st.CurrentStepIndex == i && st.StepAcknowledgedAt != nil
}

// currentRun is the running step analysis's name, "" if none.
func currentRun(ro *v1alpha1.Rollout) string {
	for _, r := range ro.Status.Analysis {
		if r.Kind == v1alpha1.AnalysisStepKind && !r.Terminated && !r.Phase.Completed() {
			return r.Name
		}
	}
	return ""
}

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
			return r.c.XDS().HostStatus(host, pv).Current, nil
		})
	}
}

// declaredAdmin is the admin route as istioYAML declares it, in the
// canonical JSON the recorder writes the live one in.
func declaredAdmin(t *testing.T, timeout string) string {
	t.Helper()
	var doc struct {
		Spec struct {
			HTTP []map[string]any `json:"http"`
		} `json:"spec"`
	}
	first, _, _ := strings.Cut(istioYAML(timeout), "\n---\n")
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
	want := declaredAdmin(t, timeout)
	var got string
	w.eventually(t, "the admin route as Git declares it (timeout "+timeout+")", 30*time.Second, func(*v1alpha1.Rollout) (bool, error) {
		vs, err := w.rec.virtualService(context.Background(), time.Now())
		if err != nil || vs == nil {
			return false, err
		}
		got = vs.Admin
		return got == want, nil
	})
}

// checkAdminHistory: every VirtualService the recorder saw had the admin
// route exactly as one of Git's commits declared it, the new one for good
// once it came.
func (w *world) checkAdminHistory(t *testing.T, vss []vsSample) {
	t.Helper()
	old, cur := declaredAdmin(t, "5s"), declaredAdmin(t, "7s")
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
// 100% (after the canary was added at 0%), never back, and the
// VirtualService's primary route carried each plan's weights.
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
	var vsWeights []int64
	for _, v := range vss {
		want, ok := byPlan[v.PlanVersion]
		if !ok {
			continue
		}
		if v.Primary["canary"] != int64(want) || v.Primary["stable"] != int64(100-want) {
			t.Errorf("%s: VirtualService at plan %s routes %v; want stable %d, canary %d", v.At.Format(time.StampMilli), v.PlanVersion, v.Primary, 100-want, want)
		}
		if n := len(vsWeights); n == 0 || vsWeights[n-1] != v.Primary["canary"] {
			vsWeights = append(vsWeights, v.Primary["canary"])
		}
	}
	if !slices.Contains(vsWeights, 10) || !slices.Contains(vsWeights, 50) {
		t.Errorf("canary weights seen in the VirtualService: %v; want 10 and 50 among them", vsWeights)
	}
}

// guard is left out of each measured window after a client was seen to
// apply a plan: grpc-go ACKs a route update before its picker has
// switched, usually by microseconds, on a loaded machine by more.
const guard = 400 * time.Millisecond

// checkSplits judges the client's calls in every plan of the rollout of
// rev that its xDS server (r's) served for long enough: only the stable
// and canary versions answer, the canary's share is within the binomial
// interval of its weight (1e-4 per window), and only failing versions
// fail. Each weight in need must have been judged at least once.
func (w *world) checkSplits(t *testing.T, l *grpcecho.Load, r *replica, samples []sample, rev string, need map[int32]bool) {
	t.Helper()
	judged := map[int32]int{}
	for _, seg := range segments(samples, r.c.XDS()) {
		if seg.Canary != rev || seg.Applied.IsZero() {
			continue
		}
		from := seg.Applied.Add(guard)
		sp := l.Window(from, seg.To)
		if sp.Total < 100 {
			continue
		}
		stable, canary := w.tags[seg.Stable], w.tags[seg.Canary]
		lo, hi := binomial.Interval(sp.Total, float64(seg.CanaryWeight)/100, 1e-4)
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

// waitRevert waits for the controller's revert commit on top of bad, and
// checks it sets the Rollout back to v2.
func (w *world) waitRevert(t *testing.T, bad string) commit {
	t.Helper()
	var head commit
	w.eventually(t, "the revert commit in Git", time.Minute, func(*v1alpha1.Rollout) (bool, error) {
		head = w.repo.head()
		return head.Author == sluiceAuthor, nil
	})
	if parent := git(t, w.repo.bare, "rev-parse", head.Hash+"^"); parent != bad {
		t.Errorf("revert commit %s has parent %s, want the bad release %s", head.Hash, parent, bad)
	}
	if got := w.repo.show(rolloutFile); got != strings.TrimSpace(rolloutYAML("v2")) {
		t.Errorf("%s after the revert:\n%s\nwant v2's:\n%s", rolloutFile, got, rolloutYAML("v2"))
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
	if err := w.admin.List(context.Background(), &evs, client.InNamespace(appNamespace)); err != nil {
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
