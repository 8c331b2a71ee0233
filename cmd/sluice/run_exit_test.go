package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/standalone/config"
	"github.com/sluicehq/sluice/standalone/store"
)

// TestRunExitsWhenTheRunnerFails: a runner that cannot start (here: a
// stored plan the xDS server refuses) must stop `sluice run` with its
// error, not leave it serving with nothing advancing.
func TestRunExitsWhenTheRunnerFails(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "state.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Sealed in name only: the version is not the content's hash.
	bad := &plan.Plan{Version: "bogus", Service: "reviews", Namespace: "default"}
	status := &v1alpha1.RolloutStatus{StableRevision: "v1", Traffic: v1alpha1.TrafficStatus{PlanVersion: bad.Version}}
	if _, err := st.Commit(store.Key("default", "reviews"), store.Record{Status: status, Plan: bad}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	cfg := &config.Config{StateDir: dir, Git: config.Git{URL: "file://" + filepath.Join(dir, "no-repo")},
		XDS: config.XDS{Address: "127.0.0.1:0"}, HTTP: config.HTTP{Address: "127.0.0.1:0", MetricsAddress: "127.0.0.1:0"}}
	cfg.Default()
	cfg.Shutdown.DrainTimeout.Duration = time.Second
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- runStandalone(ctx, cfg, runOptions{insecureNoAuth: true}, logr.Discard()) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "serve stored plans") {
			t.Fatalf("runStandalone = %v; want the runner's error", err)
		}
	case <-ctx.Done():
		t.Fatal("runStandalone still running after its runner failed")
	}
}
