package istio

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/gitsync"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/plan"
)

// inNamespace moves a plan to the test's namespace.
func inNamespace(p plan.Plan, ns string) plan.Plan {
	p.Namespace = ns
	p.Seal()
	return p
}

// bookinfo is the Input of the reviews Rollout with Git's VirtualService
// and DestinationRule.
func bookinfo(t testing.TB, ns string, p plan.Plan) Input {
	vs := vsYAML(t, bookinfoVS)
	vs.Namespace = ns
	dr := drYAML(t, bookinfoDR)
	dr.Namespace = ns
	return Input{
		Plan:            inNamespace(p, ns),
		VirtualService:  vs,
		Routes:          []string{"reviews"},
		DestinationRule: dr,
		Annotations:     map[string]string{gitsync.AnnotationCommit: "4f2a9c1", gitsync.AnnotationPath: "bookinfo/reviews.yaml"},
	}
}

func canarySteps(weight int32) plan.Plan {
	return newPlan([]string{"reviews", fqdn}, jason, route("primary", split(weight)...))
}

func liveVS(t *testing.T, c client.Client, ns, name string) *networkingv1.VirtualService {
	t.Helper()
	vs := &networkingv1.VirtualService{}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, vs); err != nil {
		t.Fatal(err)
	}
	return vs
}

func liveDR(t *testing.T, c client.Client, ns, name string) *networkingv1.DestinationRule {
	t.Helper()
	dr := &networkingv1.DestinationRule{}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, dr); err != nil {
		t.Fatal(err)
	}
	return dr
}

func write(t *testing.T, w *Writer, in Input) Written {
	t.Helper()
	start := time.Now()
	out, err := w.Write(t.Context(), in)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("write of plan %s took %v", in.Plan.Version, time.Since(start).Round(time.Millisecond))
	return out
}

func weights(t *testing.T, vs *networkingv1.VirtualService, route string) map[string]int32 {
	t.Helper()
	hr := findRoute(vs.Spec.Http, route)
	if hr == nil {
		t.Fatalf("no route %q in %s", route, toYAML(t, &vs.Spec))
	}
	out := map[string]int32{}
	for _, d := range hr.Route {
		out[d.Destination.Subset] = d.Weight
	}
	return out
}

func TestWriteAppliesAndReapplies(t *testing.T) {
	c := cluster(t)
	ns := namespace(t, c)
	w := NewWriter(c)
	in := bookinfo(t, ns, canarySteps(10))

	first := write(t, w, in)
	vs := liveVS(t, c, ns, "reviews")
	equalSpec(t, &vs.Spec, `
hosts: [reviews]
http:
- name: debug
  match: [{headers: {x-debug: {exact: "1"}}}]
  route: [{destination: {host: reviews, subset: stable}}]
  timeout: 3s
- name: reviews-header-jason
  match: [{headers: {end-user: {exact: jason}}}]
  route: [{destination: {host: reviews, subset: canary}, weight: 100}]
- name: reviews
  route:
  - {destination: {host: reviews, subset: stable}, weight: 90}
  - {destination: {host: reviews, subset: canary}, weight: 10}
`)
	if got, want := routeJSON(t, findRoute(vs.Spec.Http, "debug")), routeJSON(t, in.VirtualService.Spec.Http[0]); got != want {
		t.Errorf("unmanaged route changed on the way through the API server:\n got %s\nwant %s", got, want)
	}
	if first.Generation != vs.Generation || first.ResourceVersion != vs.ResourceVersion || first.PlanVersion != in.Plan.Version {
		t.Errorf("Written %+v does not describe the stored object (generation %d, rv %s)", first, vs.Generation, vs.ResourceVersion)
	}
	dr := liveDR(t, c, ns, "reviews")
	for _, o := range []metav1.Object{vs, dr} {
		a := o.GetAnnotations()
		if a[gitsync.AnnotationCommit] != "4f2a9c1" || a[AnnotationPlanVersion] != in.Plan.Version {
			t.Errorf("%T: annotations %v", o, a)
		}
		for _, mf := range o.GetManagedFields() {
			if mf.Manager != FieldManager || mf.Operation != metav1.ManagedFieldsOperationApply {
				t.Errorf("%T: field manager %q (%s); want only %q applying", o, mf.Manager, mf.Operation, FieldManager)
			}
		}
	}
	if got := dr.Spec.Subsets[2].Labels[DefaultRevisionLabel]; got != revB {
		t.Errorf("canary subset selects %q, want %q", got, revB)
	}

	// The same plan again changes nothing: no new generation, no write.
	again := write(t, w, in)
	if again.Generation != first.Generation || again.ResourceVersion != first.ResourceVersion {
		t.Errorf("re-applying the same plan wrote: %+v, then %+v", first, again)
	}
	if rv := liveDR(t, c, ns, "reviews").ResourceVersion; rv != dr.ResourceVersion {
		t.Errorf("DestinationRule rewritten: rv %s -> %s", dr.ResourceVersion, rv)
	}
	if ack := Acknowledgement(in.Plan.Version, nil); ack.State != engine.AckAcknowledged || ack.Version != in.Plan.Version {
		t.Errorf("accepted write: %+v", ack)
	}
}

