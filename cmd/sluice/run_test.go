package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
)

const crashRollout = `apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata:
  name: reviews
spec:
  service: {name: reviews, hosts: [reviews], port: 9080}
  backend: {version: %s, endpoints: ["127.0.0.1:%d"]}
  strategy:
    canary:
      steps:
      - setWeight: 20
      - pause: {duration: 1h}
      - setWeight: 50
`

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func gitCmd(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=dev", "GIT_AUTHOR_EMAIL=dev@example.com", "GIT_COMMITTER_NAME=dev", "GIT_COMMITTER_EMAIL=dev@example.com")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestRunSurvivesKill9 runs the real binary, kills it with SIGKILL in the
// middle of a rollout, and checks the restarted process continues exactly
// where it stopped: same step, same acknowledgement time, same plan, no
// step taken twice.
func TestRunSurvivesKill9(t *testing.T) {
	t.Parallel()
	bin := sluiceBinary(t)
	root := t.TempDir()
	remote, work := filepath.Join(root, "remote.git"), filepath.Join(root, "work")
	gitCmd(t, root, "init", "-q", "--bare", "-b", "main", remote)
	gitCmd(t, root, "clone", "-q", remote, work)
	push := func(version string, port int) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(work, "reviews.yaml"), fmt.Appendf(nil, crashRollout, version, port), 0o644); err != nil {
			t.Fatal(err)
		}
		gitCmd(t, work, "add", "-A")
		gitCmd(t, work, "commit", "-q", "-m", "reviews "+version)
		gitCmd(t, work, "push", "-q", "origin", "HEAD:main")
	}
	push("v1", 9001)

	httpAddr := freePort(t)
	args := []string{"run", "--git-url", "file://" + remote, "--git-interval", "1s", "--state-dir", filepath.Join(root, "state"),
		"--http-address", httpAddr, "--metrics-address", freePort(t), "--xds-address", freePort(t), "--ack-without-proxies", "--log-level", "warn",
		"--token-env", "SLUICE_RUN_TEST_TOKEN"}
	start := func() *exec.Cmd {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "SLUICE_RUN_TEST_TOKEN=crash-test-token")
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
		return cmd
	}
	c := &rolloutapi.Client{BaseURL: "http://" + httpAddr, Token: "crash-test-token"}
	get := func(what string, cond func(rolloutapi.Rollout) bool) rolloutapi.Rollout {
		t.Helper()
		return waitRollout(t, c, what, cond)
	}

	proc := start()
	get("v1 stable", func(ro rolloutapi.Rollout) bool { return ro.Status.StableRevision == "v1" })
	push("v2", 9002)
	before := get("the 1h pause", func(ro rolloutapi.Rollout) bool {
		return ro.Status.CurrentStepIndex != nil && *ro.Status.CurrentStepIndex == 1 && ro.Status.StepAcknowledgedAt != nil
	})
	if err := proc.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, _ = proc.Process.Wait()

	start()
	// Not ready until the stored plans are served again.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("restarted runner never became ready")
		}
	}
	after := get("the restarted view", func(ro rolloutapi.Rollout) bool { return ro.Status.CanaryRevision == "v2" })
	// Give the restarted loop a few passes to do anything it wrongly would.
	time.Sleep(2 * time.Second)
	after = get("the restarted view", func(rolloutapi.Rollout) bool { return true })
	st0, st1 := before.Status, after.Status
	switch {
	case *st1.CurrentStepIndex != *st0.CurrentStepIndex:
		t.Fatalf("step after restart %d, before %d", *st1.CurrentStepIndex, *st0.CurrentStepIndex)
	case !st1.StepAcknowledgedAt.Equal(st0.StepAcknowledgedAt):
		t.Fatalf("pause restarted: acknowledged at %v, before %v", st1.StepAcknowledgedAt, st0.StepAcknowledgedAt)
	case st1.Traffic.PlanVersion != st0.Traffic.PlanVersion || st1.Traffic.CanaryWeight != 20:
		t.Fatalf("traffic after restart %+v, before %+v", st1.Traffic, st0.Traffic)
	case st1.Phase != v1alpha1.PhaseProgressing:
		t.Fatalf("phase after restart %s: %s", st1.Phase, st1.Message)
	}
	hist, err := c.History(context.Background(), "default", "reviews", 200)
	if err != nil {
		t.Fatal(err)
	}
	steps := 0
	for _, e := range hist {
		if e.Reason == v1alpha1.ReasonStepAdvanced {
			steps++
		}
	}
	if steps != 2 {
		t.Fatalf("%d StepAdvanced events, want 2 (step 1 and step 2, none repeated): %+v", steps, hist)
	}
}
