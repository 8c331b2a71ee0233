package gitapply

import (
	"context"
	"strings"
	"testing"
	"time"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/gitsync"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// appliedBy reports whether field manager FieldManager applied obj.
func appliedBy(obj metav1.Object) bool {
	for _, mf := range obj.GetManagedFields() {
		if mf.Manager == FieldManager && mf.Operation == metav1.ManagedFieldsOperationApply {
			return true
		}
	}
	return false
}

func wantProvenance(t *testing.T, obj metav1.Object, r *repo, sha, path string) {
	t.Helper()
	a := obj.GetAnnotations()
	if a[gitsync.AnnotationRepository] != r.URL() || a[gitsync.AnnotationCommit] != sha || a[gitsync.AnnotationPath] != path {
		t.Errorf("%s provenance %v: want %s at %s, %s", obj.GetName(), a, r.URL(), sha, path)
	}
	if _, err := time.Parse(time.RFC3339, a[gitsync.AnnotationCommitTime]); err != nil {
		t.Errorf("%s commit time %q: %v", obj.GetName(), a[gitsync.AnnotationCommitTime], err)
	}
}

func notFound(t *testing.T, c client.Client, ns, name string, obj client.Object) {
	t.Helper()
	err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, obj)
	if !apierrors.IsNotFound(err) {
		t.Errorf("%T %s/%s: got %v, want not found", obj, ns, name, err)
	}
}

// The first sync applies Rollouts and AnalysisTemplates with provenance, in
// the manifest's namespace or the default one; an Istio object no Rollout
// names is applied as Git has it; the ones a Rollout names are kept for the
// Istio writer, not applied.
func TestFirstSyncApplies(t *testing.T) {
	c := cluster(t)
	other := namespace(t, c)
	files := reviews()
	files["apps/istio.yaml"], files["more/details.yaml"] = istioYAML("3s"), rolloutYAML("details", other, "details:v1")
	f := newFixture(t, files)
	ns, r, sha := f.ns, f.r, f.first
	a := start(t, c, r, ns)
	st := syncTo(t, a, sha)
	if st.Err != nil || st.Git.Err != nil {
		t.Fatalf("state %+v: want applied without errors", st)
	}
	if err := a.Ready(nil); err != nil {
		t.Errorf("Ready after the first sync: %v", err)
	}

	ro := get(t, c, ns, "reviews", &v1alpha1.Rollout{})
	wantProvenance(t, ro, r, sha, "apps/reviews.yaml")
	if ro.Labels["team"] != "books" || ro.Annotations["owner"] != "books@example.com" || !appliedBy(ro) {
		t.Errorf("Rollout labels %v, annotations %v, applied by %s: %v; want Git's labels and annotations", ro.Labels, ro.Annotations, FieldManager, appliedBy(ro))
	}
	if img := ro.Spec.Template.Spec.Containers[0].Image; img != "reviews:v1" || !ro.Spec.Rollback.GitRevert {
		t.Errorf("Rollout spec image %s, gitRevert %v: want Git's spec", img, ro.Spec.Rollback.GitRevert)
	}
	wantProvenance(t, get(t, c, other, "details", &v1alpha1.Rollout{}), r, sha, "more/details.yaml")
	tmpl := get(t, c, ns, "success-rate", &v1alpha1.AnalysisTemplate{})
	wantProvenance(t, tmpl, r, sha, "apps/analysis.yaml")

	ratings := get(t, c, ns, "ratings", &networkingv1.VirtualService{})
	wantProvenance(t, ratings, r, sha, "apps/istio.yaml")
	if ratings.Labels["app"] != "ratings" || ratings.Spec.Http[0].GetRetries().GetAttempts() != 2 || !appliedBy(ratings) {
		t.Errorf("unnamed VirtualService %+v: want it as Git declares it, applied by %s", ratings.Spec.Http, FieldManager)
	}
	notFound(t, c, ns, "reviews", &networkingv1.VirtualService{})
	notFound(t, c, ns, "reviews", &networkingv1.DestinationRule{})
	vs, dr, err := a.Declared(ns, "reviews", "reviews")
	if err != nil || vs == nil || dr == nil {
		t.Fatalf("Declared = %v, %v, %v; want both objects", vs, dr, err)
	}
	if vs.Namespace != ns || vs.Spec.Http[0].GetTimeout().AsDuration() != 3*time.Second || dr.Spec.Host != "reviews" {
		t.Errorf("declared VirtualService in %q with debug timeout %v, DestinationRule host %q: want Git's, in %s",
			vs.Namespace, vs.Spec.Http[0].GetTimeout().AsDuration(), dr.Spec.Host, ns)
	}
	if vs, _, _ := a.Declared(other, "reviews", ""); vs != nil {
		t.Errorf("Declared in %s found %s/%s: declarations are per namespace", other, vs.Namespace, vs.Name)
	}
}

