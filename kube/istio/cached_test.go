package istio

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/gitsync"
	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/rollout/plan"
)

// requestCounter counts the requests for Istio objects a rest.Config's
// clients send, by HTTP method. Discovery, which a new client does once,
// is not counted.
type requestCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (r *requestCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		if !strings.HasPrefix(req.URL.Path, "/apis/"+networkingv1.SchemeGroupVersion.Group+"/") {
			return rt.RoundTrip(req)
		}
		r.mu.Lock()
		if r.n == nil {
			r.n = map[string]int{}
		}
		r.n[req.Method]++
		r.mu.Unlock()
		return rt.RoundTrip(req)
	})
}

// take returns the counts since the last take.
func (r *requestCounter) take() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.n
	r.n = nil
	if n == nil {
		n = map[string]int{}
	}
	return n
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// cachedFixture is a namespace, the test's own client (not counted), and
// what a cached Writer is built from: a client whose requests are counted
// and an informer cache narrowed by CacheByObject.
type cachedFixture struct {
	ns    string
	admin client.Client
	api   client.Client
	reqs  *requestCounter
	cache cache.Cache
	ctx   context.Context
}

func newCachedFixture(t testing.TB) *cachedFixture {
	t.Helper()
	cfg, scheme := env.Start(t)
	admin, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	f := &cachedFixture{ns: kubetest.Namespace(t, admin, "sluice-istio-"), admin: admin, reqs: &requestCounter{}}
	counted := rest.CopyConfig(cfg)
	counted.Wrap(f.reqs.wrap)
	if f.api, err = client.New(counted, client.Options{Scheme: scheme}); err != nil {
		t.Fatal(err)
	}
	f.cache, err = cache.New(cfg, cache.Options{Scheme: scheme, ByObject: CacheByObject(), DefaultNamespaces: map[string]cache.Config{f.ns: {}}})
	if err != nil {
		t.Fatal(err)
	}
	var cancel context.CancelFunc
	f.ctx, cancel = context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.cache.Start(f.ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("cache: %v", err)
		}
	})
	return f
}

// writer starts a cached Writer (Start, Wake asked for) and waits until it
// watches. The channel delivers the names of the Rollouts it wakes.
func (f *cachedFixture) writer(t testing.TB) (*Writer, <-chan string) {
	t.Helper()
	w := NewCachedWriter(f.api, f.cache, logr.Discard())
	wake := w.Wake()
	go func() { _ = w.Start(f.ctx) }()
	poll(t, "the writer to watch its cache", func() (bool, error) { return w.watching.Load(), nil })
	names := make(chan string, 64)
	go func() {
		for {
			select {
			case ev := <-wake:
				names <- ev.Object.GetName()
			case <-f.ctx.Done():
				return
			}
		}
	}()
	return w, names
}

// settle waits until w's next Write of in may be skipped: the cache has
// caught up with w's last write.
func settle(t testing.TB, w *Writer, in Input) {
	t.Helper()
	key, inputs, ok := w.memoryKey(in)
	if !ok {
		t.Fatal("the writer does not remember writes of this input")
	}
	poll(t, "the cache to show the objects as written", func() (bool, error) {
		_, ok := w.unchanged(context.Background(), key, inputs)
		return ok, nil
	})
}

func poll(t testing.TB, what string, cond func() (bool, error)) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, 30*time.Second, true,
		func(context.Context) (bool, error) { return cond() })
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

var reviewsOwner = &metav1.OwnerReference{APIVersion: "sluice.dev/v1alpha1", Kind: "Rollout", Name: "reviews", UID: "8c3a", Controller: new(true)}

// owned is the bookinfo input written for the reviews Rollout.
func owned(t testing.TB, ns string, p plan.Plan) Input {
	in := bookinfo(t, ns, p)
	in.Owner = reviewsOwner
	return in
}

func checkRequests(t *testing.T, step string, got, want map[string]int) {
	t.Helper()
	if !maps.Equal(got, want) {
		t.Errorf("%s: requests %v, want %v", step, got, want)
	}
}

