package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/gitsync"
	"github.com/sluicehq/sluice/internal/gittest"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/standalone/store"
	"github.com/sluicehq/sluice/xds"
)

// benchPause is each of the two pauses of the benchmark's canary.
const benchPause = time.Second

// BenchmarkThousandRollouts is `sluice run` with 1,000 Rollouts: the real
// runner, bbolt store, xDS server and Git mirror of a local repository,
// and one Envoy-like ADS client that ACKs everything. Every Rollout is
// deployed (v1), then one push gives all of them a new version and
// endpoints (v2), and each walks 20% → 1 s pause → 60% → 1 s pause →
// promoted. It is the standalone twin of kube/controller's benchmark of
// the same name. Run it alone:
//
//	go test -run '^$' -bench ThousandRollouts -benchtime 1x -timeout 30m ./standalone/runner/
//
// SLUICE_BENCH_ROLLOUTS changes the number of Rollouts;
// SLUICE_BENCH_ENVOY_DELAY (a duration) slows the proxy's every answer;
// SLUICE_BENCH_BINARY runs the same work in the real `sluice run` binary
// (benchbin_test.go), whose memory is what a user sees.
// Metrics, over the
// rollout from the push (after the first deployment):
//
//   - promote-s: from the push until every Rollout is promoted;
//   - after-steps-p50-s, after-steps-max-s: per Rollout, from the end of
//     its last step (the second pause's end) until it is promoted; the
//     time the runner adds beyond what the steps ask for;
//   - acked-s: from the push until every Rollout's status records the
//     proxy's ACK of its last plan (100% to the new stable), which comes
//     after the promotion; the idle pass is measured after it;
//   - passes, pass-ms (wall time of a pass, mean), tx/pass (bbolt write
//     transactions, each one fsync'ed) and publishes/pass (xDS publishes,
//     the runner's and those the endpoint source's signal causes);
//   - cpu-s: CPU time of the whole process (runner, xDS server, Git
//     mirror and the ADS client);
//   - heap-peak-MiB: the Go heap's peak during the rollout;
//   - stacks-peak-MiB, goroutines-peak: the peaks of the goroutines'
//     stack memory (resident, outside the heap's objects) and of their
//     number during the rollout;
//   - heap-live-MiB: the peak of the live heap (what a collection kept)
//     during the rollout; the heap's peak is up to twice it (GOGC 100).
//     SLUICE_BENCH_HEAPPROFILE=FILE writes a heap profile at that peak;
//     add -memprofilerate 4096 for finer samples;
//   - alloc-MiB/pass: bytes allocated over the rollout (the whole
//     process's, the ADS client's excepted), per pass: the garbage the
//     collector has to keep up with; idle-pass-alloc-MiB: the idle pass's;
//   - idle-pass-ms, idle-pass-tx, idle-pass-publishes: one pass once
//     everything is promoted and nothing changes (the 30 s idle pass),
//     the loop stopped; its time is the median of 9 such passes; if
//     these passes write, the log names what they changed;
//   - rss-MiB: peak resident memory of the process from the runner's
//     start (VmHWM reset before it); rss-file-MiB: the part of the
//     resident memory at the end that is files' pages (the test binary's
//     and the state file bbolt maps), not the heap.
func BenchmarkThousandRollouts(b *testing.B) {
	n := 1000
	if s := os.Getenv("SLUICE_BENCH_ROLLOUTS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			b.Fatalf("SLUICE_BENCH_ROLLOUTS: %v", err)
		}
	}
	if v := os.Getenv(benchBinaryEnv); v != "" {
		bin := sluiceBinary(b, v)
		b.ResetTimer()
		for range b.N {
			runBinaryThousand(b, n, bin).report(b, n)
		}
		return
	}
	for range b.N {
		runStandaloneThousand(b, n).report(b, n)
	}
}