// TestWriteKeepsOtherManagersEdits: another field manager edits an
// unmanaged route mid-rollout; Sluice's next step keeps the edit. A Git
// change to that route later goes through, and the weights stay.
func TestWriteKeepsOtherManagersEdits(t *testing.T) {
	c := cluster(t)
	ns := namespace(t, c)
	w := NewWriter(c)
	write(t, w, bookinfo(t, ns, canarySteps(10)))

	edited := liveVS(t, c, ns, "reviews")
	findRoute(edited.Spec.Http, "debug").Timeout.Seconds = 7
	if err := c.Update(t.Context(), edited, client.FieldOwner("kubectl-edit")); err != nil {
		t.Fatal(err)
	}

	write(t, w, bookinfo(t, ns, canarySteps(50)))
	vs := liveVS(t, c, ns, "reviews")
	if got := findRoute(vs.Spec.Http, "debug").Timeout.AsDuration(); got != 7*time.Second {
		t.Errorf("the other manager's edit was reverted: debug timeout %v, want 7s", got)
	}
	if got := weights(t, vs, "reviews"); got[plan.Stable] != 50 || got[plan.Canary] != 50 {
		t.Errorf("weights %v, want 50/50", got)
	}

	// Git now declares a different debug route.
	in := bookinfo(t, ns, canarySteps(50))
	in.VirtualService.Spec.Http[0].Match[0].Headers["x-debug"] = exact("2")
	write(t, w, in)
	vs = liveVS(t, c, ns, "reviews")
	if got, want := routeJSON(t, findRoute(vs.Spec.Http, "debug")), routeJSON(t, in.VirtualService.Spec.Http[0]); got != want {
		t.Errorf("Git's change to the unmanaged route did not go through:\n got %s\nwant %s", got, want)
	}
	if got := weights(t, vs, "reviews"); got[plan.Stable] != 50 || got[plan.Canary] != 50 {
		t.Errorf("weights after the Git change %v, want 50/50", got)
	}
}

func TestWriteWeightsThenAbort(t *testing.T) {
	c := cluster(t)
	ns := namespace(t, c)
	w := NewWriter(c)

	var last Written
	for _, weight := range []int32{0, 10, 50} {
		out := write(t, w, bookinfo(t, ns, canarySteps(weight)))
		if out.Generation <= last.Generation {
			t.Errorf("weight %d: generation %d, not after %d", weight, out.Generation, last.Generation)
		}
		last = out
		if got := weights(t, liveVS(t, c, ns, "reviews"), "reviews"); got[plan.Stable] != 100-weight || got[plan.Canary] != weight {
			t.Errorf("weights %v, want %d/%d", got, 100-weight, weight)
		}
	}

	// Abort: the engine's plan is stable-only.
	abort := bookinfo(t, ns, stableOnly("reviews", fqdn))
	write(t, w, abort)
	vs := liveVS(t, c, ns, "reviews")
	equalSpec(t, &vs.Spec, `
hosts: [reviews]
http:
- name: debug
  match: [{headers: {x-debug: {exact: "1"}}}]
  route: [{destination: {host: reviews, subset: stable}}]
  timeout: 3s
- name: reviews
  route: [{destination: {host: reviews, subset: stable}, weight: 100}]
`)
	dr := liveDR(t, c, ns, "reviews")
	for _, s := range dr.Spec.Subsets[1:] {
		if s.Labels[DefaultRevisionLabel] != revA {
			t.Errorf("after abort subset %s selects %v, want %s", s.Name, s.Labels, revA)
		}
	}
}

