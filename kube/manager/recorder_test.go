package manager_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/xds"
)

// recorder keeps the history of the test's namespace, so the test can
// judge the rollout as a timeline afterwards. It has two sources:
//
//   - watches of Rollouts, VirtualServices and AnalysisRuns: every version
//     of every object, in order, so no state is missed however briefly it
//     lasted (a promotion's 100% plan may hold for a few milliseconds);
//   - a poll of the Rollout every 50 ms, which also asks the watched xDS
//     servers whether their clients applied the plan version read. A poll
//     is a linearizable read: if a read that began at time T shows plan
//     version A, no newer plan had been written at T, so no proxy could
//     have had it either. That bound, which a watch event's arrival time
//     does not give, is what lets the test cut the client's calls into
//     windows that belong to one plan.
type recorder struct {
	c        client.WithWatch
	ns, host string

	mu       sync.Mutex
	polled   []sample // from the poll: timing
	statuses []sample // from the watch: every version
	vs       []vsSample
	runs     map[string]*runRecord
	servers  []*xds.Server
	lastErr  error
}

// sample is the Rollout's status as one read or watch event saw it; At is
// when the read began (the event arrived). Applied holds, for each
// watched xDS server whose clients had all applied the status's plan
// version right after a read, when that was seen.
type sample struct {
	At      time.Time
	Status  v1alpha1.RolloutStatus
	Applied map[*xds.Server]time.Time
}

// vsSample is one version of the VirtualService: its plan version
// annotation, the primary route's weight by subset, and the admin route
// as canonical JSON.
type vsSample struct {
	At          time.Time
	PlanVersion string
	Primary     map[string]int64
	Admin       string
}

// runRecord is everything seen of one AnalysisRun.
type runRecord struct {
	Name string
	// UIDs lists every object of this name: more than one means the run
	// was created again, and its measurements started over.
	UIDs   []string
	Phase  v1alpha1.AnalysisPhase
	Result v1alpha1.MetricResult // of the run's one metric, last seen
	// Indexes are the measurement indexes seen, in the order first seen.
	Indexes []int32
}

var vsList = schema.GroupVersionKind{Group: "networking.istio.io", Version: "v1", Kind: "VirtualServiceList"}

func newRecorder(c client.WithWatch, ns, host string) *recorder {
	return &recorder{c: c, ns: ns, host: host, runs: map[string]*runRecord{}}
}

// watchXDS adds an xDS server whose clients' acknowledgements are
// recorded.
func (r *recorder) watchXDS(s *xds.Server) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.servers = append(r.servers, s)
}

// run records until ctx ends.
func (r *recorder) run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() {
		r.watch(ctx, func() client.ObjectList { return &v1alpha1.RolloutList{} }, func(obj client.Object) {
			if ro, ok := obj.(*v1alpha1.Rollout); ok && ro.Name == rolloutName {
				r.statuses = append(r.statuses, sample{At: time.Now(), Status: *ro.Status.DeepCopy()})
			}
		})
	})
	wg.Go(func() {
		r.watch(ctx, func() client.ObjectList { return &v1alpha1.AnalysisRunList{} }, func(obj client.Object) {
			if run, ok := obj.(*v1alpha1.AnalysisRun); ok {
				r.noteRun(run)
			}
		})
	})
	wg.Go(func() {
		r.watch(ctx, func() client.ObjectList {
			l := &unstructured.UnstructuredList{}
			l.SetGroupVersionKind(vsList)
			return l
		}, func(obj client.Object) {
			u, ok := obj.(*unstructured.Unstructured)
			if !ok || u.GetName() != rolloutName {
				return
			}
			vs, err := parseVirtualService(u, time.Now())
			if err != nil {
				r.lastErr = err
				return
			}
			r.vs = append(r.vs, *vs)
		})
	})
	wg.Go(func() { r.poll(ctx) })
	wg.Wait()
}

