package xdsplane

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// reportFieldOwner is the field manager of the report ConfigMaps.
const reportFieldOwner = "sluice-xds-report"

// Reporter writes this replica's Report: what its xDS server's tracker
// knows of the clients of every Rollout the Plane serves. It is a manager
// Runnable on every replica, the leader included (a future leader reads
// it too). It writes when the tracker changes, at most once per
// MinInterval, and at least once per Heartbeat; it deletes the report
// when it stops, so the leader stops counting clients that are leaving
// with this replica.
//
// It only writes (server-side apply) and deletes: reading ConfigMaps
// through the manager's client would start a cache of every ConfigMap.
type Reporter struct {
	c     client.Writer
	plane *Plane
	opts  ReportOptions
	now   func() time.Time
}

var _ manager.LeaderElectionRunnable = (*Reporter)(nil)

// NewReporter reports plane's clients through c (the manager's client).
func NewReporter(c client.Writer, plane *Plane, opts ReportOptions) (*Reporter, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	return &Reporter{c: c, plane: plane, opts: opts.withDefaults(), now: time.Now}, nil
}

// NeedLeaderElection is false: every replica reports its clients.
func (r *Reporter) NeedLeaderElection() bool { return false }

// Start writes the report until ctx ends, then deletes it.
func (r *Reporter) Start(ctx context.Context) error {
	defer r.remove(ctx)
	var (
		written  map[string]ReportEntry
		wroteAt  time.Time // zero until a write succeeded
		failures int
	)
	for {
		// Taken before collecting: a change during the collection closes
		// it, and the next round sees that change.
		changed := r.plane.srv.StatusChanged()
		entries := r.collect()
		if wroteAt.IsZero() || !maps.EqualFunc(entries, written, ReportEntry.equal) || r.now().Sub(wroteAt) >= r.opts.Heartbeat {
			if err := r.write(ctx, entries); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				failures++
				// Back off up to a heartbeat while the API server refuses.
				backoff := min(r.opts.MinInterval<<min(failures, 10), r.opts.Heartbeat)
				r.opts.Logger.Error(err, "xDS report: write failed; the leader will not see this replica's clients until it succeeds", "retryIn", backoff.String())
				if !sleep(ctx, backoff) {
					return nil
				}
				continue
			}
			written, wroteAt, failures = entries, r.now(), 0
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-time.After(wroteAt.Add(r.opts.Heartbeat).Sub(r.now())):
		}
		// Let the burst this change belongs to finish: one write for all.
		if !sleep(ctx, r.opts.MinInterval) {
			return nil
		}
	}
}

// collect is the report's entries now: the Rollouts whose service has at
// least one subscribed client on this replica. One Statuses call answers
// for every service in a single pass over the clients.
func (r *Reporter) collect() map[string]ReportEntry {
	out := map[string]ReportEntry{}
	// With no stream open nobody subscribes to anything: the answer is
	// empty without asking about every plan (at 1,000 Rollouts that was
	// a tenth of the controller's CPU in a wave, at every change).
	if r.plane.srv.Idle() {
		return out
	}
	served := r.plane.served()
	versions := make(map[string]string, len(served))
	for _, h := range served {
		versions[h.service] = h.version
	}
	statuses := r.plane.srv.Statuses(versions)
	for key, h := range served {
		if st := statuses[h.service]; !st.NoClients() {
			out[key.String()] = entryOf(st)
		}
	}
	return out
}

// write applies the report.
func (r *Reporter) write(ctx context.Context, entries map[string]ReportEntry) error {
	rep := Report{
		Format:    ReportFormat,
		Replica:   r.opts.Replica,
		RenewTime: r.now().UTC(),
		Heartbeat: metav1.Duration{Duration: r.opts.Heartbeat},
		Rollouts:  entries,
	}
	data, err := json.Marshal(rep)
	if err != nil {
		return fmt.Errorf("encode xDS report of replica %s: %w", r.opts.Replica, err)
	}
	cm := corev1ac.ConfigMap(ReportName(r.opts.Replica), r.opts.Namespace).
		WithLabels(reportLabels()).
		WithData(map[string]string{ReportKey: string(data)})
	if err := r.c.Apply(ctx, cm, client.FieldOwner(reportFieldOwner), client.ForceOwnership); err != nil {
		r.opts.Metrics.writes.WithLabelValues("error").Inc()
		return fmt.Errorf("apply ConfigMap %s/%s: %w", r.opts.Namespace, ReportName(r.opts.Replica), err)
	}
	r.opts.Metrics.writes.WithLabelValues("ok").Inc()
	r.opts.Metrics.reportBytes.Set(float64(len(data)))
	return nil
}

// remove deletes the report on the way out. The manager is stopping, so
// the delete gets a few seconds of its own.
func (r *Reporter) remove(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	cm := &corev1.ConfigMap{}
	cm.Namespace, cm.Name = r.opts.Namespace, ReportName(r.opts.Replica)
	if err := r.c.Delete(ctx, cm); err != nil && !apierrors.IsNotFound(err) {
		r.opts.Logger.Error(err, "xDS report: delete on shutdown failed; the leader ignores it once stale", "configMap", cm.Namespace+"/"+cm.Name)
	}
}

// sleep waits d or until ctx ends, and reports whether ctx is still on.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
