package gitsource

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/gitsync"
	"github.com/sluicehq/sluice/internal/gittest"
	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// countingGit serves a repository over smart HTTP and counts what its
// clients ask for: ref advertisements, and the requests for a pack.
type countingGit struct {
	url            string
	adverts, packs atomic.Int64
}

func serveCounting(t *testing.T, root string) *countingGit {
	t.Helper()
	backend := gittest.ServeHTTP(t, root, "", "")
	target, err := url.Parse(backend.URL)
	if err != nil {
		t.Fatal(err)
	}
	g := &countingGit{}
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/git-upload-pack"):
			g.packs.Add(1)
		case r.URL.Query().Get("service") == "git-upload-pack":
			g.adverts.Add(1)
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	g.url = srv.URL + "/repo.git"
	return g
}

// The operator's fetch limits (Reconciler.FetchLimits, from
// gitSources.limits) bound every GitSource's fetches: a push over them is
// CommitRejected with the limit named, the last good commit stays, and a
// sync asked for again while the branch has not moved reads the remote's
// refs only, without downloading the pack again.
func TestOperatorFetchLimits(t *testing.T) {
	t.Parallel()
	c := env.Client(t)
	ns := kubetest.Namespace(t, c, "gs-limits-")
	r, first := newRepo(t, map[string]string{"apps/reviews.yaml": rolloutYAML("reviews", "reviews:v1", "")})
	srv := serveCounting(t, r.Root)
	const limit = 256 << 10
	controllerWith(t, func(r *Reconciler) { r.FetchLimits = gitsync.FetchLimits{MaxPackBytes: limit} }, ns)
	newGitSource(t, c, ns, "books", srv.url)
	waitReady(t, c, ns, "books", metav1.ConditionTrue, v1alpha1.GitSourceSynced, func(gs *v1alpha1.GitSource) bool {
		return gs.Status.LastAppliedCommit == first
	})

	r.WriteRandom("assets/big.bin", 2<<20, 1)
	big := r.Push("big", map[string]string{"apps/reviews.yaml": rolloutYAML("reviews", "reviews:v2", "")})
	requestSync(t, c, ns, "books")
	gs := waitReady(t, c, ns, "books", metav1.ConditionFalse, v1alpha1.GitSourceCommitRejected, nil)
	msg := readyCondition(gs).Message
	for _, want := range []string{"maxPackBytes (262144 bytes)", big, "commit " + first + " stays in force"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q: want %q in it", msg, want)
		}
	}
	if gs.Status.LastAppliedCommit != first {
		t.Errorf("lastAppliedCommit %s, want %s", gs.Status.LastAppliedCommit, first)
	}

	// Syncs take turns, so a sync that downloaded would ask for its pack
	// before the next one asks for the refs: after three syncs' ref
	// requests, the first two asked for no pack.
	packs, adverts := srv.packs.Load(), srv.adverts.Load()
	for i := range 3 {
		requestSync(t, c, ns, "books")
		poll.Until(t, "the requested sync", func() bool { return srv.adverts.Load() > adverts+int64(i) })
	}
	if got := srv.packs.Load(); got != packs {
		t.Errorf("pack requests %d → %d: the refused push was downloaded again", packs, got)
	}
	gs = waitReady(t, c, ns, "books", metav1.ConditionFalse, v1alpha1.GitSourceCommitRejected, nil)
	if readyCondition(gs).Message != msg {
		t.Errorf("message %q, want the same refusal %q", readyCondition(gs).Message, msg)
	}
}
