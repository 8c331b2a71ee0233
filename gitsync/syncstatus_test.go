package gitsync

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout/manifest"
)

// A rejected commit stays reported until a later commit applies: a fetch
// that fails after the rejection says so in Err and Message, but keeps
// the rejection and its problems; a good push clears it.
func TestRejectionStandsUntilALaterCommitApplies(t *testing.T) {
	t.Parallel()
	r := newRemote(t)
	srv := serveHTTP(t, r.Root)
	good := r.Push("good", map[string]string{"apps/a.yaml": rollout("a", "v1")})
	s, _ := newTestSyncer(t, Source{URL: srv.repoURL(), Branch: "main", Path: "apps"})
	if st := s.Sync(context.Background()); st.Err != nil {
		t.Fatal(st.Err)
	}
	bad := r.Push("bad", map[string]string{"apps/a.yaml": strings.Replace(rollout("a", "v2"), "setWeight: 50", "setWeight: 150", 1)})
	rejected := s.Sync(context.Background())

	srv.down.Store(true)
	unreachable := s.Sync(context.Background())
	srv.down.Store(false)

	fixed := r.Push("fixed", map[string]string{"apps/a.yaml": rollout("a", "v3")})
	applied := s.Sync(context.Background())

	for _, tc := range []struct {
		name              string
		st                State
		head, inForce     string
		rejected, message bool
		inSync            bool
	}{
		{"rejected", rejected, bad, good, true, false, false},
		{"then unreachable", unreachable, bad, good, true, true, false},
		{"then fixed", applied, fixed, fixed, false, false, true},
	} {
		g := tc.st.SyncStatus()
		switch {
		case g.HeadCommit != tc.head || g.AppliedCommit != tc.inForce:
			t.Errorf("%s: head %s, applied %s: want %s, %s", tc.name, g.HeadCommit, g.AppliedCommit, tc.head, tc.inForce)
		case (g.Rejected != nil) != tc.rejected:
			t.Errorf("%s: rejected %+v, want rejected %v", tc.name, g.Rejected, tc.rejected)
		case (g.Message != "") != tc.message:
			t.Errorf("%s: message %q, want one: %v", tc.name, g.Message, tc.message)
		case g.InSync() != tc.inSync:
			t.Errorf("%s: in sync %v, want %v", tc.name, g.InSync(), tc.inSync)
		}
		if g.Rejected == nil {
			continue
		}
		rj := g.Rejected
		if rj.Commit != bad || rj.ProblemCount != 1 || len(rj.Problems) != 1 || rj.At == nil {
			t.Errorf("%s: rejection %+v: want %s with its one problem and a time", tc.name, rj, bad)
			continue
		}
		if p := rj.Problems[0]; p.File != "apps/a.yaml" || !strings.Contains(p.Field, "setWeight") || p.Line < 1 {
			t.Errorf("%s: problem %+v: want apps/a.yaml, the setWeight field and a line", tc.name, p)
		}
	}
	if a, b := rejected.RejectedAt, unreachable.RejectedAt; !a.Equal(b) || a.IsZero() {
		t.Errorf("rejected at %v, then %v: want the first judgement's time kept", a, b)
	}
}

// Text from Git is bounded and its control characters escaped before it
// goes into status.
func TestRejectionOfBoundsText(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 5000)
	e := &Error{Kind: KindInvalidCommit, Commit: "c0ffee", Problems: make([]manifest.Problem, 15)}
	for i := range e.Problems {
		e.Problems[i] = manifest.Problem{File: "a\x1b[31m.yaml", Line: i + 1, Field: long, Reason: "bad\nSluice: promoted"}
	}
	r := RejectionOf(e, time.Unix(100, 5))
	if len(r.Problems) != 10 || r.ProblemCount != 15 {
		t.Fatalf("%d problems of %d: want the first 10 of 15", len(r.Problems), r.ProblemCount)
	}
	p := r.Problems[0]
	if strings.ContainsAny(p.File+p.Reason, "\x1b\n") || len(p.Field) > 512 {
		t.Errorf("problem %q %q (%d bytes of field): want control characters escaped, the field cut", p.File, p.Reason, len(p.Field))
	}
	if r.At.Nanosecond() != 0 {
		t.Errorf("at %v: want whole seconds, as the API server keeps them", r.At)
	}
}
