package runner

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/gittest"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
)

// benchBinaryEnv makes BenchmarkThousandRollouts measure the real `sluice
// run` binary instead of the runner inside the test binary: "1" builds
// ./cmd/sluice into a temporary folder as the release is built, any other
// value is the path of a binary to run (to compare builds without
// rebuilding them). Its figures
// are what a user's process shows: no test harness in its pages, but the
// metrics registry, the API, the dashboard and the log that the test
// binary's runner goes without.
const benchBinaryEnv = "SLUICE_BENCH_BINARY"

// benchBinaryPoll is how often the binary mode asks the API where the
// Rollouts are: each answer encodes all of them, work the in-process run
// does not have, so it asks seldom and its times are coarse by as much.
// SLUICE_BENCH_BINARY_POLL (a duration) changes it.
var benchBinaryPoll = time.Second

func init() {
	if d, err := time.ParseDuration(os.Getenv("SLUICE_BENCH_BINARY_POLL")); err == nil && d > 0 {
		benchBinaryPoll = d
	}
}

// benchBinaryRun is what one run of the real binary measured.
type benchBinaryRun struct {
	promote, acked time.Duration
	cpu            time.Duration
	rss, rssFile   float64 // bytes: peak (VmHWM), file pages at the end
	rssAnon        float64 // bytes, anonymous pages at the end
}

func (r *benchBinaryRun) report(b *testing.B, n int) {
	b.ReportMetric(r.promote.Seconds(), "promote-s")
	b.ReportMetric(r.acked.Seconds(), "acked-s")
	b.ReportMetric(r.cpu.Seconds(), "cpu-s")
	b.ReportMetric(r.rss/(1<<20), "rss-MiB")
	b.ReportMetric(r.rssFile/(1<<20), "rss-file-MiB")
	b.ReportMetric(r.rssAnon/(1<<20), "rss-anon-MiB")
	b.Logf("%d Rollouts, the sluice binary: all promoted within %.1f s of the push (polled every %s), acknowledged within %.1f s",
		n, r.promote.Seconds(), benchBinaryPoll, r.acked.Seconds())
}

// sluiceBinary returns the binary the binary mode runs.
func sluiceBinary(b *testing.B, v string) string {
	b.Helper()
	if v != "1" {
		return v
	}
	bin := filepath.Join(b.TempDir(), "sluice")
	// Built as the Dockerfile builds the release: the binary's size is
	// part of its resident memory (the pages of its code and read-only
	// data that run touches), and a default build is a third larger.
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, "../../cmd/sluice")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build ./cmd/sluice: %v\n%s", err, out)
	}
	return bin
}