// watch lists and then watches the namespace's objects of one kind,
// calling seen (under r.mu) with every version in order, until ctx ends.
// A watch that ends is resumed from the last resourceVersion; one that is
// too old to resume starts over with a list.
func (r *recorder) watch(ctx context.Context, newList func() client.ObjectList, seen func(client.Object)) {
	rv := ""
	for ctx.Err() == nil {
		if rv == "" {
			l := newList()
			if err := r.c.List(ctx, l, client.InNamespace(r.ns)); err != nil {
				r.fail(ctx, fmt.Errorf("list %T: %w", l, err))
				continue
			}
			items, err := meta.ExtractList(l)
			if err != nil {
				r.fail(ctx, err)
				continue
			}
			r.mu.Lock()
			for _, it := range items {
				if obj, ok := it.(client.Object); ok {
					seen(obj)
				}
			}
			r.mu.Unlock()
			rv = l.GetResourceVersion()
		}
		w, err := r.c.Watch(ctx, newList(), client.InNamespace(r.ns), &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv}})
		if err != nil {
			r.fail(ctx, err)
			continue
		}
		for ev := range w.ResultChan() {
			if ev.Type == watch.Error {
				if st, ok := ev.Object.(*metav1.Status); ok && st.Code == http.StatusGone {
					rv = "" // compacted: list again
				}
				r.fail(ctx, apierrors.FromObject(ev.Object))
				break
			}
			obj, ok := ev.Object.(client.Object)
			if !ok {
				continue
			}
			rv = obj.GetResourceVersion()
			if ev.Type == watch.Bookmark {
				continue
			}
			r.mu.Lock()
			seen(obj)
			r.mu.Unlock()
		}
		w.Stop()
	}
}

// fail records err and pauses a little before the caller retries.
func (r *recorder) fail(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	r.mu.Lock()
	r.lastErr = err
	r.mu.Unlock()
	select {
	case <-ctx.Done():
	case <-time.After(100 * time.Millisecond):
	}
}

