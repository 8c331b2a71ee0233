package workload

import (
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func rollout() *v1alpha1.Rollout {
	return &v1alpha1.Rollout{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", UID: types.UID("ro-uid")},
		Spec: v1alpha1.RolloutSpec{Template: &corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "web:v3"}}},
		}},
	}
}

// existing is a ReplicaSet of rev created age ago with n replicas.
func existing(ro *v1alpha1.Rollout, rev string, n int32, age time.Duration) *appsv1.ReplicaSet {
	rs := ReplicaSet(ro, rev, n)
	rs.CreationTimestamp = metav1.NewTime(t0.Add(-age))
	return rs
}

func TestReplicaSetShape(t *testing.T) {
	ro := rollout()
	rs := ReplicaSet(ro, "abc", 2)
	if rs.Name != "web-abc" || *rs.Spec.Replicas != 2 {
		t.Fatalf("name %s replicas %d", rs.Name, *rs.Spec.Replicas)
	}
	for _, l := range []map[string]string{rs.Labels, rs.Spec.Selector.MatchLabels, rs.Spec.Template.Labels} {
		if l["app"] != "web" || l[LabelRevision] != "abc" {
			t.Errorf("labels %v", l)
		}
	}
	if ro.Spec.Template.Labels[LabelRevision] != "" {
		t.Error("ReplicaSet changed the Rollout's template")
	}
	if ref := metav1.GetControllerOf(rs); ref == nil || ref.UID != ro.UID || ref.Kind != "Rollout" {
		t.Errorf("owner %+v", ref)
	}
}

func TestPlan(t *testing.T) {
	ro := rollout()
	names := func(rss []*appsv1.ReplicaSet) (out []string) {
		for _, rs := range rss {
			out = append(out, rs.Name)
		}
		return out
	}
	owned := map[string]*appsv1.ReplicaSet{
		"v2": existing(ro, "v2", 3, time.Hour),     // stable
		"v1": existing(ro, "v1", 3, 2*time.Hour),   // old stable after its delay
		"v0": existing(ro, "v0", 0, 3*time.Hour),   // history
		"va": existing(ro, "va", 0, 4*time.Hour),   // history
		"vb": existing(ro, "vb", 0, 5*time.Hour),   // beyond history
		"vx": existing(ro, "vx", 0, 100*time.Hour), // beyond history
	}
	ch := Plan(ro, owned, []engine.Scale{{Revision: "v2", Replicas: 3}, {Revision: "v3", Replicas: 1}, {Revision: "gone", Replicas: 3}}, "v3", 3)
	if len(ch.Create) != 1 || ch.Create[0].Name != "web-v3" || *ch.Create[0].Spec.Replicas != 1 {
		t.Fatalf("create %+v, want web-v3 at 1", ch.Create)
	}
	if len(ch.Scale) != 1 || ch.Scale[0].ReplicaSet.Name != "web-v1" || ch.Scale[0].Replicas != 0 {
		t.Fatalf("scale %+v, want web-v1 to 0", ch.Scale)
	}
	if got := names(ch.Delete); !slices.Equal(got, []string{"web-vb", "web-vx"}) {
		t.Fatalf("delete %v, want the two oldest beyond 3 kept", got)
	}
	if !slices.Equal(ch.Missing, []string{"gone"}) {
		t.Fatalf("missing %v", ch.Missing)
	}
}

func TestPlanKeepsSpecRevision(t *testing.T) {
	ro := rollout()
	owned := map[string]*appsv1.ReplicaSet{"v1": existing(ro, "v1", 3, time.Hour), "v2": existing(ro, "v2", 1, 0)}
	// Aborted: only stable is scaled; the canary (the spec's revision)
	// goes to zero but stays for a retry, even with no history kept.
	ch := Plan(ro, owned, []engine.Scale{{Revision: "v1", Replicas: 3}}, "v2", 0)
	if len(ch.Scale) != 1 || ch.Scale[0].ReplicaSet.Name != "web-v2" || ch.Scale[0].Replicas != 0 || len(ch.Delete) != 0 {
		t.Fatalf("changes %+v: want web-v2 scaled to 0 and kept", ch)
	}
}

func TestOwnedAndReadiness(t *testing.T) {
	ro := rollout()
	mine := existing(ro, "v1", 3, 0)
	mine.Status.AvailableReplicas = 2
	foreign := existing(ro, "v2", 1, 0)
	foreign.OwnerReferences[0].UID = "other"
	unlabelled := existing(ro, "v3", 1, 0)
	delete(unlabelled.Labels, LabelRevision)
	owned := Owned(ro, []appsv1.ReplicaSet{*mine, *foreign, *unlabelled})
	if len(owned) != 1 || owned["v1"] == nil {
		t.Fatalf("owned %v, want v1 only", owned)
	}
	if w := Readiness(owned, "v1", "v9"); w.StableAvailable != 2 || w.CanaryAvailable != 0 {
		t.Fatalf("readiness %+v", w)
	}
}