// benchRun is what one run measured.
type benchRun struct {
	promote              time.Duration
	afterSteps           []time.Duration // per Rollout
	passes, tx, pubs     float64
	busy                 time.Duration // in passes
	cpu                  time.Duration
	heapPeak, rss        float64 // bytes
	rssFile              float64 // bytes, file pages resident at the end
	heapLive             float64 // bytes, the live heap's peak
	stacks, goroutines   float64 // peaks: goroutine stacks' bytes, goroutines
	allocs, idleAllocs   float64 // bytes allocated over the rollout, by the idle pass
	idle                 time.Duration
	idleTx, idlePubs     float64
	canaryAll, pausedAll time.Duration // from the push until every Rollout had started, reached the last pause
	acked                time.Duration // from the push until every promotion's plan was acknowledged in status
}

func (r *benchRun) report(b *testing.B, n int) {
	slices.Sort(r.afterSteps)
	b.ReportMetric(r.promote.Seconds(), "promote-s")
	b.ReportMetric(r.afterSteps[len(r.afterSteps)/2].Seconds(), "after-steps-p50-s")
	b.ReportMetric(r.afterSteps[len(r.afterSteps)-1].Seconds(), "after-steps-max-s")
	b.ReportMetric(r.acked.Seconds(), "acked-s")
	b.ReportMetric(r.passes, "passes")
	b.ReportMetric(float64(r.busy.Milliseconds())/max(r.passes, 1), "pass-ms")
	b.ReportMetric(r.tx/max(r.passes, 1), "tx/pass")
	b.ReportMetric(r.pubs/max(r.passes, 1), "publishes/pass")
	b.ReportMetric(r.cpu.Seconds(), "cpu-s")
	b.ReportMetric(r.heapPeak/(1<<20), "heap-peak-MiB")
	b.ReportMetric(r.heapLive/(1<<20), "heap-live-MiB")
	b.ReportMetric(r.stacks/(1<<20), "stacks-peak-MiB")
	b.ReportMetric(r.goroutines, "goroutines-peak")
	b.ReportMetric(r.allocs/(1<<20)/max(r.passes, 1), "alloc-MiB/pass")
	b.ReportMetric(r.idleAllocs/(1<<20), "idle-pass-alloc-MiB")
	b.ReportMetric(r.rss/(1<<20), "rss-MiB")
	b.ReportMetric(r.rssFile/(1<<20), "rss-file-MiB")
	b.ReportMetric(float64(r.idle.Microseconds())/1000, "idle-pass-ms")
	b.ReportMetric(r.idleTx, "idle-pass-tx")
	b.ReportMetric(r.idlePubs, "idle-pass-publishes")
	b.Logf("%d Rollouts: every canary started %.2f s after the push, every last pause reached at %.2f s, all promoted at %.2f s; "+
		"%.0f passes, %.0f transactions, %.0f publishes",
		n, r.canaryAll.Seconds(), r.pausedAll.Seconds(), r.promote.Seconds(), r.passes, r.tx, r.pubs)
}

// benchManifest is Rollout i at version with its own endpoint.
func benchManifest(i int, version string, net byte) string {
	return fmt.Sprintf(`apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata:
  name: svc-%04d
spec:
  service:
    name: svc-%04d
    hosts: [svc-%04d]
    port: 9080
  backend:
    version: %s
    endpoints: ["10.%d.%d.%d:9080"]
  strategy:
    canary:
      steps:
      - setWeight: 20
      - pause: {duration: %s}
      - setWeight: 60
      - pause: {duration: %s}
`, i, i, i, version, net, i/250, i%250+1, benchPause, benchPause)
}

func benchFiles(n int, version string, net byte) map[string]string {
	files := make(map[string]string, n)
	for i := range n {
		files[fmt.Sprintf("rollouts/svc-%04d.yaml", i)] = benchManifest(i, version, net)
	}
	return files
}

