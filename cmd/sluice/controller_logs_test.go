package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// checkControllerJSONLogs runs the built `sluice controller` on the
// cluster of TestVerbsAgainstCluster with --log-format json until it has
// taken its leader-election lease in ns, and checks that every line it
// wrote is a JSON object: controller-runtime's (caches, controllers,
// leader election) as well as Sluice's.
// It reconciles only watchNS, an empty namespace, so that it leaves the
// test's own controller alone.
func checkControllerJSONLogs(t *testing.T, kubeconfig, ns, watchNS string) {
	t.Helper()
	if testing.Short() {
		// sluiceBinary would skip the whole of the caller.
		t.Log("-short: sluice controller's JSON log not checked (builds the binary)")
		return
	}
	bin := sluiceBinary(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "controller.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "http:\n  webhookAddress: %q\n", freePort(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "controller", "--config", cfg, "--kubeconfig", kubeconfig, "--namespace", ns, "--watch-namespace", watchNS,
		"--istio=false", "--state-dir", filepath.Join(dir, "state"), "--metrics-address", freePort(t), "--probe-address", freePort(t),
		"--xds-address", freePort(t), "--log-format", "json", "--log-level", "debug")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	var all []string
	leader := false
	timeout := time.After(2 * time.Minute)
	for !leader {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("sluice controller exited before taking the lease:\n%s", strings.Join(all, "\n"))
			}
			all = append(all, l)
			leader = strings.Contains(strings.ToLower(l), "successfully acquired lease")
		case <-timeout:
			_ = cmd.Process.Kill()
			t.Fatalf("sluice controller did not take its lease in 2 minutes:\n%s", strings.Join(all, "\n"))
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for l := range lines {
		all = append(all, l)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("sluice controller after SIGTERM: %v", err)
	}
	for i, l := range all {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Errorf("line %d is not JSON: %v: %s", i+1, err, l)
			continue
		}
		if m["time"] == nil || m["level"] == nil || m["msg"] == nil {
			t.Errorf("line %d lacks time, level or msg: %s", i+1, l)
		}
	}
}
