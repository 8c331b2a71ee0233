package gitsync

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/internal/gittest"
	"github.com/sluicehq/sluice/internal/poll"
)

// refusedSetup is a Syncer that applied a good commit and then had its
// fetch of a 2 MiB push stopped by a 256 KiB pack limit, over smart HTTP.
type refusedSetup struct {
	r     *remote
	srv   *gitServer
	src   Source
	s     *Syncer
	reg   *prometheus.Registry
	first State // the refusal
	good  string
	big   string
}

func newRefusedSetup(t *testing.T) *refusedSetup {
	t.Helper()
	r := newRemote(t)
	good := r.Push("good", map[string]string{"apps/a.yaml": rollout("a", "v1")})
	srv := serveHTTP(t, r.Root)
	src := Source{URL: srv.repoURL(), Branch: "main", Path: "apps", FetchLimits: FetchLimits{MaxPackBytes: 256 << 10}}
	s, reg := newTestSyncer(t, src)
	if st := s.Sync(context.Background()); st.Err != nil || appliedSHA(st) != good {
		t.Fatalf("applied %s, err %v; want %s", appliedSHA(st), st.Err, good)
	}
	r.WriteRandom("assets/big.bin", 2<<20, 7)
	big := r.Push("big", map[string]string{"apps/a.yaml": rollout("a", "v2")})
	st := s.Sync(context.Background())
	limitError(t, st, LimitMaxPackBytes)
	if srv.packBytes.Load() < 256<<10 {
		t.Fatalf("served %d pack bytes: the refused fetch did not download up to the limit", srv.packBytes.Load())
	}
	return &refusedSetup{r: r, srv: srv, src: src, s: s, reg: reg, first: st, good: good, big: big}
}

// served is what the server has answered so far.
type served struct{ adverts, packRequests, packBytes int64 }

// served waits until no pack is being sent and returns what was.
func (rs *refusedSetup) served(t *testing.T) served {
	t.Helper()
	poll.Until(t, "the server done sending packs", func() bool { return rs.srv.packsServing.Load() == 0 })
	return served{rs.srv.adverts.Load(), rs.srv.packRequests.Load(), rs.srv.packBytes.Load()}
}

// pollRefused syncs s once and checks that it reported the first
// refusal again after asking only for the remote's refs: one
// advertisement, no pack.
func (rs *refusedSetup) pollRefused(t *testing.T, s *Syncer) State {
	t.Helper()
	before := rs.served(t)
	st := s.Sync(context.Background())
	after := rs.served(t)
	if errText(st.Err) != errText(rs.first.Err) {
		t.Errorf("err %v: want the same refusal, %v", st.Err, rs.first.Err)
	}
	if appliedSHA(st) != rs.good {
		t.Errorf("applied %s, want the last good commit %s", appliedSHA(st), rs.good)
	}
	if after.packRequests != before.packRequests || after.packBytes != before.packBytes {
		t.Errorf("the poll downloaded again: pack requests %d → %d, pack bytes %d → %d",
			before.packRequests, after.packRequests, before.packBytes, after.packBytes)
	}
	if after.adverts != before.adverts+1 {
		t.Errorf("advertisements %d → %d: want the one of an ls-remote", before.adverts, after.adverts)
	}
	if left := tmpObjectsLeft(t, s); len(left) > 0 {
		t.Errorf("left %v", left)
	}
	return st
}

// A fetch stopped by a limit is not downloaded again while the remote
// advertises the same tip: each poll costs one ref advertisement, reports
// the same refusal (no new status, no new error count), and a new tip is
// fetched again.
func TestRefusedFetchIsNotDownloadedAgain(t *testing.T) {
	t.Parallel()
	rs := newRefusedSetup(t)
	var gerr *Error
	if !errors.As(rs.first.Err, &gerr) || gerr.Commit != rs.big {
		t.Errorf("refusal %v: want it to name the refused tip %s", rs.first.Err, rs.big)
	}
	if !strings.Contains(rs.first.Err.Error(), "not downloaded again until branch main changes") {
		t.Errorf("refusal %q: want it to say when it is downloaded again", rs.first.Err)
	}
	for range 3 {
		if st := rs.pollRefused(t, rs.s); st.Generation != rs.first.Generation {
			t.Errorf("generation %d → %d: a remembered refusal changed the state", rs.first.Generation, st.Generation)
		}
	}
	if v := metricValue(t, rs.reg, "sluice_gitsync_errors_total", "kind", "limit"); v != 1 {
		t.Errorf("sluice_gitsync_errors_total{kind=limit} = %v, want 1", v)
	}

	// The branch moves, the big file still in its history: fetched, and
	// refused again for the new tip.
	before := rs.served(t)
	next := rs.r.Push("next", map[string]string{"apps/a.yaml": rollout("a", "v3")})
	st := rs.s.Sync(context.Background())
	limitError(t, st, LimitMaxPackBytes)
	if !errors.As(st.Err, &gerr) || gerr.Commit != next {
		t.Errorf("refusal %v: want it to name the new tip %s", st.Err, next)
	}
	if after := rs.served(t); after.packRequests != before.packRequests+1 || after.packBytes <= before.packBytes {
		t.Errorf("pack requests %d → %d, bytes %d → %d: want the new tip downloaded",
			before.packRequests, after.packRequests, before.packBytes, after.packBytes)
	}
}

