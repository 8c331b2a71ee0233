package gatewayapi

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/kube/controller"
	"github.com/sluicehq/sluice/kube/workload"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// quietWindow is how long the route is watched for writes once Sluice has
// put the plan back after a GitOps apply: the 30 s. Sluice's
// writes come within milliseconds of the change they answer (the cached
// Writer's watch wakes the Rollout; the reconciler polls every ackPoll
// besides), so a loop would show hundreds of times over.
const (
	quietWindow = 30 * time.Second
	ackPoll     = 100 * time.Millisecond
)

// TestGitOpsApplyDoesNotFight runs the Rollout controller and the cached
// Writer in a manager against the API server, with the test playing the
// gateway (it accepts every generation) and the kubelet. In the middle of
// a rollout a GitOps tool applies the user's route again, as its own
// field manager and forcing, with a change to an unmanaged rule and to the
// managed rule's timeout. Sluice puts the plan back with one write that
// keeps both changes, and then the route stays as it is: every write of
// the route, from the GitOps apply to the end of quietWindow after
// Sluice's answer settled, is counted by field manager from a watch, and
// the spec was written once by the GitOps tool and once by Sluice.
func TestGitOpsApplyDoesNotFight(t *testing.T) {
	c := env.Client(t)
	routeKey := userRoute(t, c, "sluice-gw-gitops-")
	ns := routeKey.Namespace
	router := v1alpha1.Router{HTTPRoute: &v1alpha1.GatewayRouteRef{Name: "reviews", Rules: []v1alpha1.GatewayRuleRef{{Name: "reviews"}}}}
	ro := newRollout(ns, "reviews", "reviews:v1", reviewsPort, router, setWeight(30), v1alpha1.CanaryStep{Pause: &v1alpha1.PauseStep{}})
	if err := c.Create(context.Background(), ro); err != nil {
		t.Fatal(err)
	}
	v1, _ := engine.DesiredRevision(&ro.Spec)

	api := runController(t, ns)
	chatty := playGateway(t, c, HTTPRoute, routeKey)
	waitFor(t, "healthy", 20*time.Second, func() bool { return healthy(rolloutOf(t, c, ro)) })

	v2 := updateImage(t, c, ro, "reviews:v2")
	weighted := []string{
		fmt.Sprintf("%s:9080=70", workload.ServiceName("reviews", v1)),
		fmt.Sprintf("%s:9080=30", workload.ServiceName("reviews", v2)),
	}
	managedSends := func(want []string) func() bool {
		return func() bool {
			rules := specRules(t, routeOf(t, c, HTTPRoute, routeKey))
			i := slices.IndexFunc(rules, func(r gatewayv1.HTTPRouteRule) bool { return ptr.Deref(r.Name, "") == "reviews" })
			return i >= 0 && slices.Equal(backends(rules[i]), want)
		}
	}
	waitFor(t, "paused at 30%", 20*time.Second, func() bool {
		st := rolloutOf(t, c, ro).Status
		return st.CurrentStepIndex != nil && *st.CurrentStepIndex == 1 && st.StepAcknowledgedAt != nil && managedSends(weighted)()
	})

	// The GitOps tool applies the user's route again, changed. Every
	// write of the route from here on is recorded, with the field manager
	// that made it, until the end of the quiet window.
	edited := userHTTPRoute()
	edited.Namespace = ns
	edited.Spec.Rules[2].Filters = append(edited.Spec.Rules[2].Filters, gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterRequestHeaderModifier,
		RequestHeaderModifier: &gatewayv1.HTTPHeaderFilter{Set: []gatewayv1.HTTPHeader{{Name: "x-legacy", Value: "1"}}}})
	edited.Spec.Rules[1].Timeouts.Request = ptr.To(gatewayv1.Duration("7s"))
	before := routeOf(t, c, HTTPRoute, routeKey)
	rec := recordWrites(t, c, before)
	applied := api.applied.Load()
	gitopsApply(t, c, edited)
	waitFor(t, "the plan back in the route", 10*time.Second, managedSends(weighted))
	settled := routeOf(t, c, HTTPRoute, routeKey)
	if g := settled.GetGeneration(); g != before.GetGeneration()+2 {
		t.Errorf("generation %d after the GitOps apply of generation %d: want exactly one write by Sluice after it", g, before.GetGeneration()+1)
	}

	// The route is the GitOps tool's new declaration with the plan in it:
	// compared with the same declaration stored under another name, so
	// that the API server's defaults are in both.
	twin := edited.DeepCopy()
	twin.Name = "reviews-as-declared"
	gitopsApply(t, c, twin)
	want := specRules(t, routeOf(t, c, HTTPRoute, types.NamespacedName{Namespace: ns, Name: twin.Name}))
	rules := specRules(t, settled)
	if got, want := mustJSON(t, rules[2]), mustJSON(t, want[2]); got != want {
		t.Errorf("the GitOps change to rule legacy is gone:\n%s\nwant\n%s", got, want)
	}
	checkManaged(t, rules[1], want[1], weighted, "")
	owners := fieldOwners(settled)
	if !strings.Contains(owners[FieldManager], "f:rules") || strings.Contains(owners[FieldManager], "f:hostnames") || strings.Contains(owners[FieldManager], "f:parentRefs") {
		t.Errorf("Sluice owns %s; want spec.rules and not hostnames or parentRefs", owners[FieldManager])
	}
	if !strings.Contains(owners[fieldManagerGitOps], "f:hostnames") || !strings.Contains(owners[fieldManagerGitOps], "f:parentRefs") {
		t.Errorf("the GitOps tool owns %s; want hostnames and parentRefs still its", owners[fieldManagerGitOps])
	}

	// A reconcile whose route did not change sends the route no request:
	// the cached Writer finds it as it left it in its cache. A re-read
	// from the write that raced the GitOps apply may still be under way:
	// the count starts once reads have stopped for a while.
	settle(api)
	reconciles, reads := reconcileCount(t), api.gets.Load()
	for i := range 5 {
		poke := rolloutOf(t, c, ro)
		poke.Annotations = map[string]string{"example.com/poke": fmt.Sprint(i)}
		if err := c.Update(context.Background(), poke); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the poke reconciled", 5*time.Second, func() bool { return reconcileCount(t) > reconciles })
		reconciles = reconcileCount(t)
	}
	if n := api.gets.Load() - reads; n != 0 {
		t.Errorf("5 reconciles of an unchanged route read it %d times from the API server, want 0", n)
	}

	checkNoFight(t, api, chatty, rec, applied)
}