// runBinaryThousand is runStandaloneThousand's work done by `sluice run`:
// the same repository, pushes and proxy, with the state file on the same
// disk. The push reaches it by its webhook, as the in-process run's
// Trigger does; it is asked for its Rollouts through its API.
func runBinaryThousand(b *testing.B, n int, bin string) *benchBinaryRun {
	repo := gittest.New(b)
	repo.Push("v1", benchFiles(n, "v1", 1))
	dir := b.TempDir()
	addrs := freeAddrs(b, 4)
	const secret = "bench-webhook-secret"
	cfg := fmt.Sprintf(`stateDir: %s
git:
  url: %s
  branch: main
  interval: 1h
  webhookSecret: {env: SLUICE_BENCH_WEBHOOK_SECRET}
xds:
  address: %s
http:
  address: %s
  metricsAddress: %s
  webhookAddress: %s
`, filepath.Join(dir, "state"), repo.URL(), addrs[0], addrs[1], addrs[2], addrs[3])
	cfgFile := filepath.Join(dir, "run.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	// SLUICE_BENCH_BINARY_LOG keeps the binary's log (and, with
	// GODEBUG=gctrace=1, its collector's trace) where it names.
	logPath := cmp.Or(os.Getenv("SLUICE_BENCH_BINARY_LOG"), filepath.Join(dir, "sluice.log"))
	logFile, err := os.Create(logPath)
	if err != nil {
		b.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(bin, "run", "--config", cfgFile, "--insecure-no-auth")
	cmd.Env = append(os.Environ(), "SLUICE_BENCH_WEBHOOK_SECRET="+secret)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// It must not outlive a benchmark that is interrupted.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		// Measured already: no need to wait for its drain, which lasts
		// as long as the proxy stays connected.
		_ = cmd.Process.Kill()
		<-exited
		if b.Failed() {
			if out, err := os.ReadFile(logFile.Name()); err == nil {
				b.Logf("sluice log (last 4 KB):\n%s", out[max(0, len(out)-4096):])
			}
		}
	}()
	pid := cmd.Process.Pid
	api := &rolloutapi.Client{BaseURL: "http://" + addrs[1]}
	ctx := context.Background()
	waitAPI := func(within time.Duration, what string, cond func(*v1alpha1.RolloutStatus) bool) {
		b.Helper()
		deadline := time.Now().Add(within)
		for {
			select {
			case err := <-exited:
				b.Fatalf("sluice run exited while waiting for %s: %v", what, err)
			default:
			}
			ok := 0
			if rs, err := api.List(ctx); err == nil {
				for i := range rs {
					if cond(&rs[i].Status) {
						ok++
					}
				}
			}
			if ok >= n {
				return
			}
			if time.Now().After(deadline) {
				b.Fatalf("waiting for %s: %d of %d", what, ok, n)
			}
			time.Sleep(benchBinaryPoll)
		}
	}
	// The proxy gives up on a refused connection: xDS must listen first.
	for deadline := time.Now().Add(time.Minute); ; {
		c, err := net.Dial("tcp", addrs[0])
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("sluice run does not serve xDS at %s: %v", addrs[0], err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	startBenchEnvoy(b, addrs[0], "bench-envoy")
	waitAPI(10*time.Minute, "every Rollout serving v1", func(st *v1alpha1.RolloutStatus) bool {
		return st.StableRevision == "v1" && st.Phase == v1alpha1.PhaseHealthy
	})

	res := &benchBinaryRun{}
	cpu0 := procCPU(b, pid)
	repo.Push("v2", benchFiles(n, "v2", 2))
	start := time.Now()
	body := []byte(`{"ref":"refs/heads/main"}`)
	req, err := http.NewRequest(http.MethodPost, "http://"+addrs[3]+"/webhook", bytes.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("X-Gitlab-Token", secret)
	req.Header.Set("X-Gitlab-Event", "Push Hook")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		b.Fatalf("webhook: %s", resp.Status)
	}
	waitAPI(10*time.Minute, "every Rollout promoted", func(st *v1alpha1.RolloutStatus) bool {
		return st.StableRevision == "v2" && st.CanaryRevision == "" && st.Phase == v1alpha1.PhaseHealthy
	})
	res.promote = time.Since(start)
	waitAPI(2*time.Minute, "every promotion acknowledged", func(st *v1alpha1.RolloutStatus) bool {
		return st.Traffic.PlanVersion != "" && st.Traffic.AcknowledgedVersion == st.Traffic.PlanVersion
	})
	res.acked = time.Since(start)
	res.cpu = procCPU(b, pid) - cpu0
	res.rss = procStatusOf(b, pid, "VmHWM")
	res.rssFile = procStatusOf(b, pid, "RssFile")
	res.rssAnon = procStatusOf(b, pid, "RssAnon")
	b.Logf("resident at the end, by mapping: %s", residentByMapping(b, pid))
	return res
}

// residentByMapping sums /proc/PID/smaps's Rss by what is mapped (a file,
// or the kind of anonymous memory), largest first.
func residentByMapping(b *testing.B, pid int) string {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		b.Fatal(err)
	}
	sums := map[string]float64{}
	name := ""
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			name = "[anonymous]"
			if len(f) >= 6 {
				name = filepath.Base(f[5])
			}
		case len(f) == 3 && f[0] == "Rss:":
			kb, _ := strconv.ParseFloat(f[1], 64)
			sums[name] += kb / 1024
		}
	}
	names := slices.SortedFunc(maps.Keys(sums), func(a, c string) int { return cmp.Compare(sums[c], sums[a]) })
	var out []string
	for _, n := range names[:min(len(names), 6)] {
		out = append(out, fmt.Sprintf("%s %.1f MiB", n, sums[n]))
	}
	return strings.Join(out, ", ")
}

// freeAddrs returns n loopback addresses whose ports were free a moment
// ago.
func freeAddrs(b *testing.B, n int) []string {
	b.Helper()
	var out []string
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().String())
	}
	for _, l := range ls {
		l.Close()
	}
	return out
}

// procCPU is the user and system CPU time of process pid so far.
func procCPU(b *testing.B, pid int) time.Duration {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// The command name, in parentheses, may hold spaces: fields count
	// from after it. utime and stime are fields 14 and 15 of the line.
	_, rest, ok := strings.Cut(string(data), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		b.Fatalf("/proc/%d/stat: unexpected %q", pid, data)
	}
	var ticks int64
	for _, s := range f[11:13] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			b.Fatalf("/proc/%d/stat: %v", pid, err)
		}
		ticks += v
	}
	const clockTicks = 100 // USER_HZ on Linux
	return time.Duration(ticks) * time.Second / clockTicks
}

// procStatusOf returns a field of /proc/PID/status in bytes.
func procStatusOf(b *testing.B, pid int, field string) float64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	return statusField(b, data, field)
}