func runStandaloneThousand(b *testing.B, n int) *benchRun {
	repo := gittest.New(b)
	repo.Push("v1", benchFiles(n, "v1", 1))
	stateDir := b.TempDir()

	resetPeakRSS(b)
	st, err := store.Open(filepath.Join(stateDir, store.DefaultFile), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	x := newXDS(b)
	srv, eps, reg := x.srv, x.eps, x.reg
	syncer, err := gitsync.New(gitsync.Source{URL: repo.URL(), Branch: "main", Interval: time.Hour},
		gitsync.Options{MirrorDir: filepath.Join(stateDir, "git")})
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = syncer.Run(ctx) }()
	r, err := New(Options{Store: st, Source: syncer, Plane: NewXDSPlane(ctx, srv, eps), Analysis: nopAnalyzer{}, Log: logr.Discard()})
	if err != nil {
		b.Fatal(err)
	}
	startBenchEnvoy(b, x.addr, "bench-envoy")
	runCtx, stopRun := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- r.Run(runCtx) }()

	benchWait(b, r, n, 10*time.Minute, "every Rollout serving v1", func(_ string, st *v1alpha1.RolloutStatus) bool {
		return st.StableRevision == "v1" && st.Phase == v1alpha1.PhaseHealthy
	})

	// The rollout: one push that changes every version.
	res := &benchRun{}
	runtime.GC()
	tx0, passes0, pubs0, busy0 := float64(st.Transactions()), float64(r.passes.Load()), publishCount(b, reg, ""), r.busy.Load()
	cpu0 := cpuTime(b)
	allocs0 := readAllocs()
	heap := sampleHeap(os.Getenv("SLUICE_BENCH_HEAPPROFILE"))
	repo.Push("v2", benchFiles(n, "v2", 2))
	start := time.Now()
	syncer.Trigger()

	lastStepEnd := map[string]time.Time{}
	canary, promoted := map[string]time.Time{}, map[string]time.Time{}
	deadline := start.Add(10 * time.Minute)
	for len(promoted) < n {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d Rollouts promoted after 10 minutes", len(promoted), n)
		}
		time.Sleep(10 * time.Millisecond)
		now := time.Now()
		r.mu.RLock()
		for key, v := range r.views {
			s := &v.ro.Status
			if _, ok := canary[key]; !ok && s.CanaryRevision == "v2" {
				canary[key] = now
			}
			if s.CanaryRevision == "v2" && s.CurrentStepIndex != nil && *s.CurrentStepIndex == 3 && s.StepAcknowledgedAt != nil {
				lastStepEnd[key] = s.StepAcknowledgedAt.Add(benchPause)
			}
			if _, ok := promoted[key]; !ok && s.StableRevision == "v2" && s.CanaryRevision == "" && s.Phase == v1alpha1.PhaseHealthy {
				promoted[key] = now
			}
		}
		r.mu.RUnlock()
	}
	res.promote = time.Since(start)
	res.cpu = cpuTime(b) - cpu0
	res.heapPeak = heap.stop()
	res.heapLive = heap.live
	res.stacks, res.goroutines = heap.stacks, heap.goroutines
	res.allocs = readAllocs() - allocs0
	res.tx, res.passes, res.pubs = float64(st.Transactions())-tx0, float64(r.passes.Load())-passes0, publishCount(b, reg, "")-pubs0
	res.busy = time.Duration(r.busy.Load() - busy0)
	res.canaryAll, res.pausedAll = latest(canary).Sub(start), latest(lastStepEnd).Add(-benchPause).Sub(start)
	for key, at := range promoted {
		end, ok := lastStepEnd[key]
		if !ok {
			b.Fatalf("%s: promoted but its last pause was never seen", key)
		}
		res.afterSteps = append(res.afterSteps, at.Sub(end))
	}

	// A Rollout is Healthy as soon as its promotion is decided; the proxy's
	// ACK of that last plan (100% stable) comes after, and the loop then
	// records it in status.traffic (acknowledgedVersion): a real change,
	// written in the pass after the ACK. Nothing is at rest before every
	// such ACK is recorded. (Before, the benchmark slept 500 ms instead;
	// on a loaded machine an ACK could arrive after the passes below had
	// found nothing to write, and the idle pass then wrote it.)
	benchWait(b, r, n, 2*time.Minute, "every promotion acknowledged", func(_ string, st *v1alpha1.RolloutStatus) bool {
		return st.Traffic.PlanVersion != "" && st.Traffic.AcknowledgedVersion == st.Traffic.PlanVersion
	})
	res.acked = time.Since(start)

	// One pass over unchanged Rollouts, the loop stopped so that the pass
	// is the only work.
	stopRun()
	if err := <-ran; err != nil {
		b.Fatal(err)
	}
	// Work still in flight when the loop stopped may change a status.
	for i := 0; ; i++ {
		tx0 = float64(st.Transactions())
		r.pass(ctx)
		if float64(st.Transactions()) == tx0 {
			break
		}
		if i == 5 {
			b.Log("every pass writes, however long nothing changes")
			break
		}
	}
	tx0, pubs0 = float64(st.Transactions()), publishCount(b, reg, "")
	before := maps.Clone(r.stored) // its records are replaced, never modified
	t0, allocs0 := time.Now(), readAllocs()
	r.pass(ctx)
	res.idle, res.idleAllocs = time.Since(t0), readAllocs()-allocs0
	// Republishes the endpoint source's signal causes happen after the
	// pass, in the xDS server's goroutine.
	time.Sleep(200 * time.Millisecond)
	res.idleTx, res.idlePubs = float64(st.Transactions())-tx0, publishCount(b, reg, "")-pubs0
	// One pass's time swings with the machine's load: the median of a few.
	idles := []time.Duration{res.idle}
	for range 8 {
		t0 := time.Now()
		r.pass(ctx)
		idles = append(idles, time.Since(t0))
	}
	slices.Sort(idles)
	res.idle = idles[len(idles)/2]
	// A write at rest is a finding: say what it changed.
	if w := describeWrites(before, r.stored); len(w) > 0 {
		b.Logf("the idle passes wrote %d Rollouts; the first: %s", len(w), strings.Join(w[:min(len(w), 3)], " | "))
	}
	res.rss = procStatus(b, "VmHWM")
	res.rssFile = procStatus(b, "RssFile")
	return res
}

