package gitapply

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Sources answers a Rollout's declarations and reverts from the source
// the Rollout came from, never from another source that happens to
// declare an object of the same name; a GitSource that exists but is not
// running holds publishing back, one that is gone does not.
func TestSourcesRouteByRolloutSource(t *testing.T) {
	files := reviews()
	files["apps/istio.yaml"] = istioYAML("3s")
	cfgFix := newFixture(t, files)
	files["apps/istio.yaml"] = istioYAML("9s")
	gsFix := newFixture(t, files)
	c := cfgFix.c
	gsID := GitSourceID(gsFix.ns, "books")

	sources := NewSources(c)
	config := newApplier(t, c, cfgFix.r, cfgFix.ns)
	team := newApplier(t, c, gsFix.r, gsFix.ns, func(o *Options) { o.SourceID = gsID })
	for _, a := range []*Applier{config, team} {
		if err := sources.Add(a); err != nil {
			t.Fatal(err)
		}
		run(t, a)
	}
	if err := sources.Add(team); err == nil {
		t.Error("a second Applier of one ID was registered")
	}
	syncTo(t, config, cfgFix.first)
	syncTo(t, team, gsFix.first)

	timeout := func(ro *v1alpha1.Rollout) (time.Duration, error) {
		vs, _, err := sources.DeclaredFor(context.Background(), ro, "reviews", "reviews")
		if err != nil || vs == nil {
			return 0, err
		}
		return vs.Spec.Http[0].GetTimeout().AsDuration(), nil
	}
	fromConfig := get(t, c, cfgFix.ns, "reviews", &v1alpha1.Rollout{})
	fromTeam := get(t, c, gsFix.ns, "reviews", &v1alpha1.Rollout{})
	if SourceOf(fromTeam) != gsID || SourceOf(fromConfig) != ConfigSourceID {
		t.Fatalf("sources %q, %q: want %q and %q", SourceOf(fromTeam), SourceOf(fromConfig), gsID, ConfigSourceID)
	}
	// A Rollout of the team's source in the config source's namespace:
	// the config source declares "reviews" there, but it is not its own.
	misplaced := fromTeam.DeepCopy()
	misplaced.Namespace = cfgFix.ns
	kubectl := &v1alpha1.Rollout{ObjectMeta: metav1.ObjectMeta{Namespace: cfgFix.ns, Name: "by-hand"}}
	gone := withSource(fromTeam, GitSourceID(gsFix.ns, "gone"))
	for _, tc := range []struct {
		name string
		ro   *v1alpha1.Rollout
		want time.Duration
	}{
		{"config source", fromConfig, 3 * time.Second},
		{"GitSource", fromTeam, 9 * time.Second},
		{"GitSource, object it does not declare", misplaced, 0},
		{"applied by hand: the config source, as before GitSources", kubectl, 3 * time.Second},
		{"deleted GitSource: nothing declared", gone, 0},
	} {
		if got, err := timeout(tc.ro); err != nil || got != tc.want {
			t.Errorf("%s: declared timeout %v (%v), want %v", tc.name, got, err, tc.want)
		}
	}

	// Exists, not running: hold back rather than write over Git's objects.
	stopped := &v1alpha1.GitSource{ObjectMeta: metav1.ObjectMeta{Namespace: gsFix.ns, Name: "stopped"},
		Spec: v1alpha1.GitSourceSpec{URL: "https://git.example.com/x.git", Ref: v1alpha1.GitRef{Branch: "main"}}}
	if err := c.Create(context.Background(), stopped); err != nil {
		t.Fatal(err)
	}
	if _, err := timeout(withSource(fromTeam, GitSourceID(gsFix.ns, "stopped"))); err == nil || !strings.Contains(err.Error(), "waiting for the first Git sync") {
		t.Errorf("GitSource not running: %v, want an error", err)
	}

	rv := engine.GitRevert{Rollout: "reviews", StableRevision: "abc", FailedRevision: "def"}
	if _, err := sources.Revert(context.Background(), gone, rv); err == nil || !strings.Contains(err.Error(), "not applied by any running Git source") {
		t.Errorf("Revert of a deleted GitSource's Rollout: %v", err)
	}
	// The config source's Rollout claimed by the team's source goes to the
	// team's Applier, which refuses it: its file is in another repository.
	if _, err := sources.Revert(context.Background(), withSource(fromConfig, gsID), rv); err == nil || !strings.Contains(err.Error(), "was not applied from "+gsFix.r.URL()) {
		t.Errorf("Revert routed by the source annotation: %v", err)
	}
	if sources.Remove(gsID) != team || sources.Get(gsID) != nil {
		t.Error("Remove did not unregister the team's Applier")
	}
}

func withSource(ro *v1alpha1.Rollout, id string) *v1alpha1.Rollout {
	out := ro.DeepCopy()
	out.Annotations[AnnotationSource] = id
	return out
}