// A commit with an invalid manifest is rejected whole: nothing of it is
// applied, the last good commit stays in force, and the error names the
// file and line.
func TestInvalidCommitAppliesNothing(t *testing.T) {
	f := newFixture(t, reviews())
	c, ns, r, good := f.c, f.ns, f.r, f.first
	a := start(t, c, r, ns)
	syncTo(t, a, good)

	broken := strings.Replace(rolloutYAML("ratings", "", "ratings:v1"), "setWeight: 30", "setWeight: 130", 1)
	bad := r.Push("bad", map[string]string{
		"apps/reviews.yaml":  rolloutYAML("reviews", "", "reviews:v2"),
		"apps/analysis.yaml": strings.Replace(templateYAML, "interval: 10s", "interval: 20s", 1),
		"apps/ratings.yaml":  broken,
	})
	st := syncTo(t, a, bad)
	if st.Commit != good || st.Git.Err == nil || !strings.Contains(st.Git.Err.Error(), "apps/ratings.yaml:25: spec.strategy.canary.steps[0].setWeight") {
		t.Fatalf("after the bad commit: in force %s, Git error %v; want %s in force and the problem at apps/ratings.yaml:25", st.Commit, st.Git.Err, good)
	}
	ro := get(t, c, ns, "reviews", &v1alpha1.Rollout{})
	if img := ro.Spec.Template.Spec.Containers[0].Image; img != "reviews:v1" || ro.Annotations[gitsync.AnnotationCommit] != good {
		t.Errorf("Rollout at image %s, commit %s: want the good commit's", img, ro.Annotations[gitsync.AnnotationCommit])
	}
	if tmpl := get(t, c, ns, "success-rate", &v1alpha1.AnalysisTemplate{}); tmpl.Spec.Metrics[0].Interval.Duration != 10*time.Second {
		t.Errorf("template interval %v: the rejected commit's change was applied", tmpl.Spec.Metrics[0].Interval)
	}
	notFound(t, c, ns, "ratings", &v1alpha1.Rollout{})
	if err := a.Ready(nil); err != nil {
		t.Errorf("Ready with the last good commit in force: %v", err)
	}
}

// A Rollout of this source that leaves Git is marked with the commit that
// removed it, not deleted; a template that leaves Git is deleted; objects
// from elsewhere are left alone. Back in Git, the mark goes.
func TestRemovedFromGit(t *testing.T) {
	files := reviews()
	files["apps/details.yaml"] = rolloutYAML("details", "", "details:v1")
	f := newFixture(t, files)
	c, ns, r, first := f.c, f.ns, f.r, f.first
	ctx := context.Background()
	a := start(t, c, r, ns)
	syncTo(t, a, first)
	// Applied by hand, and by another repository: not this source's.
	byHand := &v1alpha1.AnalysisTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "by-hand"},
		Spec: get(t, c, ns, "success-rate", &v1alpha1.AnalysisTemplate{}).Spec}
	elsewhere := get(t, c, ns, "details", &v1alpha1.Rollout{}).DeepCopy()
	elsewhere.ObjectMeta = metav1.ObjectMeta{Namespace: ns, Name: "elsewhere", Annotations: map[string]string{
		gitsync.AnnotationRepository: "https://git.example.com/other.git", gitsync.AnnotationPath: "apps/elsewhere.yaml"}}
	for _, obj := range []client.Object{byHand, elsewhere} {
		if err := c.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}

	second := r.Push("drop details and the template", map[string]string{"apps/details.yaml": "", "apps/analysis.yaml": ""})
	st := syncTo(t, a, second)
	if st.Err != nil {
		t.Fatal(st.Err)
	}
	details := get(t, c, ns, "details", &v1alpha1.Rollout{})
	if got := details.Annotations[gitsync.AnnotationRemovedFromGit]; got != second {
		t.Errorf("details removal mark %q, want %s", got, second)
	}
	for _, name := range []string{"reviews", "elsewhere"} {
		if ro := get(t, c, ns, name, &v1alpha1.Rollout{}); ro.Annotations[gitsync.AnnotationRemovedFromGit] != "" {
			t.Errorf("%s marked removed: %v", name, ro.Annotations)
		}
	}
	notFound(t, c, ns, "success-rate", &v1alpha1.AnalysisTemplate{})
	get(t, c, ns, "by-hand", &v1alpha1.AnalysisTemplate{})

	// A later commit does not move the mark: it names the removal.
	third := r.Push("unrelated", map[string]string{"apps/README.md": "deploy repo"})
	syncTo(t, a, third)
	if got := get(t, c, ns, "details", &v1alpha1.Rollout{}).Annotations[gitsync.AnnotationRemovedFromGit]; got != second {
		t.Errorf("removal mark %q after a later commit, want %s kept", got, second)
	}

	back := r.Push("details is back", map[string]string{"apps/details.yaml": rolloutYAML("details", "", "details:v1")})
	syncTo(t, a, back)
	details = get(t, c, ns, "details", &v1alpha1.Rollout{})
	if _, marked := details.Annotations[gitsync.AnnotationRemovedFromGit]; marked || details.Annotations[gitsync.AnnotationCommit] != back {
		t.Errorf("details back in Git: annotations %v; want no mark, commit %s", details.Annotations, back)
	}
}

