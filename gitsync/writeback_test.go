package gitsync

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	sigsyaml "sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/internal/gittest"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// standaloneFile is a reviewed file: comments, another Rollout and a
// non-Sluice document must come through a revert byte for byte.
const standaloneFile = `# Reviews, standalone. CI bumps version and endpoints.
apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata:
  name: reviews
spec:
  service:
    name: reviews
    hosts: [reviews]
    port: 9080
  backend:
    version: v2 # the new release
    endpoints:
      - 127.0.0.1:9092
      - "127.0.0.1:9093"
    labels:
      zone: b # moved with v2
  strategy:
    canary:
      steps:
        - setWeight: 50
        - pause: {}
  rollback:
    gitRevert: true
---
apiVersion: v1
kind: ConfigMap
metadata: {name: not-ours}
data: {version: v2}
---
apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata: {name: ratings}
spec:
  service: {name: ratings, hosts: [ratings], port: 9080}
  backend: {version: v2, endpoints: ["127.0.0.1:9192"]}
  strategy: {canary: {steps: [{setWeight: 100}]}}
`

func standaloneRevert() RevertRequest {
	return RevertRequest{
		GitRevert: engine.GitRevert{
			Rollout:        "reviews",
			Namespace:      "default",
			StableRevision: "v1",
			StableBackend:  &v1alpha1.Backend{Version: "v1", Endpoints: []string{"127.0.0.1:9082", "127.0.0.1:9083"}, Labels: map[string]string{"zone": "a"}},
			FailedRevision: "v2",
			Reason:         v1alpha1.ReasonAnalysisFailed,
			Message:        "analysis run reviews-v2-1 failed: success-rate: 0.91 < 0.99",
		},
		Analysis: []v1alpha1.MetricSummary{{Name: "success-rate", Phase: v1alpha1.AnalysisFailed, LastValue: "0.91", Failed: 3, Successful: 1}},
	}
}

func revertedStandaloneFile() string {
	return strings.NewReplacer(
		"version: v2 # the new release", "version: v1 # the new release",
		"- 127.0.0.1:9092", "- 127.0.0.1:9082",
		`- "127.0.0.1:9093"`, `- "127.0.0.1:9083"`,
		"    labels:\n      zone: b # moved with v2\n", "    labels:\n      zone: a\n",
	).Replace(standaloneFile)
}

func TestRevertStandalone(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// concurrent, if set, pushes another change at that stage of the
		// write-back's push.
		concurrent string
		attempts   int
		// stableFromHistory drops StableBackend from the request, so the
		// endpoints must come from Git history.
		stableFromHistory bool
	}{
		{name: "clean push", attempts: 1},
		{name: "branch moves before the push", concurrent: "advertise", attempts: 2},
		{name: "branch moves during the push", concurrent: "receive", attempts: 2},
		{name: "stable backend from history", attempts: 1, stableFromHistory: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRemote(t)
			srv := serveHTTP(t, r.Root)
			r.Push("v1", map[string]string{"apps/reviews.yaml": revertedStandaloneFile(), "apps/other.yaml": rollout("other", "v1")})
			failed := r.Push("release v2", map[string]string{"apps/reviews.yaml": standaloneFile})
			s, reg := newTestSyncer(t, Source{URL: srv.repoURL(), Branch: "main", Path: "apps"}, func(o *Options) {
				o.WriteBack = WriteBackOptions{AuthorName: "Sluice Bot", AuthorEmail: "bot@sluice.test"}
			})
			if st := s.Sync(context.Background()); appliedSHA(st) != failed {
				t.Fatalf("applied %s, err %v", appliedSHA(st), st.Err)
			}
			var concurrent string
			if tt.concurrent != "" {
				srv.onNextPush(tt.concurrent, func() {
					concurrent = r.Push("someone else", map[string]string{"apps/other.yaml": rollout("other", "v2")})
				})
			}
			req := standaloneRevert()
			if tt.stableFromHistory {
				req.StableBackend = nil
			}

			res, err := s.Revert(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if res.Outcome != RevertPushed || res.Attempts != tt.attempts || res.File != "apps/reviews.yaml" {
				t.Errorf("result %+v; want pushed in %d attempts", res, tt.attempts)
			}
			if head := r.Head(); head != res.Commit {
				t.Fatalf("remote main is %s, want the revert %s", head, res.Commit)
			}
			parent := gittest.Git(t, r.Bare, "rev-parse", "main^")
			wantParent := failed
			if concurrent != "" {
				wantParent = concurrent
				if got := r.Read("apps/other.yaml"); !strings.Contains(got, "version: v2") {
					t.Error("the concurrent change was lost")
				}
			}
			if parent != wantParent {
				t.Errorf("revert's parent is %s, want %s", parent, wantParent)
			}
			if got, want := r.Read("apps/reviews.yaml")+"\n", revertedStandaloneFile(); got != want {
				t.Errorf("file after revert:\n%s\nwant:\n%s", got, want)
			}
			if files := gittest.Git(t, r.Bare, "diff", "--name-only", "main^", "main"); files != "apps/reviews.yaml" {
				t.Errorf("revert changed %q", files)
			}
			msg := gittest.Git(t, r.Bare, "log", "-1", "--format=%an <%ae>%n%B", "main")
			for _, want := range []string{
				"Sluice Bot <bot@sluice.test>", "sluice: roll back reviews to v1",
				"Revision v2 of Rollout reviews failed", "AnalysisFailed", "success-rate: 0.91 < 0.99",
				"- success-rate: Failed, last value 0.91 (successful 1, failed 3",
				"Sluice-Failed-Revision: v2", "Sluice-Stable-Revision: v1",
			} {
				if !strings.Contains(msg, want) {
					t.Errorf("commit message lacks %q:\n%s", want, msg)
				}
			}
			if v := metricValue(t, reg, "sluice_gitsync_write_backs_total", "outcome", "pushed"); v != 1 {
				t.Errorf("write-backs pushed = %v", v)
			}
			// The next sync applies the revert like any commit.
			st := s.Sync(context.Background())
			d, _ := st.Applied.Lookup(ObjectRef{Kind: "Rollout", Name: "reviews"})
			if appliedSHA(st) != res.Commit || d.Rollout.Spec.Backend.Version != "v1" {
				t.Errorf("after revert: applied %s, version %s", appliedSHA(st), d.Rollout.Spec.Backend.Version)
			}
		})
	}
}