// checkNoFight is the end of a GitOps test, once Sluice has answered the
// GitOps apply: for quietWindow nothing writes the route's spec and
// Sluice sends it no apply, while the gateway writes status again and
// again (each write wakes the Rollout, whose reconcile reads the route
// and finds nothing to write). Counted from the GitOps apply on, per
// field manager, the spec was written once by the GitOps tool and once
// by Sluice, whose successful applies since then (applied before it)
// are that one.
func checkNoFight(t *testing.T, api *apiClient, chatty *atomic.Bool, rec *writeRecorder, applied int64) {
	t.Helper()
	chatty.Store(true)
	reads, attempts := api.gets.Load(), api.applies.Load()
	time.Sleep(quietWindow)
	chatty.Store(false)
	got := rec.stop()
	reads, attempts, applied = api.gets.Load()-reads, api.applies.Load()-attempts, api.applied.Load()-applied
	t.Logf("from the GitOps apply to the end of %s of quiet: spec writes by manager %v, status writes by manager %v; in the quiet part Sluice read the route %d times and sent %d applies; %d successful applies by Sluice in all",
		quietWindow, got.spec, got.status, reads, attempts, applied)
	if want := map[string]int{fieldManagerGitOps: 1, FieldManager: 1}; !maps.Equal(got.spec, want) {
		t.Errorf("spec writes by field manager %v, want %v: a fight", got.spec, want)
	}
	if applied != 1 || attempts != 0 {
		t.Errorf("Sluice applied %d times, and sent %d applies in the quiet part; want its one answer to the GitOps apply, then none", applied, attempts)
	}
	if got.statusTotal() < 5 || reads == 0 {
		t.Errorf("%d status writes woke %d reads by Sluice: the window proved nothing", got.statusTotal(), reads)
	}
}

// settle waits until Sluice has stopped reading the route: a re-read
// from a write that raced the GitOps apply may still be under way.
func settle(api *apiClient) {
	for quiet, last := 0, api.gets.Load(); quiet < 3; {
		time.Sleep(300 * time.Millisecond)
		if now := api.gets.Load(); now == last {
			quiet++
		} else {
			quiet, last = 0, now
		}
	}
}

