package xdsplane

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// Reports are the other replicas' reports as this replica reads them from
// the manager's cache (narrowed by ReportCacheByObject): the leader's
// Plane adds their clients to its own tracker's when it answers for a
// plan version, and its background waits wake when a report about their
// Rollout changes.
//
// A report is fresh while the leader keeps seeing it renewed: its
// renewTime changed within three of its heartbeats, timed by this
// replica's clock (so clocks need not agree). A report seen for the first
// time counts from its renewTime if that is earlier, so a new leader does
// not take a dead replica's report for a live one. As a manager Runnable,
// Reports runs on the leader only and deletes the reports that went stale.
type Reports struct {
	c    client.Writer
	opts ReportOptions
	now  func() time.Time

	mu       sync.Mutex
	replicas map[string]*replicaReport // by ConfigMap name
	// waiters are the channels of Changed, closed at the next change of a
	// report entry about their Rollout.
	waiters map[types.NamespacedName]chan struct{}
}

// replicaReport is one report as read.
type replicaReport struct {
	replica   string
	uid       types.UID
	rv        string
	renewTime time.Time
	// seen is when this replica saw renewTime first.
	seen       time.Time
	staleAfter time.Duration
	answers    map[types.NamespacedName]replicaAnswer
}

var _ manager.LeaderElectionRunnable = (*Reports)(nil)

// NewReports reads the reports from c (the manager's cache) and deletes
// stale ones through w. It may be called before the cache starts.
func NewReports(ctx context.Context, c cache.Cache, w client.Writer, opts ReportOptions) (*Reports, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	r := newReports(w, opts)
	inf, err := c.GetInformer(ctx, &corev1.ConfigMap{}, cache.BlockUntilSynced(false))
	if err != nil {
		return nil, fmt.Errorf("xDS report informer: %w", err)
	}
	_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    r.observe,
		UpdateFunc: func(_, obj any) { r.observe(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if cm, ok := obj.(*corev1.ConfigMap); ok {
				r.set(cm.Name, nil)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("xDS report event handler: %w", err)
	}
	return r, nil
}

func newReports(w client.Writer, opts ReportOptions) *Reports {
	return &Reports{
		c: w, opts: opts.withDefaults(), now: time.Now,
		replicas: map[string]*replicaReport{},
		waiters:  map[types.NamespacedName]chan struct{}{},
	}
}

// Replica is this replica's name.
func (r *Reports) Replica() string { return r.opts.Replica }

// observe takes in an added or updated report.
func (r *Reports) observe(obj any) {
	cm, ok := obj.(*corev1.ConfigMap)
	// The cache is narrowed to reports; the check guards against a cache
	// that is not.
	if !ok || cm.Namespace != r.opts.Namespace || cm.Labels[LabelReport] != "true" || cm.Name == ReportName(r.opts.Replica) {
		return
	}
	rep, err := parseReport(cm)
	if err != nil {
		// An unreadable report counts as none: its replica's clients are
		// not seen, as before reports existed.
		r.opts.Logger.Error(err, "xDS report: ignored")
		r.set(cm.Name, nil)
		return
	}
	rr := &replicaReport{
		replica: rep.Replica, uid: cm.UID, rv: cm.ResourceVersion, renewTime: rep.RenewTime,
		staleAfter: staleHeartbeats * rep.Heartbeat.Duration,
		answers:    make(map[types.NamespacedName]replicaAnswer, len(rep.Rollouts)),
	}
	if rr.staleAfter <= 0 {
		rr.staleAfter = staleHeartbeats * r.opts.Heartbeat
	}
	for k, e := range rep.Rollouts {
		ns, name, ok := splitKey(k)
		if !ok {
			continue
		}
		rr.answers[types.NamespacedName{Namespace: ns, Name: name}] = e.answer(rep.Replica)
	}
	r.set(cm.Name, rr)
}

// set replaces a replica's report (nil: removed) and wakes the waiters of
// every Rollout whose entry changed.
func (r *Reports) set(name string, rr *replicaReport) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.replicas[name]
	now := r.now()
	switch {
	case rr == nil:
		delete(r.replicas, name)
	case old != nil && old.renewTime.Equal(rr.renewTime):
		rr.seen = old.seen
	case old != nil:
		rr.seen = now
	default:
		rr.seen = now
		if rr.renewTime.Before(now) {
			rr.seen = rr.renewTime
		}
	}
	if rr != nil {
		r.replicas[name] = rr
	}
	wasFresh := old != nil && old.fresh(now)
	isFresh := rr != nil && rr.fresh(now)
	for key := range changedKeys(old, rr, wasFresh, isFresh) {
		r.wakeLocked(key)
	}
}

// changedKeys lists the Rollouts whose answer from this report moved.
func changedKeys(old, cur *replicaReport, wasFresh, isFresh bool) map[types.NamespacedName]struct{} {
	out := map[types.NamespacedName]struct{}{}
	if wasFresh {
		for k, a := range old.answers {
			if b, ok := cur.answer(k); !isFresh || !ok || !a.equal(b) {
				out[k] = struct{}{}
			}
		}
	}
	if isFresh {
		for k := range cur.answers {
			if _, ok := old.answer(k); !wasFresh || !ok {
				out[k] = struct{}{}
			}
		}
	}
	return out
}

func (rr *replicaReport) answer(key types.NamespacedName) (replicaAnswer, bool) {
	if rr == nil {
		return replicaAnswer{}, false
	}
	a, ok := rr.answers[key]
	return a, ok
}

func (rr *replicaReport) fresh(now time.Time) bool {
	return now.Sub(rr.seen) <= rr.staleAfter
}

func (r *Reports) wakeLocked(key types.NamespacedName) {
	if ch, ok := r.waiters[key]; ok {
		close(ch)
		delete(r.waiters, key)
	}
}

// answers are the fresh reports' answers about a Rollout, by replica name.
func (r *Reports) answers(key types.NamespacedName) []replicaAnswer {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	var out []replicaAnswer
	for _, rr := range r.replicas {
		if a, ok := rr.answers[key]; ok && rr.fresh(now) {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, func(a, b replicaAnswer) int { return cmp.Compare(a.replica, b.replica) })
	return out
}

// changed returns a channel closed at the next change of another
// replica's answer about the Rollout: an entry that changed, appeared or
// went, or a report that went stale or was deleted.
func (r *Reports) changed(key types.NamespacedName) <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	ch, ok := r.waiters[key]
	if !ok {
		ch = make(chan struct{})
		r.waiters[key] = ch
	}
	return ch
}

// NeedLeaderElection is true: the leader, whose answers the reports
// serve, collects the garbage.
func (r *Reports) NeedLeaderElection() bool { return true }

// Start deletes stale reports every heartbeat until ctx ends.
func (r *Reports) Start(ctx context.Context) error {
	t := time.NewTicker(r.opts.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			r.collectGarbage(ctx)
		}
	}
}

