package gitapply

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/event"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/sluicehq/sluice/gitsync"
	"github.com/sluicehq/sluice/internal/gittest"
	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/kube/controller"
	"github.com/sluicehq/sluice/kube/istio"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// runController starts what `sluice controller` runs on its leader: the
// Git applier, and the Rollout reconciler publishing through the Istio
// writer with Git's declarations, acknowledged on write, reverting through
// the applier, woken by it.
func runController(t *testing.T, f fixture, ev record.EventRecorder) *Applier {
	t.Helper()
	cfg, scheme := env.Start(t)
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:     scheme,
		Metrics:    metricsserver.Options{BindAddress: "0"},
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	// Lists from the manager's cache, as in production; the Istio writer
	// reads from the API server.
	a := newApplier(t, mgr.GetClient(), f.r, f.ns)
	pub := controller.NewAcceptedOnWrite(&istio.Publisher{Writer: istio.NewWriter(f.c), Declared: a})
	r := &controller.Reconciler{
		Client: mgr.GetClient(), Recorder: ev, Publisher: pub, Acknowledger: pub, Reverter: a,
		Wake: []<-chan event.GenericEvent{a.Wake()}, AckPollInterval: 50 * time.Millisecond,
	}
	if err := r.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	if err := mgr.Add(a); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("manager: %v", err)
		}
	})
	return a
}

// world is what the test looks at each poll.
type world struct {
	ro *v1alpha1.Rollout
	vs *networkingv1.VirtualService
}

func (w world) String() string {
	if w.ro == nil {
		return "no Rollout"
	}
	st := w.ro.Status
	return fmt.Sprintf("phase %s step %s canary %q traffic %+v: %s", st.Phase, st.StepDisplay, st.CanaryRevision, st.Traffic, st.Message)
}

// until polls the Rollout and its VirtualService, playing the kubelet,
// until cond holds.
func until(t *testing.T, c client.Client, ns, what string, cond func(world) bool) world {
	t.Helper()
	return eventually(t, what, func() (world, bool) {
		if err := kubetest.MarkAvailable(context.Background(), c, ns); err != nil {
			t.Error(err)
		}
		var w world
		ro, vs := &v1alpha1.Rollout{}, &networkingv1.VirtualService{}
		if c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "reviews"}, ro) == nil {
			w.ro = ro
		}
		if c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "reviews"}, vs) == nil {
			w.vs = vs
		}
		return w, w.ro != nil && w.vs != nil && cond(w)
	})
}

func route(vs *networkingv1.VirtualService, name string) *networking.HTTPRoute {
	for _, hr := range vs.Spec.Http {
		if hr.Name == name {
			return hr
		}
	}
	return nil
}

// weights of the managed route, by subset.
func weights(vs *networkingv1.VirtualService) map[string]int32 {
	out := map[string]int32{}
	if hr := route(vs, "reviews"); hr != nil {
		for _, d := range hr.Route {
			out[d.Destination.Subset] = d.Weight
		}
	}
	return out
}

func acked(ro *v1alpha1.Rollout) bool {
	tr := ro.Status.Traffic
	return tr.PlanVersion != "" && tr.AcknowledgedVersion == tr.PlanVersion
}