// The refusal is kept beside the mirror: a restart with the same limits
// does not download it again; other limits do, and a fetch that goes
// through forgets it.
func TestRefusedFetchAcrossRestartsAndLimits(t *testing.T) {
	t.Parallel()
	rs := newRefusedSetup(t)
	reuse := func(o *Options) { o.MirrorDir = rs.s.opts.MirrorDir }
	restarted, reg := newTestSyncer(t, rs.src, reuse)
	st := rs.pollRefused(t, restarted)
	if v := metricValue(t, reg, "sluice_gitsync_errors_total", "kind", "limit"); v != 1 {
		t.Errorf("after the restart: sluice_gitsync_errors_total{kind=limit} = %v, want 1 (reported once)", v)
	}
	if v := metricValue(t, reg, "sluice_gitsync_error", "kind", "limit"); v != 1 {
		t.Errorf("after the restart: sluice_gitsync_error{kind=limit} = %v, want 1", v)
	}
	if st.Applied == nil {
		t.Error("after the restart nothing is applied: want the last good commit")
	}

	raised := rs.src
	raised.FetchLimits.MaxPackBytes = 16 << 20
	before := rs.served(t)
	s, _ := newTestSyncer(t, raised, reuse)
	if st := s.Sync(context.Background()); st.Err != nil || appliedSHA(st) != rs.big {
		t.Fatalf("with a higher limit: applied %s, err %v; want %s", appliedSHA(st), st.Err, rs.big)
	}
	if after := rs.served(t); after.packRequests != before.packRequests+1 {
		t.Errorf("pack requests %d → %d: want the refused tip downloaded under the new limits", before.packRequests, after.packRequests)
	}
	if _, err := os.Stat(filepath.Join(s.mirror.dir, refusedFile)); !os.IsNotExist(err) {
		t.Errorf("%s after a fetch that went through: %v; want it deleted", refusedFile, err)
	}
}

// Over each transport the remote's refs are read without a pack and the
// refusal stands.
func TestRefusedFetchRememberedOverEachTransport(t *testing.T) {
	t.Parallel()
	for _, protocol := range limitTransports {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			r := newRemote(t)
			r.Push("good", map[string]string{"apps/a.yaml": rollout("a", "v1")})
			src := limitSource(t, r, protocol)
			src.Tag, src.Path = "v1", "apps"
			src.FetchLimits = FetchLimits{MaxBlobBytes: 64 << 10}
			r.WriteRandom("assets/big.bin", 100<<10, 8)
			tagged := r.Push("big", nil)
			gittest.Git(t, r.Work, "tag", "v1")
			gittest.Git(t, r.Work, "push", "-q", "origin", "v1")
			s, reg := newTestSyncer(t, src)
			first := s.Sync(context.Background())
			limitError(t, first, LimitMaxBlobBytes)
			var gerr *Error
			if !errors.As(first.Err, &gerr) || gerr.Commit != tagged {
				t.Errorf("refusal %v: want it to name %s", first.Err, tagged)
			}
			for range 2 {
				st := s.Sync(context.Background())
				if errText(st.Err) != errText(first.Err) || st.Generation != first.Generation {
					t.Errorf("err %v (generation %d): want the same refusal, %v (generation %d)", st.Err, st.Generation, first.Err, first.Generation)
				}
			}
			// A download refused again would count again.
			if v := metricValue(t, reg, "sluice_gitsync_errors_total", "kind", "limit"); v != 1 {
				t.Errorf("sluice_gitsync_errors_total{kind=limit} = %v, want 1", v)
			}
		})
	}
}