// TestWriteOwnedObjects: with nothing declared in Git, Sluice renders and
// owns the objects, creates the preview VirtualService for a blue/green
// preview and deletes it afterwards.
func TestWriteOwnedObjects(t *testing.T) {
	c := cluster(t)
	ns := namespace(t, c)
	w := NewWriter(c)
	owner := &metav1.OwnerReference{APIVersion: "sluice.dev/v1alpha1", Kind: "Rollout", Name: "reviews", UID: "8c3a", Controller: new(true)}

	preview := plan.Plan{
		Service: "reviews", Namespace: ns,
		Subsets: []plan.Subset{{Name: plan.Stable, Revision: revA}, {Name: plan.Canary, Revision: revB}},
		Hosts: []plan.Host{
			{Name: fqdn, Routes: []plan.Route{route("primary", split(0)...)}},
			{Name: "preview.example.com", Routes: []plan.Route{route("primary", dest(plan.Canary, 100))}},
		},
	}
	preview.Seal()
	write(t, w, Input{Plan: preview, Owner: owner})
	vs := liveVS(t, c, ns, "reviews")
	pv := liveVS(t, c, ns, "reviews-preview")
	if vs.Labels[LabelManagedBy] != "sluice" || metav1.GetControllerOf(vs) == nil || metav1.GetControllerOf(pv) == nil {
		t.Errorf("owned objects lack the label or owner: %v %v", vs.Labels, vs.OwnerReferences)
	}
	equalSpec(t, &pv.Spec, strings.ReplaceAll(`
hosts: [preview.example.com]
http:
- name: primary
  route: [{destination: {host: HOST, subset: canary}, weight: 100}]
`, "HOST", "reviews."+ns+".svc.cluster.local"))

	// Promotion: no preview host any more.
	write(t, w, Input{Plan: inNamespace(canaryAt(100, fqdn), ns), Owner: owner})
	err := c.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: "reviews-preview"}, &networkingv1.VirtualService{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("preview VirtualService after promotion: %v, want NotFound", err)
	}
	if got := weights(t, liveVS(t, c, ns, "reviews"), "primary"); got[plan.Canary] != 100 {
		t.Errorf("weights after promotion %v", got)
	}
}

