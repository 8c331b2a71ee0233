package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/xdstest"
	"github.com/sluicehq/sluice/rolloutapi"
)

const staleRollout = `apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata:
  name: reviews
spec:
  service: {name: reviews, hosts: [reviews], port: 9080}
  backend: {version: %s, endpoints: ["%s"]}
  dataPlane: {ackDeadlineSeconds: 1, silentProxies: Hold}
  strategy:
    canary:
      steps:
      - setWeight: 20
      - pause: {}
`

// `sluice status` against a live `sluice run` (the real binary) names the
// proxy that holds a step by staying silent: a grpc-go client that ACKs
// and a raw ADS stream that subscribes and never answers, v2 pushed, the
// step held past its 1 s deadline.
func TestStatusShowsAStaleNodeOfALiveRun(t *testing.T) {
	t.Parallel()
	bin := sluiceBinary(t)
	root := t.TempDir()
	remote, work := filepath.Join(root, "remote.git"), filepath.Join(root, "work")
	gitCmd(t, root, "init", "-q", "--bare", "-b", "main", remote)
	gitCmd(t, root, "clone", "-q", remote, work)
	push := func(version, addr string) {
		if err := os.WriteFile(filepath.Join(work, "reviews.yaml"), fmt.Appendf(nil, staleRollout, version, addr), 0o644); err != nil {
			t.Fatal(err)
		}
		gitCmd(t, work, "add", "-A")
		gitCmd(t, work, "commit", "-q", "-m", "reviews "+version)
		gitCmd(t, work, "push", "-q", "origin", "HEAD:main")
	}
	push("v1", xdstest.Backend(t, "127.0.0.1", "stable"))

	httpAddr, xdsAddr := freePort(t), freePort(t)
	cfg := filepath.Join(root, "sluice.yaml")
	conf := fmt.Sprintf(`git: {url: "file://%s", branch: main, interval: 1s}
stateDir: %s
xds: {address: %s}
http: {address: %s, metricsAddress: %s, token: {env: SLUICE_STALE_TOKEN}}
`, remote, filepath.Join(root, "state"), xdsAddr, httpAddr, freePort(t))
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", cfg, "--log-level", "warn")
	cmd.Env = append(os.Environ(), "SLUICE_STALE_TOKEN=stale-token")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	api := &rolloutapi.Client{BaseURL: "http://" + httpAddr, Token: "stale-token"}
	waitRollout := func(what string, ok func(rolloutapi.Rollout) bool) {
		t.Helper()
		var last rolloutapi.Rollout
		for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			ro, err := api.Get(context.Background(), "default", "reviews")
			if err == nil {
				if last = ro; ok(ro) {
					return
				}
			}
		}
		t.Fatalf("%s: never; last status %s %q, traffic %+v", what, last.Status.Phase, last.Status.Message, last.Status.Traffic)
	}
	waitRollout("v1 stable with a plan", func(ro rolloutapi.Rollout) bool { return ro.Status.StableRevision == "v1" && ro.Plan != nil })
	xdstest.Client(t, xdsAddr, "answering", "reviews")
	waitRollout("v1 acknowledged by the answering client", func(ro rolloutapi.Rollout) bool {
		tr := ro.Status.Traffic
		return tr.PlanVersion != "" && tr.AcknowledgedVersion == tr.PlanVersion
	})
	xdstest.SilentNode(t, xdsAddr, "silent", "reviews")

	push("v2", xdstest.Backend(t, "127.0.0.1", "canary"))
	waitRollout("the step held by the silent node", func(ro rolloutapi.Rollout) bool {
		sn := ro.Status.Traffic.StaleNodes
		return ro.Status.CanaryRevision == "v2" && sn != nil && !sn.Excluded && sn.Count == 1
	})
	code, out, errOut := runCLI("status", "reviews", "--server", "http://"+httpAddr, "--token", "stale-token")
	if code != 0 {
		t.Fatalf("sluice status: exit %d, %s", code, errOut)
	}
	for _, want := range []string{"1 stale data-plane node(s), holding the step: silent", "StaleProxies"} {
		if !strings.Contains(out, want) {
			t.Errorf("sluice status does not say %q:\n%s", want, out)
		}
	}
}
