package workload

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// extra is an extra revision in status, derived from from with images.
func extra(name, rev string, from v1alpha1.RevisionSource, images map[string]string) v1alpha1.ExtraRevisionStatus {
	return v1alpha1.ExtraRevisionStatus{Name: name, Revision: rev, Replicas: 1,
		Template: &v1alpha1.RevisionTemplate{From: from, Images: images}}
}

// rolling is the Rollout web rolling v3 (the spec) out over stable v1,
// with a sidecar next to its app container, and the extra revisions xs.
func rolling(xs ...v1alpha1.ExtraRevisionStatus) *v1alpha1.Rollout {
	ro := rollout()
	ro.Spec.Template.Spec.Containers = append(ro.Spec.Template.Spec.Containers, corev1.Container{Name: "proxy", Image: "proxy:1"})
	ro.Status = v1alpha1.RolloutStatus{StableRevision: "v1", CanaryRevision: "v3", ExtraRevisions: xs}
	return ro
}

// stableRS is the ReplicaSet of stable v1, whose template differs from
// the spec's in its image and a label of its own.
func stableRS(ro *v1alpha1.Rollout) *appsv1.ReplicaSet {
	rs := existing(ro, "v1", 3, time.Hour)
	rs.Spec.Template.Spec.Containers[0].Image = "web:v1"
	rs.Spec.Template.Labels["track"] = "old"
	return rs
}

func image(rs *appsv1.ReplicaSet, container string) string {
	for _, c := range rs.Spec.Template.Spec.Containers {
		if c.Name == container {
			return c.Image
		}
	}
	return ""
}

// An extra revision's ReplicaSet is its base template with the named
// images replaced, labelled (pods, selector, ReplicaSet) with its own
// revision and its name, owned by the Rollout; the base is not changed.
func TestExtraReplicaSetShape(t *testing.T) {
	t.Parallel()
	ro := rolling()
	x := extra("jason", "xj", v1alpha1.RevisionFromCanary, map[string]string{"app": "web:v2"})
	rs, err := ExtraReplicaSet(ro, &x, ro.Spec.Template, 2)
	if err != nil {
		t.Fatal(err)
	}
	if rs.Name != "web-xj" || *rs.Spec.Replicas != 2 || image(rs, "app") != "web:v2" || image(rs, "proxy") != "proxy:1" {
		t.Fatalf("ReplicaSet %s at %d: app %s, proxy %s", rs.Name, *rs.Spec.Replicas, image(rs, "app"), image(rs, "proxy"))
	}
	for what, l := range map[string]map[string]string{"ReplicaSet": rs.Labels, "selector": rs.Spec.Selector.MatchLabels, "pods": rs.Spec.Template.Labels} {
		if l["app"] != "web" || l[LabelRevision] != "xj" || l[LabelExtra] != "jason" {
			t.Errorf("%s labels %v", what, l)
		}
	}
	if ref := metav1.GetControllerOf(rs); ref == nil || ref.UID != ro.UID {
		t.Errorf("owner %+v", ref)
	}
	if image := ro.Spec.Template.Spec.Containers[0].Image; image != "web:v3" || ro.Spec.Template.Labels[LabelExtra] != "" {
		t.Errorf("the base template changed: image %s, labels %v", image, ro.Spec.Template.Labels)
	}

	bad := extra("jason", "xj", v1alpha1.RevisionFromCanary, map[string]string{"reviews": "v2"})
	if _, err := ExtraReplicaSet(ro, &bad, ro.Spec.Template, 1); err == nil || !strings.Contains(err.Error(), `no container "reviews"`) {
		t.Errorf("an image for a container the template lacks: %v", err)
	}
}