func TestRevertRefusedPush(t *testing.T) {
	t.Parallel()
	r := newRemote(t)
	srv := serveHTTP(t, r.Root)
	failed := r.Push("v2", map[string]string{"reviews.yaml": standaloneFile})
	// A protected branch: the server refuses every update from now on.
	hook := filepath.Join(r.Bare, "hooks", "pre-receive")
	if err := os.WriteFile(hook, []byte("#!/bin/sh\necho 'main is protected: open a merge request' >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	s, reg := newTestSyncer(t, Source{URL: srv.repoURL(), Branch: "main"})
	res, err := s.Revert(context.Background(), standaloneRevert())
	if KindOf(err) != KindPushRejected || res.Attempts != 1 || res.Outcome != "" {
		t.Fatalf("err %v (kind %q), attempts %d; want push_rejected after 1", err, KindOf(err), res.Attempts)
	}
	if !strings.Contains(err.Error(), "pre-receive hook declined") {
		t.Errorf("error does not give the remote's reason: %v", err)
	}
	if r.Head() != failed {
		t.Error("the remote branch moved")
	}
	if v := metricValue(t, reg, "sluice_gitsync_errors_total", "kind", "push_rejected"); v != 1 {
		t.Errorf("errors_total{push_rejected} = %v", v)
	}
}

func TestRevertGivesUpWhenBranchKeepsMoving(t *testing.T) {
	t.Parallel()
	r := newRemote(t)
	srv := serveHTTP(t, r.Root)
	r.Push("v2", map[string]string{"reviews.yaml": standaloneFile})
	s, _ := newTestSyncer(t, Source{URL: srv.repoURL(), Branch: "main"}, func(o *Options) { o.WriteBack.MaxAttempts = 1 })
	srv.onNextPush("receive", func() { r.Push("moving", map[string]string{"x.txt": "x"}) })
	_, err := s.Revert(context.Background(), standaloneRevert())
	if KindOf(err) != KindConflict {
		t.Fatalf("err %v, want conflict", err)
	}
	if strings.Contains(r.Read("reviews.yaml"), "version: v1") {
		t.Error("a revert landed")
	}
}

func TestRevertOutcomes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		file    string
		src     func(*remote) Source
		outcome RevertOutcome
		kind    ErrorKind
	}{
		{"already stable", revertedStandaloneFile(), nil, RevertUnchanged, ""},
		{"superseded by a newer push", strings.Replace(standaloneFile, "version: v2 #", "version: v3 #", 1), nil, RevertSuperseded, ""},
		{"rollout removed", rollout("other", "v1"), nil, RevertRemoved, ""},
		{"tag source", standaloneFile, func(r *remote) Source { return Source{URL: r.URL(), Tag: "v1"} }, "", KindConfig},
		{"edit would be invalid elsewhere in the file", standaloneFile + "---\napiVersion: sluice.dev/v1alpha1\nkind: Rollout\nmetadata: {name: broken}\nspec: {}\n", nil, "", KindWriteBack},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRemote(t)
			head := r.Push("c", map[string]string{"reviews.yaml": tt.file})
			gittest.Git(t, r.Work, "tag", "v1")
			gittest.Git(t, r.Work, "push", "-q", "origin", "v1")
			src := Source{URL: r.URL(), Branch: "main"}
			if tt.src != nil {
				src = tt.src(r)
			}
			s, _ := newTestSyncer(t, src)
			res, err := s.Revert(context.Background(), standaloneRevert())
			if KindOf(err) != tt.kind || res.Outcome != tt.outcome {
				t.Fatalf("outcome %q, err %v; want %q, kind %q", res.Outcome, err, tt.outcome, tt.kind)
			}
			if r.Head() != head {
				t.Error("something was pushed")
			}
		})
	}
}