// Git in the cluster, end to end: a push starts a canary; the
// VirtualService written is Git's merged with the plan; a Git change to an
// unmanaged route goes through at 30% with the weights untouched; a failed
// analysis aborts and Sluice pushes a revert commit, which then comes back
// through Git; a Rollout removed from Git is retired at 100% stable with
// its routes kept.
func TestGitInTheCluster(t *testing.T) {
	files := reviews()
	files["apps/istio.yaml"] = istioYAML("3s")
	f := newFixture(t, files)
	c, ns, r := f.c, f.ns, f.r
	// Room for every Event of the test: the fake recorder blocks when full.
	ev := record.NewFakeRecorder(1024)
	a := runController(t, f, ev)

	w := until(t, c, ns, "v1 serving through Git's VirtualService", func(w world) bool {
		return w.ro.Status.Phase == v1alpha1.PhaseHealthy && acked(w.ro) && weights(w.vs)["stable"] == 100
	})
	if appliedBy(w.vs) {
		t.Errorf("the Applier applied the VirtualService a Rollout names; only the Istio writer may")
	}
	declared, _, err := a.Declared(ns, "reviews", "")
	if err != nil {
		t.Fatal(err)
	}
	debugJSON := func(vs *networkingv1.VirtualService) string {
		b, err := route(vs, "debug").MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if got, want := debugJSON(w.vs), debugJSON(declared); got != want {
		t.Errorf("unmanaged route in the cluster:\n got %s\nwant %s (as Git declares it)", got, want)
	}
	v1 := w.ro.Status.StableRevision

	r.Push("reviews v2", map[string]string{"apps/reviews.yaml": rolloutYAML("reviews", "", "reviews:v2")})
	a.Syncer().Trigger()
	w = until(t, c, ns, "v2 at 30% under analysis", func(w world) bool {
		st := w.ro.Status
		return st.CurrentStepIndex != nil && *st.CurrentStepIndex == 1 && acked(w.ro) && weights(w.vs)["canary"] == 30
	})
	plan30 := w.ro.Status.Traffic.PlanVersion

	r.Push("debug route: 7s", map[string]string{"apps/istio.yaml": istioYAML("7s")})
	a.Syncer().Trigger()
	w = until(t, c, ns, "Git's new debug timeout in the cluster", func(w world) bool {
		return route(w.vs, "debug").GetTimeout().AsDuration() == 7*time.Second
	})
	if got := weights(w.vs); got["stable"] != 70 || got["canary"] != 30 || w.ro.Status.Traffic.PlanVersion != plan30 {
		t.Errorf("after the Git change: weights %v, plan %s; want 70/30 and plan %s untouched", got, w.ro.Status.Traffic.PlanVersion, plan30)
	}

	// The analysis controller's verdict: failed. The engine aborts; with
	// rollback.gitRevert Sluice commits v1 back to Git.
	runName := ""
	for _, st := range w.ro.Status.Analysis {
		if !st.Terminated {
			runName = st.Name
		}
	}
	run := eventually(t, "analysis run "+runName, func() (*v1alpha1.AnalysisRun, bool) {
		run := &v1alpha1.AnalysisRun{}
		return run, runName != "" && c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: runName}, run) == nil
	})
	run.Status.Phase, run.Status.Message = v1alpha1.AnalysisFailed, "success-rate: 0.91 < 0.99"
	run.Status.Metrics = []v1alpha1.MetricResult{{Name: "success-rate", Phase: v1alpha1.AnalysisFailed, Failed: 3, LastValue: "0.91"}}
	if err := c.Status().Update(context.Background(), run); err != nil {
		t.Fatal(err)
	}
	until(t, c, ns, "aborted to 100% stable", func(w world) bool {
		return w.ro.Status.Abort != nil && weights(w.vs)["stable"] == 100
	})
	revert := eventually(t, "a revert commit on main", func() (string, bool) {
		msg := gittest.Git(t, r.Bare, "log", "-1", "--format=%B", "main")
		return msg, strings.HasPrefix(msg, "sluice: roll back reviews")
	})
	if !strings.Contains(revert, "0.91") || !strings.Contains(r.Read("apps/reviews.yaml"), "image: reviews:v1") {
		t.Errorf("revert commit %q with file\n%s\nwant the failed value quoted and image v1 back", revert, r.Read("apps/reviews.yaml"))
	}
	until(t, c, ns, "the revert applied back through Git", func(w world) bool {
		return w.ro.Annotations[gitsync.AnnotationCommit] == r.Head() && w.ro.Status.CanaryRevision == "" && w.ro.Status.StableRevision == v1
	})
	// The write-back is recorded in status, done after one attempt.
	w = until(t, c, ns, "status.gitRevert done", func(w world) bool {
		return w.ro.Status.GitRevert != nil && w.ro.Status.GitRevert.Phase == v1alpha1.GitRevertDone
	})
	if g := w.ro.Status.GitRevert; g.Outcome != string(gitsync.RevertPushed) || g.Attempts != 1 || g.Commit != r.Head() {
		t.Errorf("status.gitRevert = %+v, want one attempt that pushed %s", g, r.Head())
	}

	r.Pull()
	r.Push("reviews leaves Git", map[string]string{"apps/reviews.yaml": ""})
	a.Syncer().Trigger()
	w = until(t, c, ns, "retired", func(w world) bool {
		ready := meta.FindStatusCondition(w.ro.Status.Conditions, v1alpha1.ConditionReady)
		return ready != nil && ready.Reason == engine.ReasonRemovedFromGit && acked(w.ro)
	})
	if route(w.vs, "debug") == nil || weights(w.vs)["stable"] != 100 {
		t.Errorf("routes after retirement %v: want Git's routes kept, 100%% stable", w.vs.Spec.Http)
	}
	// Events go out after the status is written: wait for it.
	eventually(t, "the RemovedFromGit Warning Event", func() (string, bool) {
		for {
			select {
			case e := <-ev.Events:
				if strings.HasPrefix(e, "Warning "+engine.ReasonRemovedFromGit) {
					return e, true
				}
			default:
				return "", false
			}
		}
	})
}