// Plan builds each wanted extra revision from its base: the canary's from
// the spec's template, a baseline of stable from the stable ReplicaSet's
// (not the spec's); it resizes an existing one, and deletes extras no
// longer wanted at once, outside the history bound.
func TestPlanExtras(t *testing.T) {
	t.Parallel()
	jason := extra("jason", "xj", v1alpha1.RevisionFromCanary, map[string]string{"app": "web:v2"})
	baseline := extra("baseline", "xb", v1alpha1.RevisionFromStable, nil)
	ro := rolling(jason, baseline)
	owned := map[string]*appsv1.ReplicaSet{"v1": stableRS(ro)}
	scale := []engine.Scale{{Revision: "v1", Replicas: 3}, {Revision: "v3", Replicas: 2}, {Revision: "xb", Replicas: 1}, {Revision: "xj", Replicas: 1}}

	ch := Plan(ro, owned, scale, "v3", 3)
	got := map[string]*appsv1.ReplicaSet{}
	for _, rs := range ch.Create {
		got[rs.Name] = rs
	}
	if len(got) != 3 || got["web-v3"] == nil || got["web-xj"] == nil || got["web-xb"] == nil || len(ch.Unbuildable)+len(ch.Missing) != 0 {
		t.Fatalf("create %v, unbuildable %v, missing %v: want web-v3, web-xj and web-xb", slices.Collect(maps.Keys(got)), ch.Unbuildable, ch.Missing)
	}
	if rs := got["web-xj"]; image(rs, "app") != "web:v2" || rs.Spec.Template.Labels["track"] != "" {
		t.Errorf("jason: image %s, labels %v; want the spec's template with web:v2", image(rs, "app"), rs.Spec.Template.Labels)
	}
	if rs := got["web-xb"]; image(rs, "app") != "web:v1" || rs.Spec.Template.Labels["track"] != "old" || rs.Labels[LabelRevision] != "xb" {
		t.Errorf("baseline: image %s, labels %v; want stable's own template under revision xb", image(rs, "app"), rs.Spec.Template.Labels)
	}

	// Both exist; jason goes to 2 replicas and baseline is no longer
	// wanted; old revisions beyond history are deleted as before.
	owned["v3"] = existing(ro, "v3", 2, 0)
	owned["xj"], owned["xb"] = got["web-xj"], got["web-xb"]
	owned["v0"] = existing(ro, "v0", 0, 2*time.Hour)
	ch = Plan(ro, owned, []engine.Scale{{Revision: "v1", Replicas: 3}, {Revision: "v3", Replicas: 2}, {Revision: "xj", Replicas: 2}}, "v3", 0)
	if len(ch.Create) != 0 || len(ch.Scale) != 1 || ch.Scale[0].ReplicaSet.Name != "web-xj" || ch.Scale[0].Replicas != 2 {
		t.Fatalf("create %d, scale %+v: want web-xj to 2 only", len(ch.Create), ch.Scale)
	}
	var deleted []string
	for _, rs := range ch.Delete {
		deleted = append(deleted, rs.Name)
	}
	if !slices.Equal(deleted, []string{"web-v0", "web-xb"}) {
		t.Fatalf("delete %v, want web-v0 (history 0) and web-xb (extra, unwanted)", deleted)
	}

	// Aborted: nothing but stable runs; every extra goes, even with room
	// in the history, and one already being deleted is left alone.
	owned["xb"] = got["web-xb"].DeepCopy()
	owned["xb"].DeletionTimestamp = &metav1.Time{Time: t0}
	ch = Plan(ro, owned, []engine.Scale{{Revision: "v1", Replicas: 3}}, "v3", 10)
	deleted = nil
	for _, rs := range ch.Delete {
		deleted = append(deleted, rs.Name)
	}
	if !slices.Equal(deleted, []string{"web-xj"}) {
		t.Fatalf("after abort: delete %v, want web-xj", deleted)
	}
}

// An extra revision whose base has no template to copy is reported, not
// built from something else.
func TestPlanExtraWithoutBase(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		status v1alpha1.RolloutStatus
		x      v1alpha1.ExtraRevisionStatus
		want   string
	}{
		{"stable ReplicaSet gone", v1alpha1.RolloutStatus{StableRevision: "v1", CanaryRevision: "v3"},
			extra("baseline", "xb", v1alpha1.RevisionFromStable, nil), "Stable revision v1 has no ReplicaSet"},
		{"no canary", v1alpha1.RolloutStatus{StableRevision: "v1"},
			extra("jason", "xj", v1alpha1.RevisionFromCanary, nil), "no Canary revision"},
		{"a backend", v1alpha1.RolloutStatus{StableRevision: "v3"},
			v1alpha1.ExtraRevisionStatus{Name: "jason", Revision: "v2", Backend: &v1alpha1.Backend{Version: "v2"}}, "has no template"},
	}
	for _, tc := range tests {
		ro := rolling()
		ro.Status = tc.status
		ro.Status.ExtraRevisions = []v1alpha1.ExtraRevisionStatus{tc.x}
		ch := Plan(ro, map[string]*appsv1.ReplicaSet{}, []engine.Scale{{Revision: tc.x.Revision, Replicas: 1}}, "v3", 3)
		if len(ch.Create) != 0 || len(ch.Unbuildable) != 1 || !strings.Contains(ch.Unbuildable[0].Error(), tc.want) {
			t.Errorf("%s: create %d, unbuildable %v; want an error containing %q", tc.name, len(ch.Create), ch.Unbuildable, tc.want)
		}
	}
}

