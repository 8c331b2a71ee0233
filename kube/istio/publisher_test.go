package istio

import (
	"errors"
	"strings"
	"sync"
	"testing"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sluicehq/sluice/gitsync"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// declarations is Git's declarations as a map, which a test changes as a
// push would.
type declarations struct {
	mu  sync.Mutex
	vs  map[string]*networkingv1.VirtualService
	dr  map[string]*networkingv1.DestinationRule
	err error
}

func (d *declarations) Declared(ns, vs, dr string) (*networkingv1.VirtualService, *networkingv1.DestinationRule, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil {
		return nil, nil, d.err
	}
	v, r := d.vs[ns+"/"+vs], d.dr[ns+"/"+dr]
	if v != nil {
		v = v.DeepCopy()
	}
	if r != nil {
		r = r.DeepCopy()
	}
	return v, r, nil
}

func (d *declarations) set(vs *networkingv1.VirtualService, dr *networkingv1.DestinationRule) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.vs = map[string]*networkingv1.VirtualService{vs.Namespace + "/" + vs.Name: vs}
	d.dr = map[string]*networkingv1.DestinationRule{dr.Namespace + "/" + dr.Name: dr}
}

// reviewsRollout is the Rollout that names Bookinfo's objects, applied
// from Git at a commit.
func reviewsRollout(ns string) *v1alpha1.Rollout {
	return &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "reviews", Namespace: ns, UID: types.UID("rollout-uid"), Annotations: map[string]string{
			gitsync.AnnotationRepository:     "https://git.example.com/shop/deploy.git",
			gitsync.AnnotationCommit:         "4f2a9c1e",
			gitsync.AnnotationPath:           "bookinfo/reviews.yaml",
			gitsync.AnnotationRemovedFromGit: "", // not provenance: never copied
			"team":                           "books",
		}},
		Spec: v1alpha1.RolloutSpec{Service: v1alpha1.ServiceSpec{
			Name: "reviews", Hosts: []string{"reviews"}, Port: 9080,
			VirtualService:  &v1alpha1.VirtualServiceRef{Name: "reviews", Routes: []string{"reviews"}},
			DestinationRule: &v1alpha1.ObjectRef{Name: "reviews"},
		}},
	}
}

// The Publisher merges the plan into what Git declares for the objects
// the Rollout names, carries the Rollout's provenance, and writes again
// when only the declaration changed.
func TestPublisherMergesDeclarations(t *testing.T) {
	c := cluster(t)
	ns := namespace(t, c)
	vs, dr := vsYAML(t, bookinfoVS), drYAML(t, bookinfoDR)
	vs.Namespace, dr.Namespace = ns, ns
	decl := &declarations{}
	decl.set(vs, dr)
	pub := &Publisher{Writer: NewWriter(c), Declared: decl}
	ro := reviewsRollout(ns)
	p := inNamespace(canaryAt(30, "reviews"), ns)

	if err := pub.Publish(t.Context(), ro, p); err != nil {
		t.Fatal(err)
	}
	live := liveVS(t, c, ns, "reviews")
	if got := weights(t, live, "reviews"); got["stable"] != 70 || got["canary"] != 30 {
		t.Errorf("managed route weights %v, want 70/30", got)
	}
	if got, want := routeJSON(t, findRoute(live.Spec.Http, "debug")), routeJSON(t, vs.Spec.Http[0]); got != want {
		t.Errorf("unmanaged route changed:\n got %s\nwant %s", got, want)
	}
	a := live.Annotations
	if a[gitsync.AnnotationCommit] != "4f2a9c1e" || a[gitsync.AnnotationPath] != "bookinfo/reviews.yaml" || a["team"] != "books" {
		t.Errorf("annotations %v: want the Rollout's provenance and Git's own annotations", a)
	}
	if _, ok := a[gitsync.AnnotationRemovedFromGit]; ok {
		t.Errorf("annotations %v: the removal mark is not provenance", a)
	}
	if len(live.OwnerReferences) != 0 {
		t.Errorf("declared VirtualService got owners %v; Git's objects are not the Rollout's", live.OwnerReferences)
	}

	// Git changes the unmanaged route; the plan stays the same.
	changed := vs.DeepCopy()
	changed.Spec.Http[0].Timeout.Seconds = 9
	decl.set(changed, dr)
	if err := pub.Publish(t.Context(), ro, p); err != nil {
		t.Fatal(err)
	}
	live = liveVS(t, c, ns, "reviews")
	if got := findRoute(live.Spec.Http, "debug").GetTimeout().GetSeconds(); got != 9 {
		t.Errorf("debug route timeout %ds after Git changed it to 9s with the same plan", got)
	}
	if got := weights(t, live, "reviews"); got["stable"] != 70 || got["canary"] != 30 {
		t.Errorf("managed route weights %v after a Git change, want 70/30 kept", got)
	}
}

// Before the first Git sync nothing is written: Sluice's own objects would
// replace Git's. Without a Git source Sluice renders its own objects,
// owned by the Rollout and named after its references.
func TestPublisherWithoutDeclarations(t *testing.T) {
	c := cluster(t)
	ns := namespace(t, c)
	ro := reviewsRollout(ns)
	p := inNamespace(canaryAt(30, "reviews"), ns)

	waiting := &Publisher{Writer: NewWriter(c), Declared: &declarations{err: errors.New("waiting for the first Git sync")}}
	err := waiting.Publish(t.Context(), ro, p)
	if err == nil || !strings.Contains(err.Error(), "waiting for the first Git sync") || !strings.Contains(err.Error(), ns+"/reviews") {
		t.Fatalf("Publish before the first sync: %v; want an error naming the rollout and the wait", err)
	}
	if live := (&networkingv1.VirtualService{}); c.Get(t.Context(), types.NamespacedName{Namespace: ns, Name: "reviews"}, live) == nil {
		t.Fatal("a VirtualService was written before the first Git sync")
	}

	noGit := &Publisher{Writer: NewWriter(c)}
	if err := noGit.Publish(t.Context(), ro, p); err != nil {
		t.Fatal(err)
	}
	live := liveVS(t, c, ns, "reviews")
	owner := metav1.GetControllerOf(live)
	if owner == nil || owner.UID != ro.UID || owner.Kind != "Rollout" || live.Labels[LabelManagedBy] != "sluice" {
		t.Errorf("owner %+v, labels %v: want Sluice's own VirtualService, owned by the Rollout", owner, live.Labels)
	}
	if dr := liveDR(t, c, ns, "reviews"); metav1.GetControllerOf(dr) == nil {
		t.Error("Sluice's own DestinationRule has no owner")
	}
}