// After a restart there is no previous snapshot to compare with: what left
// Git while the controller was down is found in the cluster.
func TestRestartFindsWhatLeftGit(t *testing.T) {
	f := newFixture(t, reviews())
	c, ns, r, first := f.c, f.ns, f.r, f.first
	a := newApplier(t, c, r, ns)
	stop := run(t, a)
	syncTo(t, a, first)
	stop()

	second := r.Push("drop everything", map[string]string{"apps/reviews.yaml": "", "apps/analysis.yaml": "", "apps/README.md": "empty"})
	syncTo(t, start(t, c, r, ns), second)
	if got := get(t, c, ns, "reviews", &v1alpha1.Rollout{}).Annotations[gitsync.AnnotationRemovedFromGit]; got != second {
		t.Errorf("removal mark %q after a restart, want %s", got, second)
	}
	notFound(t, c, ns, "success-rate", &v1alpha1.AnalysisTemplate{})
}

// Wake names every Rollout after the first sync, then only the Rollouts
// whose declared Istio objects changed.
func TestWakeOnChangedDeclarations(t *testing.T) {
	files := reviews()
	files["apps/details.yaml"] = strings.ReplaceAll(rolloutYAML("details", "", "details:v1"), "name: reviews", "name: details")
	files["apps/istio.yaml"] = istioYAML("3s")
	f := newFixture(t, files)
	c, ns, r, first := f.c, f.ns, f.r, f.first
	a := newApplier(t, c, r, ns)
	wake := a.Wake()
	run(t, a)
	// The first sync wakes the Rollouts of other tests' namespaces too
	// (the whole cluster waited for it): only this namespace's count.
	woken := func(want ...string) {
		t.Helper()
		var got []string
		for {
			select {
			case ev := <-wake:
				if ev.Object.GetNamespace() == ns {
					got = append(got, ev.Object.GetName())
				}
				continue
			case <-time.After(200 * time.Millisecond):
			}
			break
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("woken %v, want %v", got, want)
		}
	}
	syncTo(t, a, first)
	woken("details", "reviews")

	syncTo(t, a, r.Push("template only", map[string]string{"apps/analysis.yaml": strings.Replace(templateYAML, "10s", "20s", 1)}))
	woken()
	syncTo(t, a, r.Push("debug route", map[string]string{"apps/istio.yaml": istioYAML("7s")}))
	woken("reviews")
	vs, _, err := a.Declared(ns, "reviews", "")
	if err != nil || vs.Spec.Http[0].GetTimeout().AsDuration() != 7*time.Second {
		t.Errorf("declared debug timeout %v (%v), want 7s", vs.Spec.Http[0].GetTimeout().AsDuration(), err)
	}
}

// The Applier waits for its first sync before anyone may publish over
// Git's objects, passes readiness where it does not run (other replicas),
// and reverts only what it applied, only with write-back on.
func TestBeforeSyncAndRefusals(t *testing.T) {
	f := newFixture(t, reviews())
	c, ns, r, sha := f.c, f.ns, f.r, f.first

	idle := newApplier(t, c, r, ns)
	if err := idle.Ready(nil); err != nil {
		t.Errorf("Ready of an Applier that never started (a follower): %v", err)
	}
	if _, _, err := idle.Declared(ns, "reviews", "reviews"); err == nil || !strings.Contains(err.Error(), "waiting for the first Git sync") {
		t.Errorf("Declared before the first sync: %v, want an error", err)
	}
	if !idle.NeedLeaderElection() {
		t.Error("the Applier must run on the leader only")
	}

	a := start(t, c, r, ns, func(o *Options) { o.WriteBack = false })
	syncTo(t, a, sha)
	ro := get(t, c, ns, "reviews", &v1alpha1.Rollout{})
	rv := engine.GitRevert{Rollout: ro.Name, Namespace: ns, StableRevision: "abc", FailedRevision: "def"}
	if _, err := a.Revert(context.Background(), ro, rv); err == nil || !strings.Contains(err.Error(), "write-back is off") {
		t.Errorf("Revert with write-back off: %v", err)
	}
	on := start(t, c, r, ns)
	syncTo(t, on, sha)
	foreign := ro.DeepCopy()
	foreign.Annotations[gitsync.AnnotationRepository] = "https://git.example.com/other.git"
	if _, err := on.Revert(context.Background(), foreign, rv); err == nil || !strings.Contains(err.Error(), "was not applied from") {
		t.Errorf("Revert of another source's Rollout: %v", err)
	}
	if r.Head() != sha {
		t.Errorf("a refused revert pushed %s", r.Head())
	}
}
