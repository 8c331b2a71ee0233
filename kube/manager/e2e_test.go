package manager_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

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
//     → 100%): the leader, with no xDS client of its own, takes each
//     step's acknowledgement from the follower's report of its client's
//     ACKs; the weights follow in the VirtualService and at the client,
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
	w.checkProvenance(t, w.repo.Head())
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
	v2 := w.revs["v2"]
	startsBefore := w.rollout(t).Status.Starts
	answersBefore := leader.planAnswers(t)
	w.repo.Push("echo: release v2", map[string]string{rolloutFile: w.m.rollout("v2")})

	w.eventually(t, "the rollout of v2 to reach its first analysis (step 2, 10%)", time.Minute, func(ro *v1alpha1.Rollout) (bool, error) {
		st := ro.Status
		if st.CanaryRevision != "" && st.CanaryRevision != v2 {
			return false, fmt.Errorf("canary revision %s, want %s, the hash of v2's pod template as Git declares it: "+
				"did the API server default a field of spec.template?", st.CanaryRevision, v2)
		}
		return stepAt(ro, 1) && st.Traffic.CanaryWeight == 10, nil
	})
	w.checkAcknowledgedByFollower(t, leader, answersBefore)

	w.editUnmanagedRoute(t, startsBefore+1)
	successor := w.killLeaderMidStep(t, leader, follower)
	w.waitPromoted(t, load)
	if elected := []bool{follower.elected(), successor.elected()}; !elected[0] || elected[1] {
		t.Errorf("elected: %s %v, %s %v; want only %s", follower.name, elected[0], successor.name, elected[1], follower.name)
	}
	w.checkBothServe(t, follower, successor)

	h := w.rec.snapshot()
	w.checkWeights(t, h.Statuses, h.VS, v2)
	w.checkSplits(t, load, follower, h.Polled, v2, map[int32]bool{10: true, 50: true})
	w.checkAdminHistory(t, h.VS)
	w.checkRuns(t, h.Runs, v2, 2, v1alpha1.AnalysisSuccessful)
	w.checkRunsCounted(t, 2)
	return successor
}

// metricLabels are a series' labels by name.
func metricLabels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// checkRunsCounted: sluice_rollout_analysis_runs_total, documented in
// docs/metrics.md, counted v2's successful runs (the replicas share
// controller-runtime's registry in this process).
func (w *world) checkRunsCounted(t *testing.T, want float64) {
	t.Helper()
	families, err := crmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var got float64
	for _, f := range families {
		if f.GetName() != "sluice_rollout_analysis_runs_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := metricLabels(m)
			if labels["namespace"] == w.ns && labels["rollout"] == rolloutName && labels["phase"] == string(v1alpha1.AnalysisSuccessful) {
				got += m.GetCounter().GetValue()
			}
		}
	}
	if got < want {
		t.Errorf("sluice_rollout_analysis_runs_total{phase=Successful} = %v, want at least %v", got, want)
	}
}

// checkAcknowledgedByFollower checks that the leader, which has no xDS
// client of its own, took the steps of v2 as acknowledged from the
// follower's report of its client's ACKs, never from the VirtualService
// write it falls back on when no replica has clients.
func (w *world) checkAcknowledgedByFollower(t *testing.T, leader *replica, before map[string]float64) {
	t.Helper()
	after := leader.planAnswers(t)
	if after["replicas"] <= before["replicas"] || after["fallback"] != before["fallback"] || after["local"] != before["local"] {
		t.Errorf("the leader's acknowledgements of v2's first step by what answered: before %v, after %v; "+
			"want more from the replicas' reports and none from the VirtualService fallback", before, after)
	}
}