// xdsEnv is an xDS server with a static endpoint source, serving on
// loopback at addr, its metrics in reg.
type xdsEnv struct {
	srv  *xds.Server
	eps  *xds.Static
	reg  *prometheus.Registry
	addr string
}

// newXDS serves an xDS server until the test ends.
func newXDS(tb testing.TB) xdsEnv {
	tb.Helper()
	x := xdsEnv{eps: xds.NewStatic(), reg: prometheus.NewRegistry()}
	var err error
	x.srv, err = xds.New(xds.Options{Endpoints: x.eps, Registerer: x.reg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		tb.Fatal(err)
	}
	x.addr = serveXDS(tb, x.srv)
	return x
}

// benchWait polls the runner's views until cond holds for n Rollouts.
func benchWait(b *testing.B, r *Runner, n int, within time.Duration, what string, cond func(string, *v1alpha1.RolloutStatus) bool) {
	b.Helper()
	deadline := time.Now().Add(within)
	for {
		ok := 0
		r.mu.RLock()
		for key, v := range r.views {
			if cond(key, &v.ro.Status) {
				ok++
			}
		}
		r.mu.RUnlock()
		if ok >= n {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("waiting for %s: %d of %d", what, ok, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func latest(ts map[string]time.Time) time.Time {
	var out time.Time
	for _, t := range ts {
		if t.After(out) {
			out = t
		}
	}
	return out
}

func cpuTime(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// heapSampler records the peak of the Go heap's objects and of its live
// part (what the last garbage collection kept, which sets the next peak:
// GOGC 100 lets the heap grow to twice it).
type heapSampler struct {
	stopping, done chan struct{}
	peak, live     float64
	// stacks and goroutines are the peaks of the goroutines' stack
	// memory (outside the heap's objects, inside RSS) and of their number.
	stacks, goroutines float64
	// profile, when set, is rewritten with a heap profile whenever the
	// live heap reaches a new high (by 2%): the profile's in-use figures
	// are those of the last collection, so it shows what was live then.
	profile string
}

func sampleHeap(profile string) *heapSampler {
	h := &heapSampler{stopping: make(chan struct{}), done: make(chan struct{}), peak: readHeap(), profile: profile}
	go func() {
		defer close(h.done)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		written := 0.0
		for {
			select {
			case <-h.stopping:
				return
			case <-t.C:
				h.peak = max(h.peak, readHeap())
				h.live = max(h.live, readLive())
				st, gs := readStacks()
				h.stacks, h.goroutines = max(h.stacks, st), max(h.goroutines, gs)
				if h.profile != "" && h.live > written*1.02 {
					written = h.live
					writeHeapProfile(h.profile)
				}
			}
		}
	}()
	return h
}

func writeHeapProfile(path string) {
	f, err := os.Create(path)
	if err != nil {
		return // a benchmark aid: no profile, no harm
	}
	defer f.Close()
	_ = pprof.Lookup("heap").WriteTo(f, 0)
}

// readAllocs is the bytes allocated so far, the whole process's.
func readAllocs() float64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	return float64(s[0].Value.Uint64())
}

// readStacks is the memory of goroutine stacks and the number of
// goroutines.
func readStacks() (float64, float64) {
	s := []metrics.Sample{{Name: "/memory/classes/heap/stacks:bytes"}, {Name: "/sched/goroutines:goroutines"}}
	metrics.Read(s)
	return float64(s[0].Value.Uint64()), float64(s[1].Value.Uint64())
}

func readLive() float64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return float64(s[0].Value.Uint64())
}

func (h *heapSampler) stop() float64 {
	close(h.stopping)
	<-h.done
	return max(h.peak, readHeap())
}

func readHeap() float64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return float64(s[0].Value.Uint64())
}

// resetPeakRSS makes VmHWM the current RSS, after the garbage the
// benchmark's own set-up left is returned.
func resetPeakRSS(b *testing.B) {
	runtime.GC()
	debug.FreeOSMemory()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Fatal(err)
	}
}

// procStatus returns a field of /proc/self/status in bytes.
func procStatus(b *testing.B, field string) float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	return statusField(b, data, field)
}

// statusField reads a field of a /proc status file in bytes.
func statusField(b *testing.B, data []byte, field string) float64 {
	b.Helper()
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb * 1024
		}
	}
	b.Fatalf("no %s in the process's status", field)
	return 0
}