// collectGarbage deletes the reports that went stale, each only as it was
// read (a renewal racing the delete wins), and wakes the waiters of their
// Rollouts at once, whether or not the delete succeeds.
func (r *Reports) collectGarbage(ctx context.Context) {
	r.mu.Lock()
	now := r.now()
	var stale []*corev1.ConfigMap
	for name, rr := range r.replicas {
		if rr.fresh(now) {
			continue
		}
		for key := range rr.answers {
			r.wakeLocked(key)
		}
		cm := &corev1.ConfigMap{}
		cm.Namespace, cm.Name, cm.UID, cm.ResourceVersion = r.opts.Namespace, name, rr.uid, rr.rv
		stale = append(stale, cm)
	}
	r.mu.Unlock()
	for _, cm := range stale {
		uid, rv := cm.UID, cm.ResourceVersion
		err := r.c.Delete(ctx, cm, client.Preconditions{UID: &uid, ResourceVersion: &rv})
		switch {
		case err == nil:
			r.opts.Logger.Info("xDS report: deleted a stale report; its replica's clients no longer count", "configMap", cm.Namespace+"/"+cm.Name)
		case apierrors.IsNotFound(err), apierrors.IsConflict(err):
		default:
			r.opts.Logger.Error(err, "xDS report: deleting a stale report failed; it is ignored anyway", "configMap", cm.Namespace+"/"+cm.Name)
		}
	}
}

// splitKey splits "namespace/name".
func splitKey(k string) (ns, name string, ok bool) {
	ns, name, err := toolscache.SplitMetaNamespaceKey(k)
	return ns, name, err == nil && ns != "" && name != ""
}