// planAnswers reads the replica's sluice_xds_plan_answers_total
// {state="Acknowledged"} by its via label.
func (r *replica) planAnswers(t *testing.T) map[string]float64 {
	t.Helper()
	families, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "sluice_xds_plan_answers_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := metricLabels(m)
			if labels["state"] == "Acknowledged" {
				out[labels["via"]] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// editUnmanagedRoute pushes an edit of the admin route, which Sluice
// does not manage, while the rollout runs: it reaches the cluster as Git
// declares it, and the weights stay where the rollout put them, in the
// same rollout (status.starts stays starts).
func (w *world) editUnmanagedRoute(t *testing.T, starts int32) {
	t.Helper()
	w.repo.Push("echo: admin timeout 7s", map[string]string{istioFile: w.m.istio("7s")})
	w.checkAdminRoute(t, "7s")
	w.eventually(t, "the VirtualService to carry the plan in force", 30*time.Second, func(ro *v1alpha1.Rollout) (bool, error) {
		vs := w.virtualService(t)
		st := ro.Status
		if vs.PlanVersion != st.Traffic.PlanVersion {
			return false, nil // read between a step's status and its write
		}
		if st.Phase != v1alpha1.PhaseProgressing || st.Starts != starts ||
			vs.Primary["canary"] != int64(st.Traffic.CanaryWeight) || vs.Primary["stable"] != int64(st.Traffic.StableWeight) {
			return false, fmt.Errorf("after the admin route edit: phase %s, starts %d (want %d), VirtualService primary %v, status weights %d/%d",
				st.Phase, st.Starts, starts, vs.Primary, st.Traffic.StableWeight, st.Traffic.CanaryWeight)
		}
		return true, nil
	})
}

// killLeaderMidStep stops the leader in the middle of the analysis at
// 50%, once its run has measured: the follower takes over at the same
// step, with the same weights and the same run, which its analysis
// controller carries on measuring. It returns the replica that replaces
// the one killed.
func (w *world) killLeaderMidStep(t *testing.T, leader, follower *replica) *replica {
	t.Helper()
	var run string
	measured := func() int {
		return len(w.rec.snapshot().Runs[run].Indexes)
	}
	w.eventually(t, "the analysis at 50% (step 4) to have measured", time.Minute, func(ro *v1alpha1.Rollout) (bool, error) {
		if !stepAt(ro, 3) {
			return false, nil
		}
		run = currentRun(ro)
		rr, ok := w.rec.snapshot().Runs[run]
		return ok && len(rr.Indexes) >= 1 && !rr.Phase.Completed(), nil
	})
	before := w.rollout(t).Status
	measuredBefore := measured()
	killed := time.Now()
	leader.stop()
	w.eventually(t, "the follower to take the lease", 30*time.Second, func(*v1alpha1.Rollout) (bool, error) {
		return follower.elected(), nil
	})
	t.Logf("killed leader %s at step %s, %d%%, run %s after %d measurements; %s took over within %s",
		leader.name, before.StepDisplay, before.Traffic.CanaryWeight, run, measuredBefore, follower.name, time.Since(killed).Round(time.Millisecond))
	ro := w.rollout(t)
	after := ro.Status
	if !stepAt(ro, 3) || after.Traffic.CanaryWeight != 50 || after.Traffic.PlanVersion != before.Traffic.PlanVersion ||
		after.Starts != before.Starts || currentRun(ro) != run {
		t.Errorf("after the takeover: step %s weight %d plan %s starts %d run %s; want step 4/5, 50%%, plan %s, starts %d, run %s",
			after.StepDisplay, after.Traffic.CanaryWeight, after.Traffic.PlanVersion, after.Starts, currentRun(ro),
			before.Traffic.PlanVersion, before.Starts, run)
	}
	// The new leader carries on with the same run: its analysis
	// controller takes the next measurement, none is taken twice
	// (checkRuns).
	w.eventually(t, "the new leader to measure the run of step 4", 30*time.Second, func(*v1alpha1.Rollout) (bool, error) {
		return measured() > measuredBefore, nil
	})
	// A new replica replaces the one killed, as its Deployment would.
	return w.startReplica("c")
}

// waitPromoted waits until v2 serves alone, and checks v1 is kept for
// the scale-down delay and then scaled to 0.
func (w *world) waitPromoted(t *testing.T, load *grpcecho.Load) {
	t.Helper()
	v1, v2 := w.revs["v1"], w.revs["v2"]
	w.eventually(t, "v2 to be promoted", time.Minute, func(ro *v1alpha1.Rollout) (bool, error) {
		if ro.Status.Abort != nil {
			return false, fmt.Errorf("the rollout of v2 was aborted: %s", ro.Status.Abort.Message)
		}
		return healthyOn(ro, v2), nil
	})
	// The old revision keeps running for scaleDownDelaySeconds (2 s), in
	// case the promotion has to be undone, and then stops.
	if rs := w.replicaSet(t, v1); *rs.Spec.Replicas != 2 {
		t.Errorf("the v1 ReplicaSet has %d replicas right after the promotion, want 2 until the scale-down delay is over", *rs.Spec.Replicas)
	}
	w.waitAllOn(t, load, "v2")
	w.eventually(t, "the v1 ReplicaSet to be scaled down after the delay", 30*time.Second, func(*v1alpha1.Rollout) (bool, error) {
		rs := &appsv1.ReplicaSet{}
		if err := w.admin.Get(context.Background(), client.ObjectKey{Namespace: w.ns, Name: workload.Name(rolloutName, v1)}, rs); err != nil {
			return false, err
		}
		return *rs.Spec.Replicas == 0, nil
	})
	if rs := w.replicaSet(t, v2); *rs.Spec.Replicas != 2 {
		t.Errorf("the v2 ReplicaSet has %d replicas, want 2", *rs.Spec.Replicas)
	}
}

// releaseBad is phase 3.
func (w *world) releaseBad(t *testing.T, load, load2 *grpcecho.Load, serving *replica) {
	v2, v3 := w.revs["v2"], w.revs["v3"]
	bad := w.repo.Push("echo: release v3", map[string]string{rolloutFile: w.m.rollout("v3")})

	var abort v1alpha1.AbortStatus
	var degraded string
	w.eventually(t, "the rollout of v3 to be aborted by its analysis", time.Minute, func(*v1alpha1.Rollout) (bool, error) {
		for _, s := range w.rec.snapshot().Statuses {
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
	for _, s := range w.rec.snapshot().Statuses {
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

	h := w.rec.snapshot()
	w.checkSplits(t, load2, serving, h.Polled, v3, map[int32]bool{10: true})
	w.checkRuns(t, h.Runs, v3, 1, v1alpha1.AnalysisFailed)
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
	l, err := grpcecho.StartLoad(ctx, grpcecho.LoadOptions{XDSAddr: r.xdsAddr, Target: w.m.host, Rate: 200, NodeID: "e2e-client-of-" + r.name})
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
		if err := w.admin.Get(context.Background(), client.ObjectKey{Namespace: w.ns, Name: rolloutName}, ro); err != nil {
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
	if err := w.admin.Get(context.Background(), client.ObjectKey{Namespace: w.ns, Name: rolloutName}, ro); err != nil {
		t.Fatal(err)
	}
	return ro
}

func (w *world) replicaSet(t *testing.T, rev string) *appsv1.ReplicaSet {
	t.Helper()
	rs := &appsv1.ReplicaSet{}
	if err := w.admin.Get(context.Background(), client.ObjectKey{Namespace: w.ns, Name: workload.Name(rolloutName, rev)}, rs); err != nil {
		t.Fatal(err)
	}
	return rs
}

func (w *world) virtualService(t *testing.T) vsSample {
	t.Helper()
	vs, err := w.rec.virtualService(context.Background())
	if err != nil || vs == nil {
		t.Fatalf("VirtualService %s/%s: %v", w.ns, rolloutName, err)
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