// nopAnalyzer: the benchmark's Rollouts have no analysis.
type nopAnalyzer struct{}

func (nopAnalyzer) Start(string, engine.AnalysisRun, []*v1alpha1.AnalysisTemplate, json.RawMessage) error {
	return nil
}
func (nopAnalyzer) Stop(string) {}
func (nopAnalyzer) Observe(string) (engine.AnalysisObservation, json.RawMessage, bool) {
	return engine.AnalysisObservation{}, nil, false
}
func (nopAnalyzer) Changed() <-chan struct{} { return nil }

// describeWrites names the Rollouts whose stored record differs between
// before and after, with the status fields that changed (each value cut
// to 200 bytes).
func describeWrites(before, after map[string]store.Rollout) []string {
	var out []string
	for key, a := range after {
		p := before[key]
		if p.Status == a.Status && p.Plan == a.Plan {
			continue
		}
		var pm, am map[string]any
		pj, _ := json.Marshal(p.Status)
		aj, _ := json.Marshal(a.Status)
		_ = json.Unmarshal(pj, &pm)
		_ = json.Unmarshal(aj, &am)
		var fields []string
		for f := range maps.Keys(am) {
			pv, _ := json.Marshal(pm[f])
			av, _ := json.Marshal(am[f])
			if string(pv) != string(av) {
				fields = append(fields, fmt.Sprintf("%s: %.200s -> %.200s", f, pv, av))
			}
		}
		for f := range maps.Keys(pm) {
			if _, ok := am[f]; !ok {
				fields = append(fields, f+" removed")
			}
		}
		slices.Sort(fields)
		out = append(out, key+": "+strings.Join(fields, "; "))
	}
	slices.Sort(out)
	return out
}