// writes are a route's writes as a watch saw them, counted by the field
// manager that made them: spec writes (the generation moved) and status
// writes.
type writes struct {
	spec, status map[string]int
}

func (w writes) statusTotal() int {
	n := 0
	for _, v := range w.status {
		n += v
	}
	return n
}

// writeRecorder watches one route and counts its writes by field manager
// until stop.
type writeRecorder struct {
	w    watch.Interface
	done chan writes
}

// recordWrites watches the route from obj's resourceVersion on.
func recordWrites(t *testing.T, c client.WithWatch, obj *unstructured.Unstructured) *writeRecorder {
	t.Helper()
	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(obj.GroupVersionKind().GroupVersion().WithKind(obj.GetKind() + "List"))
	w, err := c.Watch(context.Background(), list, client.InNamespace(obj.GetNamespace()),
		client.MatchingFields{"metadata.name": obj.GetName()}, &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: obj.GetResourceVersion()}})
	if err != nil {
		t.Fatal(err)
	}
	r := &writeRecorder{w: w, done: make(chan writes, 1)}
	go func() {
		out := writes{spec: map[string]int{}, status: map[string]int{}}
		prev := obj
		for ev := range w.ResultChan() {
			u, ok := ev.Object.(*unstructured.Unstructured)
			if !ok || ev.Type != watch.Modified {
				continue
			}
			if u.GetGeneration() != prev.GetGeneration() {
				out.spec[writer(prev, u, "")]++
			} else {
				out.status[writer(prev, u, "status")]++
			}
			prev = u
		}
		r.done <- out
	}()
	return r
}

func (r *writeRecorder) stop() writes {
	r.w.Stop()
	return <-r.done
}

// writer names the field manager whose write turned prev into cur, from
// their managedFields entries for subresource: the entry that is new or
// changed (time or fields); when several changed (a forced apply takes
// fields from other managers, whose entries shrink), the one that owns
// more fields than before; when none changed, the only manager of
// subresource (a write within the second of its last, of the same
// fields); "?" when none can be told.
func writer(prev, cur *unstructured.Unstructured, subresource string) string {
	type entry struct {
		time   string
		fields string
	}
	entries := func(u *unstructured.Unstructured) map[string]entry {
		out := map[string]entry{}
		for _, m := range u.GetManagedFields() {
			if m.Subresource != subresource {
				continue
			}
			e := entry{}
			if m.Time != nil {
				e.time = m.Time.UTC().String()
			}
			if m.FieldsV1 != nil {
				e.fields = string(m.FieldsV1.Raw)
			}
			out[m.Manager] = e
		}
		return out
	}
	before, after := entries(prev), entries(cur)
	var changed []string
	for m, e := range after {
		if b, ok := before[m]; !ok || b != e {
			changed = append(changed, m)
		}
	}
	switch len(changed) {
	case 0:
		// The same manager wrote the same fields within the second its
		// entry shows: the entry does not change.
		if len(after) == 1 {
			for m := range after {
				return m
			}
		}
		return "?"
	case 1:
		return changed[0]
	}
	slices.Sort(changed)
	for _, m := range changed {
		if b, ok := before[m]; !ok || len(after[m].fields) > len(b.fields) || after[m].time > b.time {
			return m
		}
	}
	return strings.Join(changed, "+")
}

// updateImage sets the Rollout's image while its controller runs, read
// again when the controller's status write raced the update; it returns
// the new revision.
func updateImage(t *testing.T, c client.Client, ro *v1alpha1.Rollout, image string) string {
	t.Helper()
	var rev string
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur := rolloutOf(t, c, ro)
		cur.Spec.Template.Spec.Containers[0].Image = image
		var err error
		if rev, err = engine.DesiredRevision(&cur.Spec); err != nil {
			return err
		}
		return c.Update(context.Background(), cur)
	})
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

// fieldOwners is each field manager's managed fields, as JSON text.
func fieldOwners(u *unstructured.Unstructured) map[string]string {
	out := map[string]string{}
	for _, m := range u.GetManagedFields() {
		if m.FieldsV1 != nil {
			out[m.Manager] += string(m.FieldsV1.Raw)
		}
	}
	return out
}

