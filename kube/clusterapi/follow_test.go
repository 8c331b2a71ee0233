package clusterapi

import (
	"context"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/kube/workload"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
)

// Follow signals a change of the Rollout followed and of its ReplicaSets
// as the API server's watch delivers it, and Get then reads the change.
func TestFollowSignalsRolloutAndReplicaSetChanges(t *testing.T) {
	t.Parallel()
	c := admin(t)
	ns := newNamespace(t, c)
	ro := newRollout(t, c, ns, "reviews")
	b := backendAs(t, "follower", Options{ListNamespace: ns})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changes, err := b.Follow(ctx, ns, "reviews")
	if err != nil {
		t.Fatal(err)
	}
	next := func(what string) {
		t.Helper()
		select {
		case _, ok := <-changes:
			if !ok {
				t.Fatalf("%s: the follow ended", what)
			}
		case <-time.After(30 * time.Second): // a guard against a hang, not a measure
			t.Fatalf("%s: no change signalled", what)
		}
	}

	ro.Status.StepDisplay = "3/3"
	if err := c.Status().Update(ctx, ro); err != nil {
		t.Fatal(err)
	}
	next("a status write")
	got, err := b.Get(ctx, ns, "reviews")
	if err != nil || got.Status.StepDisplay != "3/3" {
		t.Fatalf("after the signal: step %q, %v: want 3/3", got.Status.StepDisplay, err)
	}

	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "reviews-bbb", Labels: map[string]string{workload.LabelRevision: "bbb", "app": "reviews"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: v1alpha1.GroupVersion.String(), Kind: "Rollout", Name: "reviews", UID: ro.UID}}},
		Spec: appsv1.ReplicaSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "reviews"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "reviews"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "reviews:v2"}}},
			},
		},
	}
	// Drain what the status write may have signalled twice, then the
	// ReplicaSet's creation must signal on its own.
	select {
	case <-changes:
	default:
	}
	if err := c.Create(ctx, rs); err != nil {
		t.Fatal(err)
	}
	next("a ReplicaSet of the Rollout created")
}

// GitSources tells a GitSource's rejected commit, its problems and what
// stays in force, as status --require-synced needs them.
func TestGitSourcesTellsARejection(t *testing.T) {
	t.Parallel()
	c := admin(t)
	ns := newNamespace(t, c)
	ctx := context.Background()
	gs := &v1alpha1.GitSource{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "books"},
		Spec:       v1alpha1.GitSourceSpec{URL: "https://git.example.com/books.git", Ref: v1alpha1.GitRef{Branch: "main"}},
	}
	if err := c.Create(ctx, gs); err != nil {
		t.Fatal(err)
	}
	gs.Status = v1alpha1.GitSourceStatus{
		LastAppliedCommit: "1111111111111111111111111111111111111111", LastAttemptedCommit: "2222222222222222222222222222222222222222",
		Problems:     []v1alpha1.GitSourceProblem{{File: "apps/a.yaml", Line: 7, Field: "spec.strategy.canary.steps[0].setWeight", Reason: "must be at most 100"}},
		ProblemCount: 3,
	}
	meta.SetStatusCondition(&gs.Status.Conditions, metav1.Condition{Type: v1alpha1.GitSourceReady, Status: metav1.ConditionFalse,
		Reason: v1alpha1.GitSourceCommitRejected, Message: "rejected"})
	if err := c.Status().Update(ctx, gs); err != nil {
		t.Fatal(err)
	}
	srcs, err := backendAs(t, "git-reader", Options{ListNamespace: ns}).GitSources(ctx)
	if err != nil || len(srcs) != 1 {
		t.Fatalf("%d sources, %v: want the one", len(srcs), err)
	}
	g := srcs[0].GitSyncStatus
	why := rolloutapi.NotSynced(&g)
	want := "head commit 222222222222 was rejected (apps/a.yaml:7: spec.strategy.canary.steps[0].setWeight: must be at most 100, and 2 more); 111111111111 stays in force"
	if g.Source != ns+"/books" || why != want {
		t.Errorf("source %q: %q\nwant %q", g.Source, why, want)
	}
}
