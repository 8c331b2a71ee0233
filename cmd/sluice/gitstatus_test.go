package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/gittest"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
)

// Against a real `sluice run` following a real Git repository: a push
// with an invalid manifest shows in `sluice status` (head rejected, its
// problem as file:line: field: reason, the last good commit in force) and
// fails --require-synced until a good push applies; then `status -w`
// follows a promotion through the server's event stream to its end.
//
// Not parallel: the token reaches the in-process server through the
// environment (t.Setenv).
func TestStatusTellsTheGitStateAndFollowsChanges(t *testing.T) {
	repo := gittest.New(t)
	manifest := func(version string, weight int) map[string]string {
		m := strings.Replace(fmt.Sprintf(crashRollout, version, 9001), "setWeight: 20", fmt.Sprintf("setWeight: %d", weight), 1)
		return map[string]string{"reviews.yaml": m}
	}
	good := repo.Push("reviews v1", manifest("v1", 20))

	const token = "git-status-test-token"
	t.Setenv("SLUICE_GIT_STATUS_TEST_TOKEN", token)
	httpAddr := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var logs syncBuffer
	go func() {
		done <- runContext(ctx, []string{"run", "--git-url", repo.URL(), "--git-interval", "1s",
			"--state-dir", filepath.Join(t.TempDir(), "state"), "--http-address", httpAddr, "--metrics-address", freePort(t),
			"--xds-address", freePort(t), "--ack-without-proxies", "--log-level", "warn",
			"--token-env", "SLUICE_GIT_STATUS_TEST_TOKEN"}, &logs, &logs)
	}()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("sluice run exited %d:\n%s", code, logs.String())
		}
	})
	server := "http://" + httpAddr
	c := &rolloutapi.Client{BaseURL: server, Token: token}
	status := func(args ...string) (int, string, string) {
		return runCLI(append([]string{"status", "--server", server, "--token", token}, args...)...)
	}
	synced := func(sha string) func(rolloutapi.Rollout) bool {
		return func(ro rolloutapi.Rollout) bool {
			return ro.Status.GitSync.InSync() && ro.Status.GitSync.AppliedCommit == sha
		}
	}

	waitRollout(t, c, "v1 in force", synced(good))
	for _, args := range [][]string{{"--require-synced"}, {"reviews", "--require-synced"}} {
		if code, out, errs := status(args...); code != 0 || !strings.Contains(out, "in sync: head "+rolloutapi.ShortSHA(good)) {
			t.Fatalf("status %v in sync: exit %d\n%s\n%s", args, code, out, errs)
		}
	}

	bad := repo.Push("reviews: setWeight 120", manifest("v2", 120))
	waitRollout(t, c, "the bad push rejected", func(ro rolloutapi.Rollout) bool {
		g := ro.Status.GitSync
		return g != nil && g.Rejected != nil && g.Rejected.Commit == bad
	})
	for _, tc := range []struct {
		args []string
		out  []string
	}{
		{[]string{"reviews", "--require-synced"}, []string{
			"Git:      " + rolloutapi.ShortSHA(good) + " reviews.yaml",
			"NOT SYNCED: head commit " + rolloutapi.ShortSHA(bad) + " was rejected",
			rolloutapi.ShortSHA(good) + " stays in force",
			"reviews.yaml:", "setWeight",
		}},
		{[]string{"--require-synced"}, []string{"rejected", "\nGit\n", "rejected " + rolloutapi.ShortSHA(bad)}},
	} {
		code, out, errs := status(tc.args...)
		if code != exitNotSynced || !strings.Contains(errs, "was rejected") {
			t.Errorf("status %v after the bad push: exit %d, stderr %q: want %d naming the rejection", tc.args, code, errs, exitNotSynced)
		}
		for _, want := range tc.out {
			if !strings.Contains(out, want) {
				t.Errorf("status %v after the bad push: no %q in\n%s", tc.args, want, out)
			}
		}
	}
	code, out, _ := status("reviews", "-o", "json")
	var ro rolloutapi.Rollout
	if err := json.Unmarshal([]byte(out), &ro); code != 0 || err != nil {
		t.Fatalf("status -o json: exit %d, %v", code, err)
	}
	if g := ro.Status.GitSync; g == nil || g.HeadCommit != bad || g.AppliedCommit != good || g.Rejected.ProblemCount != 1 {
		t.Errorf("status.gitSync %+v: want head %s rejected with one problem, %s applied", g, bad, good)
	}

	// A good push clears the rejection, and starts a rollout to v2 that
	// waits in its 1h pause.
	fixed := repo.Push("reviews v2", manifest("v2", 20))
	waitRollout(t, c, "v2 applied and waiting in the pause", func(ro rolloutapi.Rollout) bool {
		return synced(fixed)(ro) && ro.Status.CurrentStepIndex != nil && *ro.Status.CurrentStepIndex == 1 && ro.Status.StepAcknowledgedAt != nil
	})
	if code, out, errs := status("reviews", "--require-synced"); code != 0 || strings.Contains(out, "rejected") {
		t.Fatalf("status after the fix: exit %d\n%s\n%s", code, out, errs)
	}
	// --commit: the pipeline's own commit must be the one in force.
	for _, tc := range []struct {
		args []string
		code int
		errs string
	}{
		{[]string{"reviews", "--require-synced", "--commit", fixed}, 0, ""},
		{[]string{"--require-synced", "--commit", strings.ToUpper(fixed[:7])}, 0, ""},
		{[]string{"reviews", "--require-synced", "--commit", good}, exitNotSynced, "commit " + good + " is not in force; " + rolloutapi.ShortSHA(fixed) + " is"},
		{[]string{"reviews", "--commit", fixed}, 2, "--commit goes with --require-synced"},
		{[]string{"reviews", "--require-synced", "--commit", "main"}, 2, "want 4 to 40 hexadecimal digits"},
	} {
		code, _, errs := status(tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.errs) {
			t.Errorf("status %v: exit %d, stderr %q; want %d and %q", tc.args, code, errs, tc.code, tc.errs)
		}
	}

	// -w with a poll interval far longer than the test: every frame after
	// the first comes from the event stream.
	var watch syncBuffer
	watched := make(chan int, 1)
	go func() {
		var errs syncBuffer
		watched <- runContext(ctx, []string{"status", "--server", server, "--token", token, "reviews", "-w", "--interval", "1h", "--events", "0"}, &watch, &errs)
	}()
	waitFor(t, 30*time.Second, "the first frame", func() bool { return strings.Contains(watch.String(), "▶  2  pause 1h0m0s") })
	if _, err := c.Command(ctx, "default", "reviews", rolloutapi.CommandRequest{Kind: v1alpha1.CommandPromote}); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-watched:
		if code != 0 {
			t.Errorf("status -w ended %d, want 0 (promoted)", code)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("status -w did not follow the promotion to its end; it printed:\n%s", watch.String())
	}
	frames := strings.Split(watch.String(), "\n---\n")
	first, last := frames[0], frames[len(frames)-1]
	if !strings.Contains(first, "▶  2  pause 1h0m0s  (") || !strings.Contains(first, " left)") {
		t.Errorf("first frame: want the pause counting down:\n%s", first)
	}
	if len(frames) < 2 || !strings.Contains(last, "Phase:    Healthy") || !strings.Contains(last, "Stable:   v2") {
		t.Errorf("last of %d frames: want v2 promoted:\n%s", len(frames), last)
	}
}
