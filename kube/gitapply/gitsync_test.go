package gitapply

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/gitsync"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// A Rollout's Git state in controller mode: the commit in force is the
// one applied to the cluster (not merely accepted by gitsync), a partial
// apply is the message, and a GitSource names itself.
func TestStateSyncStatus(t *testing.T) {
	t.Parallel()
	rejected := &gitsync.Error{Kind: gitsync.KindInvalidCommit, Commit: "bad", Err: errors.New("invalid")}
	for _, tc := range []struct {
		name, source string
		st           State
		wantSource   string
		applied      string
		inSync       bool
		message      string
	}{
		{"config source in sync", ConfigSourceID, State{Commit: "c1", Git: gitsync.State{Head: "c1"}}, "", "c1", true, ""},
		{"accepted, not applied yet", "team/books", State{Git: gitsync.State{Head: "c1"}}, "team/books", "", false, ""},
		{"applied in part", "team/books", State{Commit: "c1", Err: errors.New("forbidden"), Git: gitsync.State{Head: "c1"}}, "team/books", "c1", false, "applied in part, retrying: forbidden"},
		{"head rejected", ConfigSourceID, State{Commit: "c1", Git: gitsync.State{Head: "bad", Err: rejected, Rejected: rejected}}, "", "c1", false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := tc.st.SyncStatus(tc.source)
			if g.Source != tc.wantSource || g.AppliedCommit != tc.applied || g.InSync() != tc.inSync || !strings.HasPrefix(g.Message, tc.message) || (tc.message == "") != (g.Message == "") {
				t.Errorf("got %+v: want source %q, applied %q, in sync %v, message %q", g, tc.wantSource, tc.applied, tc.inSync, tc.message)
			}
		})
	}
}

// A rejected push changes no spec, yet every Rollout of the source is
// woken (StateWake) so that its status.gitSync says so; Sources.GitSync
// then gives the rejection for a Rollout of the source, nothing for one
// no source applied.
func TestStateWakeOnRejectedPush(t *testing.T) {
	f := newFixture(t, reviews())
	c, ns, r, good := f.c, f.ns, f.r, f.first
	a := newApplier(t, c, r, ns)
	srcs := NewSources(nil)
	wake := srcs.StateWake()
	if err := srcs.Add(a); err != nil {
		t.Fatal(err)
	}
	run(t, a)
	woken := func(what string) {
		t.Helper()
		deadline := time.After(30 * time.Second) // a guard against a hang, not a measure
		for {
			select {
			case ev := <-wake:
				if ev.Object.GetNamespace() == ns && ev.Object.GetName() == "reviews" {
					return
				}
			case <-deadline:
				t.Fatalf("%s: reviews not woken", what)
			}
		}
	}
	syncTo(t, a, good)
	woken("first commit applied")

	bad := r.Push("bad", map[string]string{"apps/reviews.yaml": strings.Replace(rolloutYAML("reviews", "", "reviews:v2"), "setWeight: 30", "setWeight: 130", 1)})
	syncTo(t, a, bad)
	woken("the rejected push")
	ro := get(t, c, ns, "reviews", &v1alpha1.Rollout{})
	g := srcs.GitSync(context.Background(), ro)
	if g == nil || g.HeadCommit != bad || g.AppliedCommit != good || g.Rejected == nil || g.Rejected.Commit != bad || len(g.Rejected.Problems) == 0 {
		t.Fatalf("git sync %+v: want head %s rejected with its problems, %s in force", g, bad, good)
	}
	if g := srcs.GitSync(context.Background(), &v1alpha1.Rollout{}); g != nil {
		t.Errorf("a Rollout no source applied: %+v, want nothing", g)
	}
}
