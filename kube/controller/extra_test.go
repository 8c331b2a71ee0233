package controller

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/kube/istio"
	"github.com/sluicehq/sluice/kube/workload"
	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// gitDeclares is Git's declarations of the Istio objects: bookinfo's
// reviews VirtualService with the one route Sluice manages, and a
// DestinationRule with a subset of the user's own.
type gitDeclares struct{}

func (gitDeclares) Declared(ns, vs, dr string) (*networkingv1.VirtualService, *networkingv1.DestinationRule, error) {
	if vs != "reviews" || dr != "reviews" {
		return nil, nil, fmt.Errorf("Git declares reviews only, not %q and %q", vs, dr)
	}
	v := &networkingv1.VirtualService{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reviews"}}
	v.Spec.Hosts = []string{"reviews"}
	v.Spec.Http = []*networking.HTTPRoute{{Name: "reviews", Route: []*networking.HTTPRouteDestination{
		{Destination: &networking.Destination{Host: "reviews", Subset: plan.Stable}}}}}
	d := &networkingv1.DestinationRule{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reviews"}}
	d.Spec.Host = "reviews"
	d.Spec.Subsets = []*networking.Subset{{Name: "v1", Labels: map[string]string{"version": "v1"}}}
	return v, d, nil
}

// bookinfoReviews is bookinfo's reviews Rollout in controller mode: v1
// stable, and steps that run end-user jason on an extra revision built
// from the canary's template with the reviews image replaced by v2, then
// split 50/50 and wait for promotion.
func bookinfoReviews(ns string) *v1alpha1.Rollout {
	ro := newRollout(ns, "reviews", "bookinfo/reviews:v1",
		v1alpha1.CanaryStep{SetRevision: &v1alpha1.RevisionStep{
			Name:     "jason",
			Template: &v1alpha1.RevisionTemplate{From: v1alpha1.RevisionFromCanary, Images: map[string]string{"reviews": "bookinfo/reviews:v2"}},
			Replicas: ptr.To[int32](2),
			Match:    []v1alpha1.RouteMatch{{Headers: []v1alpha1.HeaderMatch{{Name: "end-user", Exact: ptr.To("jason")}}}},
		}},
		setWeight(50),
		pauseUntilPromoted(),
	)
	ro.Spec.Template.Spec.Containers[0].Name = "reviews"
	ro.Spec.Service.Hosts = []string{"reviews"}
	ro.Spec.Service.VirtualService = &v1alpha1.VirtualServiceRef{Name: "reviews", Routes: []string{"reviews"}}
	ro.Spec.Service.DestinationRule = &v1alpha1.ObjectRef{Name: "reviews"}
	return ro
}

// withIstio makes the harness publish through the Istio writer, merging
// into gitDeclares's objects, before the fake plane acknowledges.
func (h *harness) withIstio() {
	h.r.Publisher = Publishers{&istio.Publisher{Writer: istio.NewWriter(h.c), Declared: gitDeclares{}}, h.plane}
}

// markAvailableButExtras plays the kubelet for every ReplicaSet but the
// extra revisions': their pods never become available.
func (h *harness) markAvailableButExtras() {
	h.t.Helper()
	var rss appsv1.ReplicaSetList
	if err := h.c.List(context.Background(), &rss, client.InNamespace(h.key.Namespace)); err != nil {
		h.t.Fatal(err)
	}
	for i := range rss.Items {
		rs := &rss.Items[i]
		if n := *rs.Spec.Replicas; rs.Labels[workload.LabelExtra] == "" && rs.Status.AvailableReplicas != n {
			rs.Status.Replicas, rs.Status.ReadyReplicas, rs.Status.AvailableReplicas = n, n, n
			if err := h.c.Status().Update(context.Background(), rs); err != nil {
				h.t.Fatal(err)
			}
		}
	}
}

// extraRS is the ReplicaSet of an extra revision, nil when there is none.
func (h *harness) extraRS(rev string) *appsv1.ReplicaSet {
	h.t.Helper()
	rs := &appsv1.ReplicaSet{}
	err := h.c.Get(context.Background(), types.NamespacedName{Namespace: h.key.Namespace, Name: workload.Name(h.key.Name, rev)}, rs)
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		h.t.Fatal(err)
	}
	return rs
}

func (h *harness) istioObjects() (*networkingv1.VirtualService, *networkingv1.DestinationRule) {
	h.t.Helper()
	vs, dr := &networkingv1.VirtualService{}, &networkingv1.DestinationRule{}
	key := types.NamespacedName{Namespace: h.key.Namespace, Name: "reviews"}
	if err := h.c.Get(context.Background(), key, vs); err != nil {
		h.t.Fatal(err)
	}
	if err := h.c.Get(context.Background(), key, dr); err != nil {
		h.t.Fatal(err)
	}
	return vs, dr
}

// subsets renders a DestinationRule's subsets as name=revision (or the
// labels when a subset does not select by revision).
func subsets(dr *networkingv1.DestinationRule) []string {
	var out []string
	for _, s := range dr.Spec.Subsets {
		if rev, ok := s.Labels[workload.LabelRevision]; ok && len(s.Labels) == 1 {
			out = append(out, s.Name+"="+rev)
		} else {
			out = append(out, fmt.Sprintf("%s=%v", s.Name, s.Labels))
		}
	}
	return out
}

// httpRoutes renders a VirtualService's routes as "name: match → subset=weight ...".
func httpRoutes(vs *networkingv1.VirtualService) []string {
	var out []string
	for _, hr := range vs.Spec.Http {
		s := hr.Name + ":"
		for _, m := range hr.Match {
			for k, v := range m.Headers {
				s += " " + k + "=" + v.GetExact()
			}
		}
		s += " →"
		for _, d := range hr.Route {
			s += fmt.Sprintf(" %s=%d", d.Destination.Subset, d.Weight)
		}
		out = append(out, s)
	}
	return out
}

func (h *harness) command(id string, kind v1alpha1.CommandKind) {
	h.t.Helper()
	h.refresh()
	h.annotate(h.t, Command{ID: id, Kind: kind, By: "test", At: h.now})
}

// TestBookinfoExtraRevision is bookinfo's reviews case in controller
// mode, written by the Istio writer: v1 stable, v3 at 50%, and end-user
// jason on v2, an extra revision built from the canary's template with the
// reviews image replaced. Its ReplicaSet comes first, labelled with its own
// revision and served by a Service of its own; its subset reaches the
// DestinationRule at once but its route only once its pods are available;
// then jason's route goes ahead of the 50/50 split. An abort sends all to
// stable and deletes the extra ReplicaSet; a retry builds it again under
// the same name, and promotion ends it for good.
func TestBookinfoExtraRevision(t *testing.T) {
	h := harnessOf(t, bookinfoReviews)
	h.withIstio()
	h.drive("healthy on v1", healthy)
	v1 := h.ro.Status.StableRevision
	v3 := h.setImage("bookinfo/reviews:v3")

	// Without available pods the extra revision gets its subset, and no
	// traffic: the step waits.
	for range 6 {
		h.markAvailableButExtras()
		h.mustReconcile()
	}
	st := h.ro.Status
	if len(st.ExtraRevisions) != 1 {
		t.Fatalf("status.extraRevisions %+v, want jason", st.ExtraRevisions)
	}
	x := st.ExtraRevisions[0]
	if x.Name != "jason" || x.Revision == "" || x.Revision == v1 || x.Revision == v3 || x.Replicas != 2 ||
		x.Template == nil || x.Template.From != v1alpha1.RevisionFromCanary || x.Template.Images["reviews"] != "bookinfo/reviews:v2" {
		t.Fatalf("status.extraRevisions[0] %+v (v1 %s, v3 %s)", x, v1, v3)
	}
	jason := x.Revision
	rs := h.extraRS(jason)
	if rs == nil {
		t.Fatalf("no ReplicaSet of extra revision %s", jason)
	}
	if img := rs.Spec.Template.Spec.Containers[0].Image; img != "bookinfo/reviews:v2" || *rs.Spec.Replicas != 2 {
		t.Fatalf("jason's ReplicaSet runs %s at %d replicas, want bookinfo/reviews:v2 at 2", img, *rs.Spec.Replicas)
	}
	for what, l := range map[string]map[string]string{"ReplicaSet": rs.Labels, "selector": rs.Spec.Selector.MatchLabels, "pods": rs.Spec.Template.Labels} {
		if l[workload.LabelRevision] != jason || l[workload.LabelExtra] != "jason" || l["app"] != "reviews" {
			t.Errorf("%s labels %v: want app=reviews, %s=%s, %s=jason", what, l, workload.LabelRevision, jason, workload.LabelExtra)
		}
	}
	if ref := metav1.GetControllerOf(rs); ref == nil || ref.UID != h.ro.UID {
		t.Errorf("jason's ReplicaSet owner %+v, want the Rollout", ref)
	}
	svc := &corev1.Service{}
	if err := h.c.Get(context.Background(), types.NamespacedName{Namespace: h.key.Namespace, Name: workload.ServiceName("reviews", jason)}, svc); err != nil {
		t.Fatalf("jason's Service: %v", err)
	}
	if svc.Spec.Selector[workload.LabelRevision] != jason || svc.Labels[workload.LabelService] != "reviews" || svc.Labels[workload.LabelRevision] != jason {
		t.Errorf("jason's Service: selector %v, labels %v", svc.Spec.Selector, svc.Labels)
	}
	if p, i := h.plan(), *st.CurrentStepIndex; i != 0 || p.Revision("jason") != jason {
		t.Fatalf("held at step %d with plan subsets %+v; want step 0, subset jason → %s", i, p.Subsets, jason)
	}
	vs, dr := h.istioObjects()
	if got := httpRoutes(vs); !slices.Equal(got, []string{"reviews: → stable=100 canary=0 jason=0"}) {
		t.Fatalf("before jason's pods are available the VirtualService routes %v, want all to stable, jason at 0 and no route of his", got)
	}
	if got, want := subsets(dr), []string{"v1=map[version:v1]", "stable=" + v1, "canary=" + v3, "jason=" + jason}; !slices.Equal(got, want) {
		t.Fatalf("DestinationRule subsets %v, want %v", got, want)
	}

	h.drive("paused at 50%", h.stepIs(2))
	h.wantCanaryWeight(50)
	vs, dr = h.istioObjects()
	if got, want := httpRoutes(vs), []string{"reviews-revision-jason: end-user=jason → jason=100", "reviews: → stable=50 canary=50 jason=0"}; !slices.Equal(got, want) {
		t.Fatalf("VirtualService routes %v, want %v", got, want)
	}
	if got, want := subsets(dr), []string{"v1=map[version:v1]", "stable=" + v1, "canary=" + v3, "jason=" + jason}; !slices.Equal(got, want) {
		t.Fatalf("DestinationRule subsets %v, want %v", got, want)
	}
	h.wantReplicas(jason, 2)

	// Abort: all to stable, jason's revision stopped and its ReplicaSet gone.
	h.command("abort-1", v1alpha1.CommandAbort)
	h.mustReconcile()
	h.markAvailable()
	h.mustReconcile()
	if h.ro.Status.Abort == nil || len(h.ro.Status.ExtraRevisions) != 0 {
		t.Fatalf("after abort: abort %+v, extra revisions %+v", h.ro.Status.Abort, h.ro.Status.ExtraRevisions)
	}
	if rs := h.extraRS(jason); rs != nil {
		t.Fatalf("jason's ReplicaSet outlived the abort at %d replicas", *rs.Spec.Replicas)
	}
	vs, dr = h.istioObjects()
	if got := httpRoutes(vs); !slices.Equal(got, []string{"reviews: → stable=100"}) {
		t.Fatalf("after abort the VirtualService routes %v, want all to stable", got)
	}
	if got, want := subsets(dr), []string{"v1=map[version:v1]", "stable=" + v1, "canary=" + v1}; !slices.Equal(got, want) {
		t.Fatalf("after abort DestinationRule subsets %v, want %v", got, want)
	}
	h.wantReplicas(v1, 3)

	// Retry: the same extra revision, and ReplicaSet, again.
	h.command("retry-1", v1alpha1.CommandRetry)
	h.drive("paused at 50% again", h.stepIs(2))
	if x := h.ro.Status.ExtraRevisions; len(x) != 1 || x[0].Revision != jason {
		t.Fatalf("after retry: extra revisions %+v, want jason on %s", x, jason)
	}
	h.wantReplicas(jason, 2)

	// Promotion: v3 stable, jason's revision ended and gone.
	h.command("promote-1", v1alpha1.CommandPromote)
	h.drive("promoted", healthy)
	if h.ro.Status.StableRevision != v3 || len(h.ro.Status.ExtraRevisions) != 0 {
		t.Fatalf("after promotion: stable %s, extra revisions %+v; want %s and none", h.ro.Status.StableRevision, h.ro.Status.ExtraRevisions, v3)
	}
	if rs := h.extraRS(jason); rs != nil {
		t.Fatal("jason's ReplicaSet outlived the promotion")
	}
	vs, dr = h.istioObjects()
	if got := httpRoutes(vs); !slices.Equal(got, []string{"reviews: → stable=100"}) {
		t.Fatalf("after promotion the VirtualService routes %v, want all to stable", got)
	}
	if got, want := subsets(dr), []string{"v1=map[version:v1]", "stable=" + v3, "canary=" + v3}; !slices.Equal(got, want) {
		t.Fatalf("after promotion DestinationRule subsets %v, want %v", got, want)
	}
	if _, ok := dr.Annotations[istio.AnnotationExtraSubsets]; ok {
		t.Error("the DestinationRule still records extra subsets")
	}
}

// A fresh baseline of stable (From: Stable, no images) runs as a revision
// and ReplicaSet of its own, built from the stable ReplicaSet's template,
// not stable's ReplicaSet, which keeps its replicas.
func TestBaselineGetsItsOwnReplicaSet(t *testing.T) {
	h := newHarness(t,
		setWeight(20),
		v1alpha1.CanaryStep{SetRevision: &v1alpha1.RevisionStep{
			Name: "baseline", Template: &v1alpha1.RevisionTemplate{From: v1alpha1.RevisionFromStable}, Weight: 20,
		}},
		pauseUntilPromoted())
	h.drive("healthy on v1", healthy)
	v1 := h.ro.Status.StableRevision
	v2 := h.setImage("checkout:v2")
	h.drive("paused with the baseline", h.stepIs(2))

	x := h.ro.Status.ExtraRevisions
	if len(x) != 1 || x[0].Name != "baseline" || x[0].Revision == v1 || x[0].Revision == v2 {
		t.Fatalf("status.extraRevisions %+v: want baseline on a revision of its own (stable %s, canary %s)", x, v1, v2)
	}
	base := x[0].Revision
	rs := h.extraRS(base)
	if rs == nil {
		t.Fatalf("no ReplicaSet of the baseline %s", base)
	}
	if img := rs.Spec.Template.Spec.Containers[0].Image; img != "checkout:v1" || *rs.Spec.Replicas != 1 {
		t.Errorf("baseline ReplicaSet runs %s at %d, want stable's checkout:v1 at 1", img, *rs.Spec.Replicas)
	}
	if rs.Spec.Selector.MatchLabels[workload.LabelRevision] != base || rs.Labels[workload.LabelExtra] != "baseline" {
		t.Errorf("baseline ReplicaSet labels %v, selector %v", rs.Labels, rs.Spec.Selector.MatchLabels)
	}
	h.wantReplicas(v1, 3)
	if got := h.replicaSet(v1).Labels[workload.LabelExtra]; got != "" {
		t.Errorf("stable's ReplicaSet labelled as extra revision %q", got)
	}
	p := h.plan()
	if p.Revision("baseline") != base || p.Revision(plan.Stable) != v1 {
		t.Fatalf("plan subsets %+v: want baseline → %s apart from stable %s", p.Subsets, base, v1)
	}
	w := map[string]int32{}
	for _, d := range p.Hosts[0].Routes[len(p.Hosts[0].Routes)-1].Destinations {
		w[d.Subset] = d.Weight
	}
	if w[plan.Stable] != 60 || w[plan.Canary] != 20 || w["baseline"] != 20 {
		t.Fatalf("weights %v, want stable 60, canary 20, baseline 20", w)
	}

	h.command("promote-1", v1alpha1.CommandPromote)
	h.drive("promoted", healthy)
	h.now = h.now.Add(2 * time.Second) // past the scale-down delay
	h.mustReconcile()
	if h.extraRS(base) != nil {
		t.Error("the baseline's ReplicaSet outlived the rollout")
	}
	h.wantReplicas(v1, 0)
	h.wantReplicas(v2, 3)
}