// TestCachedWriteSkipsOnlyUnchanged: a write whose plan, declaration and
// live objects are as last written sends no request; a new plan, a Git
// change to an unmanaged route and new provenance are written, reading
// the objects from the cache and applying the DestinationRule only when
// it changes.
func TestCachedWriteSkipsOnlyUnchanged(t *testing.T) {
	t.Parallel()
	f := newCachedFixture(t)
	w, _ := f.writer(t)

	in := owned(t, f.ns, canarySteps(10))
	first := write(t, w, in)
	// Neither object is in the cache yet: both are read from the API
	// server; the preview VirtualService, which this plan has no use
	// for, is not.
	checkRequests(t, "first write", f.reqs.take(), map[string]int{"GET": 2, "PATCH": 2})
	settle(t, w, in)
	if again := write(t, w, in); again != first {
		t.Errorf("skipped write returned %+v, want the last write's %+v", again, first)
	}
	checkRequests(t, "unchanged", f.reqs.take(), map[string]int{})

	vsOnly := map[string]int{"PATCH": 1}
	steps := []struct {
		name   string
		change func(*Input)
		check  func(*networkingv1.VirtualService) error
		write  map[string]int
	}{
		{"new plan", func(in *Input) { in.Plan = inNamespace(canarySteps(50), f.ns) }, func(vs *networkingv1.VirtualService) error {
			if got := weights(t, vs, "reviews"); got[plan.Canary] != 50 {
				return errors.New("canary weight not 50")
			}
			return nil
		}, vsOnly},
		{"Git changes an unmanaged route", func(in *Input) {
			in.VirtualService.Spec.Http[0].Match[0].Headers["x-debug"] = exact("2")
		}, func(vs *networkingv1.VirtualService) error {
			if findRoute(vs.Spec.Http, "debug").Match[0].Headers["x-debug"].GetExact() != "2" {
				return errors.New("debug route as before")
			}
			return nil
		}, vsOnly},
		{"new commit", func(in *Input) { in.Annotations[gitsync.AnnotationCommit] = "9e1d7b2" }, func(vs *networkingv1.VirtualService) error {
			if vs.Annotations[gitsync.AnnotationCommit] != "9e1d7b2" {
				return errors.New("provenance not updated")
			}
			return nil
		}, map[string]int{"PATCH": 2}},
	}
	for _, s := range steps {
		s.change(&in)
		write(t, w, in)
		checkRequests(t, s.name, f.reqs.take(), s.write)
		if err := s.check(liveVS(t, f.admin, f.ns, "reviews")); err != nil {
			t.Errorf("%s: %v", s.name, err)
		}
		settle(t, w, in)
		write(t, w, in)
		checkRequests(t, s.name+", then unchanged", f.reqs.take(), map[string]int{})
	}

	// What the memory needs: a watched cache (Start), someone to wake
	// (Wake), a Rollout to wake (Owner).
	unstarted := NewCachedWriter(f.api, f.cache, logr.Discard())
	unstarted.Wake()
	unwoken := NewCachedWriter(f.api, f.cache, logr.Discard())
	go func() { _ = unwoken.Start(f.ctx) }()
	ownerless := in
	ownerless.Owner = nil
	for _, tt := range []struct {
		name string
		w    *Writer
		in   Input
	}{{"not started", unstarted, in}, {"Wake not asked for", unwoken, in}, {"no owner", w, ownerless}} {
		for range 2 {
			write(t, tt.w, tt.in)
			if got := f.reqs.take(); got["GET"] != 3 {
				t.Errorf("%s: requests %v, want the objects read on every write", tt.name, got)
			}
		}
	}
}