// Readiness reports each extra revision's available replicas by revision;
// one being deleted has none, and stable and canary are not extras.
func TestReadinessOfExtras(t *testing.T) {
	t.Parallel()
	ro := rolling()
	jason := extra("jason", "xj", v1alpha1.RevisionFromCanary, nil)
	baseline := extra("baseline", "xb", v1alpha1.RevisionFromCanary, nil)
	owned := map[string]*appsv1.ReplicaSet{"v1": existing(ro, "v1", 3, 0), "v3": existing(ro, "v3", 1, 0)}
	for _, x := range []*v1alpha1.ExtraRevisionStatus{&jason, &baseline} {
		rs, err := ExtraReplicaSet(ro, x, ro.Spec.Template, 2)
		if err != nil {
			t.Fatal(err)
		}
		rs.Status.AvailableReplicas = 2
		owned[x.Revision] = rs
	}
	owned["v1"].Status.AvailableReplicas, owned["v3"].Status.AvailableReplicas = 3, 1
	owned["xb"].DeletionTimestamp = &metav1.Time{Time: t0}
	w := Readiness(owned, "v1", "v3")
	if w.StableAvailable != 3 || w.CanaryAvailable != 1 || len(w.ExtraAvailable) != 1 || w.ExtraAvailable["xj"] != 2 {
		t.Fatalf("readiness %+v, want stable 3, canary 1, extras {xj: 2}", w)
	}
	if w := Readiness(map[string]*appsv1.ReplicaSet{"v1": owned["v1"]}, "v1", ""); w.ExtraAvailable != nil {
		t.Errorf("no extras: ExtraAvailable %v, want nil", w.ExtraAvailable)
	}
}

// Every ReplicaSet Sluice creates, the canary's and an extra revision's
// alike, records the commit whose spec made it (the Rollout's Git
// provenance annotations, nothing else of the Rollout's annotations); a
// Rollout from no Git source gives none.
func TestReplicaSetsRecordTheirCommit(t *testing.T) {
	t.Parallel()
	ro := rolling()
	ro.Annotations = map[string]string{
		"sluice.dev/git-commit": "0123abcd", "sluice.dev/git-repository": "https://git.example.com/shop.git",
		"sluice.dev/git-path": "apps/web.yaml", "sluice.dev/git-commit-time": "2026-01-01T00:00:00Z",
		"team": "shop", "sluice.dev/command": `{"kind":"Promote"}`,
	}
	want := map[string]string{
		"sluice.dev/git-commit": "0123abcd", "sluice.dev/git-repository": "https://git.example.com/shop.git",
		"sluice.dev/git-path": "apps/web.yaml", "sluice.dev/git-commit-time": "2026-01-01T00:00:00Z",
	}
	x := extra("jason", "xj", v1alpha1.RevisionFromCanary, map[string]string{"app": "web:v2"})
	extraRS, err := ExtraReplicaSet(ro, &x, ro.Spec.Template, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, rs := range []*appsv1.ReplicaSet{ReplicaSet(ro, "v3", 1), extraRS} {
		if !maps.Equal(rs.Annotations, want) {
			t.Errorf("%s annotations %v, want the provenance %v", rs.Name, rs.Annotations, want)
		}
	}
	ro.Annotations = nil
	if a := ReplicaSet(ro, "v3", 1).Annotations; a != nil {
		t.Errorf("without provenance: annotations %v, want none", a)
	}
}
