package analysisrun

import (
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/analysis"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// TestConflictReplaysMeasurements drives persist by hand: a measurement is
// taken for a run read at one resourceVersion, the run changes meanwhile,
// and the write conflicts. The measurement must land on the fresh run
// once, never twice, and without being taken again (persist has no
// Measurer to take it with).
func TestConflictReplaysMeasurements(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cases := []struct {
		name string
		// meanwhile changes the run after the measurement was taken.
		meanwhile func(t *testing.T, c client.Client, read, measured *v1alpha1.AnalysisRun)
		wantPhase v1alpha1.AnalysisPhase
		// wantWrite: persist writes the status (else it finds it current).
		wantWrite  bool
		wantEvents []string
	}{{
		name: "spec.terminate set meanwhile: the measurement is recorded and the run completes",
		meanwhile: func(t *testing.T, c client.Client, read, _ *v1alpha1.AnalysisRun) {
			patched := read.DeepCopy()
			patched.Spec.Terminate = true
			if err := c.Patch(ctx, patched, client.MergeFrom(read)); err != nil {
				t.Fatal(err)
			}
		},
		wantPhase:  v1alpha1.AnalysisSuccessful,
		wantWrite:  true,
		wantEvents: []string{"Normal MetricSuccessful metric success-rate Successful after 1 measurements: stopped after 1 measurements", "Normal RunSuccessful"},
	}, {
		name: "the same measurement recorded meanwhile (a second writer): not recorded twice",
		meanwhile: func(t *testing.T, c client.Client, _, measured *v1alpha1.AnalysisRun) {
			if err := c.Status().Update(ctx, measured.DeepCopy()); err != nil {
				t.Fatal(err)
			}
		},
		wantPhase: v1alpha1.AnalysisRunning,
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := cluster(t)
			ns := newNamespace(t, c)
			key := createRun(t, c, ns, "conflict", successMetric(3))
			now := time.Now().Truncate(time.Second) // a whole second: measurement 0 is due at once
			rec := events.NewFakeRecorder(16)
			r := &Reconciler{Client: c, APIReader: c, Recorder: rec, Now: func() time.Time { return now }}

			read := getRun(t, c, key)
			started := read.DeepCopy()
			started.Status = analysis.Step(analysis.Input{Run: read, Now: now}).Status
			read, err := r.persist(ctx, read, started, nil)
			if err != nil {
				t.Fatal(err)
			}
			results := []analysis.Result{{Metric: "success-rate", Index: 0, Value: analysis.Value{Values: []float64{1}}}}
			measured := read.DeepCopy()
			measured.Status = analysis.Step(analysis.Input{Run: read, Results: results, Now: now}).Status
			tc.meanwhile(t, c, read, measured)
			before := getRun(t, c, key)

			persisted, err := r.persist(ctx, read, measured, results)
			if err != nil {
				t.Fatal(err)
			}
			got := getRun(t, c, key)
			m := metricResult(t, got, "success-rate")
			if got.Status.Phase != tc.wantPhase || m.Successful != 1 || taken(m) != 1 || len(m.Measurements) != 1 {
				t.Fatalf("want phase %s with measurement 0 recorded once:\n%s", tc.wantPhase, dump(got))
			}
			if wrote := got.ResourceVersion != before.ResourceVersion; wrote != tc.wantWrite {
				t.Errorf("status written: %v, want %v", wrote, tc.wantWrite)
			}
			if persisted.ResourceVersion != got.ResourceVersion {
				t.Errorf("persist returned resourceVersion %s, the API server has %s", persisted.ResourceVersion, got.ResourceVersion)
			}
			close(rec.Events)
			var evs []string
			for e := range rec.Events {
				evs = append(evs, e)
			}
			if len(evs) != len(tc.wantEvents) {
				t.Fatalf("Events %q, want %q", evs, tc.wantEvents)
			}
			for i, want := range tc.wantEvents {
				if !strings.HasPrefix(evs[i], want) {
					t.Errorf("Event %q, want %q…", evs[i], want)
				}
			}
		})
	}
}

// staleCache is a cache that holds one version of a run, whatever the API
// server has.
type staleCache struct {
	client.Client
	held *v1alpha1.AnalysisRun
}

func (s staleCache) Get(_ context.Context, _ client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	s.held.DeepCopyInto(obj.(*v1alpha1.AnalysisRun))
	return nil
}

// countingReader counts reads from the API server.
type countingReader struct {
	client.Reader
	n *int
}

func (c countingReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	*c.n++
	return c.Reader.Get(ctx, key, obj, opts...)
}

// TestLoadTrustsTheCacheOnlyAtOurOwnWrite: a run is measured from a status
// known to be current. The cache is trusted when it holds the version this
// process wrote last; at any other version (a cache behind our write, a
// run never written by this process) the run is read from the API server,
// so that a measurement the stale status does not show is not taken again.
func TestLoadTrustsTheCacheOnlyAtOurOwnWrite(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := cluster(t)
	ns := newNamespace(t, c)
	key := createRun(t, c, ns, "cached", successMetric(3))
	now := time.Now()
	created := getRun(t, c, key)

	writer := &Reconciler{Client: c, APIReader: c, Recorder: events.NewFakeRecorder(16), Now: func() time.Time { return now }}
	started := created.DeepCopy()
	started.Status = analysis.Step(analysis.Input{Run: created, Now: now}).Status
	written, err := writer.persist(ctx, created, started, nil)
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name  string
		cache *v1alpha1.AnalysisRun
		// wrote is the version this process wrote last; nil: none.
		wrote    *v1alpha1.AnalysisRun
		wantRead bool
	}{
		{"the cache holds our last write", written, written, false},
		{"the cache is behind our last write", created, written, true},
		{"a run this process never wrote", written, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			reads := 0
			l := &Reconciler{Client: staleCache{Client: c, held: tc.cache}, APIReader: countingReader{Reader: c, n: &reads}}
			if tc.wrote != nil {
				l.remember(tc.wrote)
			}
			got, err := l.load(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			if (reads > 0) != tc.wantRead {
				t.Errorf("read from the API server: %v, want %v", reads > 0, tc.wantRead)
			}
			if got.ResourceVersion != written.ResourceVersion || got.Status.StartedAt == nil {
				t.Errorf("loaded resourceVersion %s (started %v), want the API server's current %s", got.ResourceVersion, got.Status.StartedAt, written.ResourceVersion)
			}
		})
	}
}