// TestCachedWriteCorrectsChanges: what someone else does to the objects
// after Sluice wrote them wakes the Rollout, and the write it triggers
// puts Sluice's part back. The test plays the reconciler: it writes when
// woken, and at no other time.
func TestCachedWriteCorrectsChanges(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		edit  func(context.Context, client.Client, string) error
		fixed func(vs *networkingv1.VirtualService, dr *networkingv1.DestinationRule) bool
	}{
		{
			name: "kubectl edit of the managed route's weights",
			edit: func(ctx context.Context, c client.Client, ns string) error {
				vs := &networkingv1.VirtualService{}
				if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "reviews"}, vs); err != nil {
					return err
				}
				for _, d := range findRoute(vs.Spec.Http, "reviews").Route {
					d.Weight = 50
				}
				return c.Update(ctx, vs, client.FieldOwner("kubectl-edit"))
			},
			fixed: func(vs *networkingv1.VirtualService, _ *networkingv1.DestinationRule) bool {
				for _, d := range findRoute(vs.Spec.Http, "reviews").Route {
					if d.Destination.Subset == plan.Canary && d.Weight != 10 {
						return false
					}
				}
				return true
			},
		},
		{
			// The writer applies the DestinationRule only when it would
			// change: this edit must make it.
			name: "kubectl edit of the canary subset",
			edit: func(ctx context.Context, c client.Client, ns string) error {
				dr := &networkingv1.DestinationRule{}
				if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "reviews"}, dr); err != nil {
					return err
				}
				dr.Spec.Subsets[2].Labels[DefaultRevisionLabel] = revA
				return c.Update(ctx, dr, client.FieldOwner("kubectl-edit"))
			},
			fixed: func(_ *networkingv1.VirtualService, dr *networkingv1.DestinationRule) bool {
				return dr != nil && len(dr.Spec.Subsets) == 3 && dr.Spec.Subsets[2].Labels[DefaultRevisionLabel] == revB
			},
		},
		{
			name: "DestinationRule deleted",
			edit: func(ctx context.Context, c client.Client, ns string) error {
				return c.Delete(ctx, &networkingv1.DestinationRule{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reviews"}})
			},
			fixed: func(_ *networkingv1.VirtualService, dr *networkingv1.DestinationRule) bool {
				return dr != nil && len(dr.Spec.Subsets) == 3 && dr.Spec.Subsets[2].Labels[DefaultRevisionLabel] == revB
			},
		},
		{
			name: "routing label removed",
			edit: func(ctx context.Context, c client.Client, ns string) error {
				vs := &networkingv1.VirtualService{}
				if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "reviews"}, vs); err != nil {
					return err
				}
				delete(vs.Labels, LabelRouting)
				return c.Update(ctx, vs, client.FieldOwner("kubectl-edit"))
			},
			fixed: func(vs *networkingv1.VirtualService, _ *networkingv1.DestinationRule) bool {
				return vs.Labels[LabelRouting] == routingValue
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newCachedFixture(t)
			w, woken := f.writer(t)
			in := owned(t, f.ns, canarySteps(10))
			write(t, w, in)
			settle(t, w, in)
			go func() {
				for {
					select {
					case name := <-woken:
						if name == reviewsOwner.Name {
							_, _ = w.Write(f.ctx, in)
						}
					case <-f.ctx.Done():
						return
					}
				}
			}()
			if err := tt.edit(t.Context(), f.admin, f.ns); err != nil {
				t.Fatal(err)
			}
			poll(t, "Sluice's part to be written again", func() (bool, error) {
				vs, dr := &networkingv1.VirtualService{}, &networkingv1.DestinationRule{}
				if err := f.admin.Get(t.Context(), client.ObjectKey{Namespace: f.ns, Name: "reviews"}, vs); err != nil {
					return false, err
				}
				err := f.admin.Get(t.Context(), client.ObjectKey{Namespace: f.ns, Name: "reviews"}, dr)
				if apierrors.IsNotFound(err) {
					dr = nil
				} else if err != nil {
					return false, err
				}
				return tt.fixed(vs, dr), nil
			})
		})
	}
}

