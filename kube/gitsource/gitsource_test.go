package gitsource

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/gitsync"
	"github.com/sluicehq/sluice/internal/gittest"
	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/kube/gitapply"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// A GitSource applies its commit to its own namespace with provenance and
// reports it; a commit with an invalid manifest, or one that names another
// namespace, is rejected whole with its problems in status, and the
// objects stay as the last good commit made them.
func TestGitSourceAppliesAndRejects(t *testing.T) {
	t.Parallel()
	c := env.Client(t)
	ns := kubetest.Namespace(t, c, "gs-apply-")
	r, first := newRepo(t, map[string]string{
		"apps/reviews.yaml":  rolloutYAML("reviews", "reviews:v1", ""),
		"apps/analysis.yaml": templateYAML,
		"other/ignored.yaml": rolloutYAML("ignored", "x:v1", ""),
	})
	controllerFor(t, ns)
	newGitSource(t, c, ns, "books", r.URL())

	gs := waitReady(t, c, ns, "books", metav1.ConditionTrue, v1alpha1.GitSourceSynced, func(gs *v1alpha1.GitSource) bool {
		return gs.Status.LastAppliedCommit == first
	})
	if gs.Status.LastAttemptedCommit != first || gs.Status.LastSyncTime == nil || len(gs.Status.Problems) != 0 {
		t.Errorf("status %+v: want commit %s attempted and fetched, no problems", gs.Status, first)
	}
	if !containsString(gs.Finalizers, Finalizer) {
		t.Errorf("finalizers %v: want %s", gs.Finalizers, Finalizer)
	}
	id := gitapply.GitSourceID(ns, "books")
	for _, obj := range []client.Object{&v1alpha1.Rollout{}, &v1alpha1.AnalysisTemplate{}} {
		name := map[bool]string{true: "reviews", false: "success-rate"}[isRollout(obj)]
		get(t, c, ns, name, obj)
		an := obj.GetAnnotations()
		if an[gitapply.AnnotationSource] != id || an[gitsync.AnnotationCommit] != first || an[gitsync.AnnotationRepository] != r.URL() {
			t.Errorf("%T %s annotations %v: want source %s, commit %s", obj, name, an, id, first)
		}
	}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "ignored"}, &v1alpha1.Rollout{}); !apierrors.IsNotFound(err) {
		t.Errorf("Rollout outside spec.path: got %v, want not found", err)
	}

	for _, tc := range []struct {
		name, file, content string
		want                v1alpha1.GitSourceProblem
	}{
		{"invalid manifest", "apps/reviews.yaml", strings.Replace(rolloutYAML("reviews", "reviews:v2", ""), "setWeight: 30", "setWeight: 130", 1),
			v1alpha1.GitSourceProblem{File: "apps/reviews.yaml", Line: 18, Field: "spec.strategy.canary.steps[0].setWeight"}},
		{"another namespace", "apps/intruder.yaml", rolloutYAML("intruder", "x:v1", "  namespace: kube-system\n"),
			v1alpha1.GitSourceProblem{File: "apps/intruder.yaml", Line: 5, Field: "metadata.namespace"}},
	} {
		bad := r.Push(tc.name, map[string]string{tc.file: tc.content})
		requestSync(t, c, ns, "books")
		gs := waitReady(t, c, ns, "books", metav1.ConditionFalse, v1alpha1.GitSourceCommitRejected, func(gs *v1alpha1.GitSource) bool {
			return gs.Status.LastAttemptedCommit == bad
		})
		st := gs.Status
		if st.LastAppliedCommit != first || st.ProblemCount != 1 || len(st.Problems) != 1 || !strings.Contains(st.LastAttemptMessage, first) {
			t.Fatalf("%s: status %+v: want one problem, %s still applied and named in the message", tc.name, st, first)
		}
		if p := st.Problems[0]; p.File != tc.want.File || p.Line != tc.want.Line || p.Field != tc.want.Field || p.Reason == "" {
			t.Errorf("%s: problem %+v, want %+v", tc.name, p, tc.want)
		}
		ro := get(t, c, ns, "reviews", &v1alpha1.Rollout{})
		if img := ro.Spec.Template.Spec.Containers[0].Image; img != "reviews:v1" || ro.Annotations[gitsync.AnnotationCommit] != first {
			t.Errorf("%s: Rollout image %s, commit %s: want the last good commit's", tc.name, img, ro.Annotations[gitsync.AnnotationCommit])
		}
		// Undo, for the next case.
		r.Push("undo", map[string]string{tc.file: map[bool]string{true: rolloutYAML("reviews", "reviews:v1", ""), false: ""}[tc.file == "apps/reviews.yaml"]})
	}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: "kube-system", Name: "intruder"}, &v1alpha1.Rollout{}); !apierrors.IsNotFound(err) {
		t.Errorf("Rollout in another namespace: got %v, want not found", err)
	}
}