func (r *recorder) poll(ctx context.Context) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		at := time.Now()
		var ro v1alpha1.Rollout
		err := r.c.Get(ctx, client.ObjectKey{Namespace: r.ns, Name: rolloutName}, &ro)
		switch {
		case err == nil:
			r.mu.Lock()
			s := sample{At: at, Status: *ro.Status.DeepCopy(), Applied: map[*xds.Server]time.Time{}}
			if pv := ro.Status.Traffic.PlanVersion; pv != "" {
				for _, srv := range r.servers {
					if srv.HostStatus(r.host, pv).Converged() {
						s.Applied[srv] = time.Now()
					}
				}
			}
			r.polled = append(r.polled, s)
			r.mu.Unlock()
		case !apierrors.IsNotFound(err) && ctx.Err() == nil:
			r.mu.Lock()
			r.lastErr = err
			r.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// virtualService reads the VirtualService from the API server; nil if
// there is none.
func (r *recorder) virtualService(ctx context.Context) (*vsSample, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(vsList.GroupVersion().WithKind("VirtualService"))
	at := time.Now()
	if err := r.c.Get(ctx, client.ObjectKey{Namespace: r.ns, Name: rolloutName}, u); err != nil {
		return nil, client.IgnoreNotFound(err)
	}
	return parseVirtualService(u, at)
}

// parseVirtualService takes what the test judges from a VirtualService
// read unstructured, so that what is compared is what was written and not
// a decoding of it.
func parseVirtualService(u *unstructured.Unstructured, at time.Time) (*vsSample, error) {
	s := &vsSample{At: at, PlanVersion: u.GetAnnotations()["sluice.dev/plan-version"], Primary: map[string]int64{}}
	http, _, err := unstructured.NestedSlice(u.Object, "spec", "http")
	if err != nil {
		return nil, fmt.Errorf("VirtualService %s spec.http: %w", u.GetName(), err)
	}
	for _, h := range http {
		route, _ := h.(map[string]any)
		switch route["name"] {
		case "admin":
			b, err := json.Marshal(route)
			if err != nil {
				return nil, err
			}
			s.Admin = string(b)
		case "primary":
			dests, _, _ := unstructured.NestedSlice(route, "route")
			for _, d := range dests {
				dm, _ := d.(map[string]any)
				subset, _, _ := unstructured.NestedString(dm, "destination", "subset")
				w, found, _ := unstructured.NestedInt64(dm, "weight")
				if !found && len(dests) == 1 {
					w = 100 // Istio's default for a lone destination
				}
				s.Primary[subset] = w
			}
		}
	}
	return s, nil
}

func (r *recorder) noteRun(run *v1alpha1.AnalysisRun) {
	rec := r.runs[run.Name]
	if rec == nil {
		rec = &runRecord{Name: run.Name}
		r.runs[run.Name] = rec
	}
	if uid := string(run.UID); !slices.Contains(rec.UIDs, uid) {
		rec.UIDs = append(rec.UIDs, uid)
	}
	rec.Phase = run.Status.Phase
	if len(run.Status.Metrics) > 0 {
		rec.Result = run.Status.Metrics[0]
		for _, m := range rec.Result.Measurements {
			if !slices.Contains(rec.Indexes, m.Index) {
				rec.Indexes = append(rec.Indexes, m.Index)
			}
		}
	}
}

// history is a copy of what was recorded so far.
type history struct {
	Polled, Statuses []sample
	VS               []vsSample
	Runs             map[string]runRecord
}

func (r *recorder) snapshot() history {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := history{Polled: slices.Clone(r.polled), Statuses: slices.Clone(r.statuses), VS: slices.Clone(r.vs), Runs: map[string]runRecord{}}
	for k, v := range r.runs {
		h.Runs[k] = *v
	}
	return h
}

// segment is a stretch of time in which the Rollout's status named one
// plan version.
type segment struct {
	PlanVersion    string
	Stable, Canary string // revisions
	CanaryWeight   int32
	Step           string
	// From is when the first sample showing it was taken, To the last.
	// For polled samples: until To, no newer plan existed.
	From, To time.Time
	// Applied is when the clients of the xDS server asked about were
	// first seen to have applied it; zero if never.
	Applied time.Time
}

// segments cuts a status history into plan versions, in order, with when
// the clients of srv (nil: none) applied each.
func segments(samples []sample, srv *xds.Server) []segment {
	var out []segment
	for _, s := range samples {
		tr := s.Status.Traffic
		if tr.PlanVersion == "" {
			continue
		}
		n := len(out)
		if n == 0 || out[n-1].PlanVersion != tr.PlanVersion {
			out = append(out, segment{PlanVersion: tr.PlanVersion, Stable: s.Status.StableRevision, Canary: s.Status.CanaryRevision,
				CanaryWeight: tr.CanaryWeight, Step: s.Status.StepDisplay, From: s.At})
			n++
		}
		seg := &out[n-1]
		seg.To = s.At
		if at, ok := s.Applied[srv]; ok && seg.Applied.IsZero() {
			seg.Applied = at
		}
	}
	return out
}

// describe is the recorded history in brief, for a failing test.
func (r *recorder) describe() string {
	h := r.snapshot()
	r.mu.Lock()
	lastErr := r.lastErr
	r.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "recorder's last error: %v\n", lastErr)
	last := ""
	for _, s := range h.Statuses {
		st := s.Status
		line := fmt.Sprintf("phase=%s step=%s stable=%s canary=%s weight=%d plan=%s acked=%s msg=%q",
			st.Phase, st.StepDisplay, st.StableRevision, st.CanaryRevision, st.Traffic.CanaryWeight,
			st.Traffic.PlanVersion, st.Traffic.AcknowledgedVersion, st.Message)
		if line != last {
			fmt.Fprintf(&b, "  %s %s\n", s.At.Format("15:04:05.000"), line)
			last = line
		}
	}
	last = ""
	for _, v := range h.VS {
		line := fmt.Sprintf("VirtualService plan=%s primary=%v", v.PlanVersion, v.Primary)
		if line != last {
			fmt.Fprintf(&b, "  %s %s\n", v.At.Format("15:04:05.000"), line)
			last = line
		}
	}
	for _, n := range slices.Sorted(maps.Keys(h.Runs)) {
		rr := h.Runs[n]
		fmt.Fprintf(&b, "  run %s: %s, objects %d, measurements %v, counts %d successful %d failed %d inconclusive %d error, last value %s\n",
			n, rr.Phase, len(rr.UIDs), rr.Indexes, rr.Result.Successful, rr.Result.Failed, rr.Result.Inconclusive, rr.Result.Error, rr.Result.LastValue)
	}
	return b.String()
}