// TestCachedWritePreview: the preview VirtualService is written, then
// deleted when the plan drops its preview hosts, and an unchanged plan
// skips in both states.
func TestCachedWritePreview(t *testing.T) {
	t.Parallel()
	f := newCachedFixture(t)
	w, _ := f.writer(t)
	preview := plan.Plan{
		Service: "reviews", Namespace: f.ns,
		Subsets: []plan.Subset{{Name: plan.Stable, Revision: revA}, {Name: plan.Canary, Revision: revB}},
		Hosts: []plan.Host{
			{Name: fqdn, Routes: []plan.Route{route("primary", split(0)...)}},
			{Name: "preview.example.com", Routes: []plan.Route{route("primary", dest(plan.Canary, 100))}},
		},
	}
	preview.Seal()
	steps := []struct {
		name  string
		in    Input
		write map[string]int
	}{
		{"preview", Input{Plan: preview, Owner: reviewsOwner}, map[string]int{"GET": 3, "PATCH": 3}},
		// The subsets are as before: the DestinationRule is not written.
		{"promoted", Input{Plan: inNamespace(canaryAt(100, fqdn), f.ns), Owner: reviewsOwner}, map[string]int{"PATCH": 1, "DELETE": 1}},
	}
	for _, s := range steps {
		write(t, w, s.in)
		checkRequests(t, s.name, f.reqs.take(), s.write)
		settle(t, w, s.in)
		write(t, w, s.in)
		checkRequests(t, s.name+", then unchanged", f.reqs.take(), map[string]int{})
	}
	err := f.admin.Get(t.Context(), client.ObjectKey{Namespace: f.ns, Name: "reviews-preview"}, &networkingv1.VirtualService{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("preview VirtualService after promotion: %v, want NotFound", err)
	}
}

// TestCachedWriteAfterRestart: a new Writer (a restarted controller, a new
// leader) remembers nothing: it applies the VirtualService once (from its
// cache's objects), changing nothing, and skips from then on.
func TestCachedWriteAfterRestart(t *testing.T) {
	t.Parallel()
	f := newCachedFixture(t)
	before, _ := f.writer(t)
	in := owned(t, f.ns, canarySteps(10))
	first := write(t, before, in)

	after, _ := f.writer(t)
	f.reqs.take()
	if again := write(t, after, in); again.ResourceVersion != first.ResourceVersion {
		t.Errorf("the first write after a restart changed the VirtualService: rv %s -> %s", first.ResourceVersion, again.ResourceVersion)
	}
	checkRequests(t, "first write after the restart", f.reqs.take(), map[string]int{"PATCH": 1})
	settle(t, after, in)
	write(t, after, in)
	checkRequests(t, "then", f.reqs.take(), map[string]int{})
}

// BenchmarkWriteUnchanged measures what the Istio writer costs a reconcile
// that changes nothing (the plan, Git's declaration and the live objects
// as last written): API requests per Write, before (every Write reads and
// applies) and after (a cached Writer).
func BenchmarkWriteUnchanged(b *testing.B) {
	for _, cached := range []bool{false, true} {
		name := map[bool]string{false: "uncached", true: "cached"}[cached]
		b.Run(name, func(b *testing.B) {
			f := newCachedFixture(b)
			w := NewWriter(f.api)
			if cached {
				w, _ = f.writer(b)
			}
			in := owned(b, f.ns, canarySteps(10))
			if _, err := w.Write(b.Context(), in); err != nil {
				b.Fatal(err)
			}
			if cached {
				settle(b, w, in)
			}
			f.reqs.take()
			for b.Loop() {
				if _, err := w.Write(b.Context(), in); err != nil {
					b.Fatal(err)
				}
			}
			reqs := f.reqs.take()
			total := 0
			for _, n := range reqs {
				total += n
			}
			b.ReportMetric(float64(total)/float64(b.N), "req/op")
			b.ReportMetric(float64(reqs["GET"])/float64(b.N), "get/op")
			b.ReportMetric(float64(reqs["PATCH"])/float64(b.N), "patch/op")
		})
	}
}
