package gitapply

import (
	"errors"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/gitsync"
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