// runController runs the Rollout controller with the Gateway API router
// alone in a manager until the test ends, and plays the kubelet. It
// returns the Writer's client, which counts its requests.
func runController(t *testing.T, ns string) *apiClient {
	t.Helper()
	cfg, scheme := env.Start(t)
	// Several tests run a manager with the Rollout controller.
	opts := manager.Options{Scheme: scheme, Cache: cache.Options{ByObject: controller.CacheByObject()},
		Controller: config.Controller{SkipNameValidation: ptr.To(true)}}
	api := &apiClient{}
	stop := kubetest.RunManager(t, cfg, opts, func(ctx context.Context, mgr manager.Manager) error {
		ca, err := NewCache(mgr.GetConfig(), cache.Options{Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper(), HTTPClient: mgr.GetHTTPClient()})
		if err != nil {
			return err
		}
		api.Reader, api.Writer = mgr.GetAPIReader(), mgr.GetClient()
		w := NewCachedWriter(api, ca, mgr.GetLogger())
		if err := mgr.Add(w); err != nil {
			return err
		}
		pub := NewPublisher(w)
		r := &controller.Reconciler{
			Client: mgr.GetClient(), Recorder: mgr.GetEventRecorderFor("sluice-test"),
			Publisher: pub, Acknowledger: controller.Acknowledgers{pub},
			AckPollInterval: ackPoll, Wake: []<-chan event.GenericEvent{w.Wake()},
		}
		return r.SetupWithManager(mgr)
	})
	t.Cleanup(stop)
	c := env.Client(t)
	every(t, 100*time.Millisecond, func(ctx context.Context) { _ = kubetest.MarkAvailable(ctx, c, ns) })
	return api
}

// every runs f at each period until the test ends.
func every(t *testing.T, period time.Duration, f func(context.Context)) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			f(ctx)
			select {
			case <-ctx.Done():
			case <-time.After(period):
			}
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// playGateway accepts every generation of the route, as a gateway
// controller that takes whatever it is given, until the test ends. While
// chatty holds, it writes the status again every time, as a gateway that
// re-reports.
func playGateway(t *testing.T, c client.Client, kind Kind, key types.NamespacedName) (chatty *atomic.Bool) {
	t.Helper()
	chatty = &atomic.Bool{}
	n := 0
	every(t, 50*time.Millisecond, func(ctx context.Context) {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(kind.GroupVersionKind())
		if err := c.Get(ctx, key, u); err != nil {
			return
		}
		switch {
		case chatty.Load():
			n++
			setParentStatus(t, c, kind, key, metav1.ConditionTrue, string(gatewayv1.RouteReasonAccepted), fmt.Sprintf("Accepted (report %d)", n), 0)
		case !acceptedAt(u, u.GetGeneration()):
			accept(t, c, kind, key)
		}
	})
	return chatty
}

func acceptedAt(u *unstructured.Unstructured, gen int64) bool {
	s, _, err := judge(HTTPRoute, u, gen)
	return err == nil && s == engine.AckAcknowledged
}

func rolloutOf(t testing.TB, c client.Client, ro *v1alpha1.Rollout) *v1alpha1.Rollout {
	t.Helper()
	out := &v1alpha1.Rollout{}
	if err := c.Get(context.Background(), client.ObjectKeyFromObject(ro), out); err != nil {
		t.Fatal(err)
	}
	return out
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not %s after %s", what, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// apiClient reads from the API server and writes through the manager's
// client, as the controller's Writer does, counting both.
type apiClient struct {
	client.Reader
	client.Writer
	gets, applies atomic.Int64
	// applied counts the applies that succeeded.
	applied atomic.Int64
}

func (a *apiClient) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	a.gets.Add(1)
	return a.Reader.Get(ctx, key, obj, opts...)
}

func (a *apiClient) Apply(ctx context.Context, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
	a.applies.Add(1)
	err := a.Writer.Apply(ctx, obj, opts...)
	if err == nil {
		a.applied.Add(1)
	}
	return err
}

// reconcileCount is how many reconciles the Rollout controllers of this
// process have finished (controller-runtime's metric).
func reconcileCount(t *testing.T) float64 {
	t.Helper()
	mfs, err := crmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0.0
	for _, mf := range mfs {
		if mf.GetName() != "controller_runtime_reconcile_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "controller" && l.GetValue() == "rollout" {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}