func isRollout(obj client.Object) bool { _, ok := obj.(*v1alpha1.Rollout); return ok }

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Two GitSources of one namespace that both declare a Rollout: the one
// holding it keeps it, the other reports a Conflict and applies the rest;
// its removing the Rollout from its Git retires nothing. A GitSource of
// the same repository in another namespace applies its own copy, and
// deleting it marks only that copy removed from Git, deletes only its
// template, and releases the GitSource.
func TestSourcesNeverRetireEachOther(t *testing.T) {
	t.Parallel()
	c := env.Client(t)
	ns, other := kubetest.Namespace(t, c, "gs-two-"), kubetest.Namespace(t, c, "gs-two-")
	books, booksFirst := newRepo(t, map[string]string{"apps/reviews.yaml": rolloutYAML("reviews", "reviews:v1", ""), "apps/analysis.yaml": templateYAML})
	shop, _ := newRepo(t, map[string]string{
		"apps/reviews.yaml": rolloutYAML("reviews", "reviews:shop", ""),
		"apps/ratings.yaml": rolloutYAML("ratings", "ratings:v1", ""),
	})
	sources := controllerFor(t, ns, other)

	newGitSource(t, c, ns, "books", books.URL())
	waitReady(t, c, ns, "books", metav1.ConditionTrue, v1alpha1.GitSourceSynced, nil)
	newGitSource(t, c, ns, "shop", shop.URL())
	gs := waitReady(t, c, ns, "shop", metav1.ConditionFalse, v1alpha1.GitSourceConflict, nil)
	if msg := readyCondition(gs).Message; !strings.Contains(msg, "Rollout "+ns+"/reviews") || !strings.Contains(msg, "GitSource "+ns+"/books") {
		t.Errorf("Conflict message %q: want the Rollout and its owner named", msg)
	}
	ro := get(t, c, ns, "reviews", &v1alpha1.Rollout{})
	if img := ro.Spec.Template.Spec.Containers[0].Image; img != "reviews:v1" || gitapply.SourceOf(ro) != gitapply.GitSourceID(ns, "books") {
		t.Errorf("reviews: image %s, source %s: want books' own", img, gitapply.SourceOf(ro))
	}
	if gitapply.SourceOf(get(t, c, ns, "ratings", &v1alpha1.Rollout{})) != gitapply.GitSourceID(ns, "shop") {
		t.Error("ratings: want applied by shop despite the conflict on reviews")
	}

	// shop gives reviews up: books' Rollout is not shop's to retire.
	shopNext := shop.Push("drop reviews", map[string]string{"apps/reviews.yaml": ""})
	requestSync(t, c, ns, "shop")
	waitReady(t, c, ns, "shop", metav1.ConditionTrue, v1alpha1.GitSourceSynced, func(gs *v1alpha1.GitSource) bool {
		return gs.Status.LastAppliedCommit == shopNext
	})
	if an := get(t, c, ns, "reviews", &v1alpha1.Rollout{}).Annotations; an[gitsync.AnnotationRemovedFromGit] != "" {
		t.Errorf("books' reviews marked removed by shop: %v", an)
	}

	// The same repository in another namespace, then deleted.
	newGitSource(t, c, other, "books", books.URL())
	waitReady(t, c, other, "books", metav1.ConditionTrue, v1alpha1.GitSourceSynced, nil)
	if err := c.Delete(context.Background(), &v1alpha1.GitSource{ObjectMeta: metav1.ObjectMeta{Namespace: other, Name: "books"}}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "the deleted GitSource released and gone", func() bool {
		err := c.Get(context.Background(), client.ObjectKey{Namespace: other, Name: "books"}, &v1alpha1.GitSource{})
		return apierrors.IsNotFound(err)
	})
	if got := get(t, c, other, "reviews", &v1alpha1.Rollout{}).Annotations[gitsync.AnnotationRemovedFromGit]; got != booksFirst {
		t.Errorf("%s/reviews removal mark %q: want the last commit applied, %s", other, got, booksFirst)
	}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: other, Name: "success-rate"}, &v1alpha1.AnalysisTemplate{}); !apierrors.IsNotFound(err) {
		t.Errorf("%s/success-rate: got %v, want deleted with its GitSource", other, err)
	}
	if an := get(t, c, ns, "reviews", &v1alpha1.Rollout{}).Annotations; an[gitsync.AnnotationRemovedFromGit] != "" {
		t.Errorf("%s/reviews marked removed by another namespace's GitSource: %v", ns, an)
	}
	get(t, c, ns, "success-rate", &v1alpha1.AnalysisTemplate{})
	if sources.Get(gitapply.GitSourceID(other, "books")) != nil {
		t.Error("the deleted GitSource's applier is still registered")
	}
	if sources.Get(gitapply.GitSourceID(ns, "books")) == nil {
		t.Error("the remaining GitSource's applier is not registered")
	}
}