// controllerFile renders a controller-mode Rollout; image and comment
// make the template's text differ between versions.
func controllerFile(image, comment string, replicas int) string {
	return `apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata:
  name: web
  namespace: shop
spec:
  service: {name: web, hosts: [web], port: 80}
  replicas: ` + string(rune('0'+replicas)) + `
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        # ` + comment + `
        - name: web
          image: ` + image + `
  strategy:
    canary:
      steps: [{setWeight: 20}, {pause: {}}]
`
}

// portsFile is controllerFile with a container port that names no
// protocol: the Rollout CRD defaults it to TCP.
func portsFile(image, comment string, replicas int) string {
	line := "          image: " + image + "\n"
	return strings.Replace(controllerFile(image, comment, replicas), line, line+"          ports:\n            - containerPort: 8080\n", 1)
}

// rawRevision hashes the Rollout in file as written, without the CRD's
// defaults.
func rawRevision(t *testing.T, file string) string {
	t.Helper()
	var ro v1alpha1.Rollout
	if err := sigsyaml.UnmarshalStrict([]byte(file), &ro); err != nil {
		t.Fatal(err)
	}
	rev, err := engine.DesiredRevision(&ro.Spec)
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

// clusterRevision is the revision the controller names for the Rollout in
// file: the hash of the template as the API server stores it, with the
// CRD's default spelled out in the YAML (crds/revision_envtest_test.go
// checks the loader against the real server).
func clusterRevision(t *testing.T, file string) string {
	t.Helper()
	const port = "            - containerPort: 8080\n"
	return rawRevision(t, strings.Replace(file, port, port+"              protocol: TCP\n", 1))
}

func TestRevertControllerModeRestoresTemplateFromHistory(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		file func(image, comment string, replicas int) string
		// defaulted: the CRD's defaults change the template's hash, so
		// the stable revision is found only if Git's templates are
		// hashed with them, as the cluster's are.
		defaulted bool
	}{
		{"template without defaults", controllerFile, false},
		{"template with a port the CRD defaults", portsFile, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRemote(t)
			stable := tt.file("web:1.0", "stable since March", 3)
			r.Push("web 1.0", map[string]string{"web.yaml": stable})
			r.Push("scale", map[string]string{"web.yaml": tt.file("web:1.0", "stable since March", 4)})
			failing := tt.file("web:2.0", "new release", 5)
			r.Push("web 2.0", map[string]string{"web.yaml": failing})
			stableRev := clusterRevision(t, stable)
			if defaulted := rawRevision(t, stable) != stableRev; defaulted != tt.defaulted {
				t.Fatalf("the CRD's defaults change the revision: %v, want %v", defaulted, tt.defaulted)
			}

			s, _ := newTestSyncer(t, Source{URL: r.URL(), Branch: "main"})
			res, err := s.Revert(context.Background(), RevertRequest{GitRevert: engine.GitRevert{
				Rollout: "web", Namespace: "shop",
				StableRevision: stableRev, FailedRevision: clusterRevision(t, failing),
				Reason: v1alpha1.ReasonAnalysisFailed, Message: "analysis run web-2 failed",
			}})
			if err != nil || res.Outcome != RevertPushed {
				t.Fatalf("outcome %q, err %v", res.Outcome, err)
			}
			// The template is back as it was written (comment included);
			// the replica count, not a revision field, keeps its latest
			// value.
			want := tt.file("web:1.0", "stable since March", 5)
			if got := r.Read("web.yaml") + "\n"; got != want {
				t.Errorf("file after revert:\n%s\nwant:\n%s", got, want)
			}
			st := s.Sync(context.Background())
			d, _ := st.Applied.Lookup(ObjectRef{Kind: "Rollout", Namespace: "shop", Name: "web"})
			if st.Err != nil || d.Rollout == nil {
				t.Fatalf("sync after the revert: %v", st.Err)
			}
			if rev, _ := engine.DesiredRevision(&d.Rollout.Spec); rev != stableRev {
				t.Errorf("after the revert Git names revision %s, want the stable %s", rev, stableRev)
			}
		})
	}
}