// TestWriteEveryFeatureIsValid: Istio's CRD schema (with its CEL rules)
// accepts what Sluice renders for every plan feature.
func TestWriteEveryFeatureIsValid(t *testing.T) {
	c := cluster(t)
	ns := namespace(t, c)
	w := NewWriter(c)
	for _, tt := range featureCases() {
		in := Input{Plan: inNamespace(newPlan([]string{"reviews"}, tt.routes...), ns)}
		if _, err := w.Write(t.Context(), in); err != nil {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}

// racingClient lets another writer change the VirtualService between
// Sluice's read and its apply, once.
type racingClient struct {
	client.Client
	raced atomic.Bool
	race  func(context.Context) error
}

func (r *racingClient) Apply(ctx context.Context, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
	if ac, ok := obj.(interface{ GetObjectKind() schema.ObjectKind }); ok &&
		ac.GetObjectKind().GroupVersionKind().Kind == "VirtualService" && r.raced.CompareAndSwap(false, true) {
		if err := r.race(ctx); err != nil {
			return err
		}
	}
	return r.Client.Apply(ctx, obj, opts...)
}

// TestWriteLosesRaceThenKeepsEdit: an edit between Sluice's read and its
// write makes the API server refuse the stale write; Sluice reads again
// and the edit survives.
func TestWriteLosesRaceThenKeepsEdit(t *testing.T) {
	c := cluster(t)
	ns := namespace(t, c)
	write(t, NewWriter(c), bookinfo(t, ns, canarySteps(10)))

	rc := &racingClient{Client: c, race: func(ctx context.Context) error {
		vs := liveVS(t, c, ns, "reviews")
		findRoute(vs.Spec.Http, "debug").Timeout.Seconds = 11
		return c.Update(ctx, vs, client.FieldOwner("other"))
	}}
	write(t, NewWriter(rc), bookinfo(t, ns, canarySteps(25)))
	if !rc.raced.Load() {
		t.Fatal("the race did not happen")
	}
	vs := liveVS(t, c, ns, "reviews")
	if got := findRoute(vs.Spec.Http, "debug").Timeout.AsDuration(); got != 11*time.Second {
		t.Errorf("the edit made during the write was lost: timeout %v", got)
	}
	if got := weights(t, vs, "reviews"); got[plan.Canary] != 25 {
		t.Errorf("weights %v, want canary 25", got)
	}
}

// TestWriteRejected: what the API server refuses is the data plane
// rejecting the plan, like a NACK; it is not retried as if transient.
func TestWriteRejected(t *testing.T) {
	c := cluster(t)
	ns := namespace(t, c)
	bad := newPlan([]string{"reviews"}, plan.Route{Name: "primary", Destinations: split(10),
		Policy: &plan.Policy{Timeout: 500 * time.Microsecond}}) // Istio's CRD wants >= 1ms
	in := bookinfo(t, ns, bad)
	_, err := NewWriter(c).Write(t.Context(), in)
	if err == nil {
		t.Fatal("a 500µs timeout was accepted")
	}
	ack := Acknowledgement(in.Plan.Version, err)
	if ack.State != engine.AckRejected || ack.Version != in.Plan.Version || !strings.Contains(ack.Message, "timeout") {
		t.Errorf("acknowledgement %+v for %v", ack, err)
	}
	var rej *RejectedError
	if !errors.As(err, &rej) {
		t.Errorf("error %v is not a RejectedError", err)
	}
}

func TestAcknowledgement(t *testing.T) {
	gr := schema.GroupResource{Group: "networking.istio.io", Resource: "virtualservices"}
	tests := []struct {
		name string
		err  error
		want engine.AckState
	}{
		{"accepted", nil, engine.AckAcknowledged},
		{"render refused", &RejectedError{Err: errors.New("no HTTP route named x")}, engine.AckRejected},
		{"webhook denial", &RejectedError{Err: apierrors.NewForbidden(gr, "reviews", errors.New(`admission webhook "validation.istio.io" denied the request`))}, engine.AckRejected},
		{"timeout", apierrors.NewTimeoutError("slow", 1), engine.AckPending},
		{"conflict", apierrors.NewConflict(gr, "reviews", errors.New("changed")), engine.AckPending},
	}
	for _, tt := range tests {
		if got := Acknowledgement("v1", tt.err); got.State != tt.want || got.Version != "v1" {
			t.Errorf("%s: %+v, want %s", tt.name, got, tt.want)
		}
	}
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{apierrors.NewInvalid(schema.GroupKind{Kind: "VirtualService"}, "reviews", nil), true},
		{apierrors.NewForbidden(gr, "reviews", errors.New(`admission webhook "validation.istio.io" denied the request`)), true},
		{apierrors.NewForbidden(gr, "reviews", errors.New("RBAC: cannot patch")), false},
		{apierrors.NewServiceUnavailable("later"), false},
	} {
		if got := rejected(tt.err); got != tt.want {
			t.Errorf("rejected(%v) = %v", tt.err, got)
		}
	}
}