// Credentials come from spec.secretRef: refused ones make AuthFailed, and
// a corrected Secret is picked up at the next reconcile (here: a
// requested sync), over smart HTTP with basic authentication.
func TestSecretRefBasicAuth(t *testing.T) {
	t.Parallel()
	c := env.Client(t)
	ns := kubetest.Namespace(t, c, "gs-auth-")
	r, first := newRepo(t, map[string]string{"apps/reviews.yaml": rolloutYAML("reviews", "reviews:v1", "")})
	srv := gittest.ServeHTTP(t, r.Root, "books", "s3cret")
	controllerFor(t, ns)

	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "git"},
		Data:       map[string][]byte{KeyUsername: []byte("books"), KeyPassword: []byte("wrong")},
	}
	if err := c.Create(context.Background(), secret); err != nil {
		t.Fatal(err)
	}
	newGitSource(t, c, ns, "books", srv.URL+"/repo.git", func(gs *v1alpha1.GitSource) {
		gs.Spec.SecretRef = &v1alpha1.LocalObjectReference{Name: "git"}
	})
	waitReady(t, c, ns, "books", metav1.ConditionFalse, v1alpha1.GitSourceAuthFailed, nil)

	secret.Data[KeyPassword] = []byte("s3cret")
	if err := c.Update(context.Background(), secret); err != nil {
		t.Fatal(err)
	}
	requestSync(t, c, ns, "books")
	waitReady(t, c, ns, "books", metav1.ConditionTrue, v1alpha1.GitSourceSynced, func(gs *v1alpha1.GitSource) bool {
		return gs.Status.LastAppliedCommit == first
	})
	get(t, c, ns, "reviews", &v1alpha1.Rollout{})
}

// A GitSource whose Secret does not exist, or whose URL the controller
// refuses, is InvalidSource with the reason.
func TestInvalidSource(t *testing.T) {
	t.Parallel()
	c := env.Client(t)
	ns := kubetest.Namespace(t, c, "gs-invalid-")
	controllerFor(t, ns)
	newGitSource(t, c, ns, "nosecret", "https://git.example.com/books.git", func(gs *v1alpha1.GitSource) {
		gs.Spec.SecretRef = &v1alpha1.LocalObjectReference{Name: "missing"}
	})
	gs := waitReady(t, c, ns, "nosecret", metav1.ConditionFalse, v1alpha1.GitSourceInvalidSource, nil)
	if msg := readyCondition(gs).Message; !strings.Contains(msg, "Secret "+ns+"/missing not found") {
		t.Errorf("message %q: want the missing Secret named", msg)
	}
}
