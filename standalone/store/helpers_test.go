package store

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// open opens a fresh store in a test directory and closes it at the end.
func open(t testing.TB, opts Options) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), DefaultFile), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// testPlan is a sealed plan with the canary at weight w.
func testPlan(w int32) *plan.Plan {
	p := &plan.Plan{
		Service: "reviews",
		Subsets: []plan.Subset{{Name: plan.Stable, Revision: "v1"}, {Name: plan.Canary, Revision: "v2"}},
		Hosts: []plan.Host{{Name: "reviews", Port: 9080, Routes: []plan.Route{{
			Name:         "primary",
			Destinations: []plan.Destination{{Subset: plan.Stable, Weight: 100 - w}, {Subset: plan.Canary, Weight: w}},
		}}}},
	}
	p.Seal()
	return p
}

// testRecord is what an engine step at step index i, canary weight w, with
// the named runs in status, would hand to Commit.
func testRecord(i, w int32, runs ...string) Record {
	p := testPlan(w)
	st := &v1alpha1.RolloutStatus{
		ObservedGeneration: int64(i),
		Phase:              v1alpha1.PhaseProgressing,
		StableRevision:     "v1",
		CanaryRevision:     "v2",
		CurrentStepIndex:   &i,
		StepDisplay:        fmt.Sprintf("%d/5", i+1),
		Traffic:            v1alpha1.TrafficStatus{PlanVersion: p.Version, StableWeight: 100 - w, CanaryWeight: w},
	}
	for _, r := range runs {
		st.Analysis = append(st.Analysis, v1alpha1.AnalysisRunStatus{
			Name: r, Kind: v1alpha1.AnalysisStepKind, Phase: v1alpha1.AnalysisRunning,
			StartedAt: &metav1.Time{Time: t0},
		})
	}
	return Record{
		Time:   t0.Add(time.Duration(i) * time.Minute),
		Status: st,
		Plan:   p,
		Events: []engine.Event{{Type: engine.EventNormal, Reason: v1alpha1.ReasonStepAdvanced, Message: fmt.Sprintf("step %d/5", i+1)}},
	}
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mustCommit(t testing.TB, s *Store, key string, rec Record) uint64 {
	t.Helper()
	seq, err := s.Commit(key, rec)
	if err != nil {
		t.Fatalf("Commit(%s): %v", key, err)
	}
	return seq
}
