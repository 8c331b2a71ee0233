package gitsync

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"strconv"
	"strings"
	"testing"
	"time"
)

// benchRollouts is the size of the generated repository.
const benchRollouts = 10_000

// benchRepo pushes a repository with benchRollouts Rollout manifests, 100
// to a folder, each the standalone example under its own name.
func benchRepo(b *testing.B) *remote {
	b.Helper()
	example, err := os.ReadFile("../examples/standalone/rollout.yaml")
	if err != nil {
		b.Fatal(err)
	}
	r := newRemote(b)
	for i := range benchRollouts {
		name := fmt.Sprintf("svc-%05d", i)
		p := filepath.Join(r.Work, "apps", fmt.Sprintf("team-%02d", i/100), name+".yaml")
		if i%100 == 0 {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				b.Fatal(err)
			}
		}
		content := strings.Replace(strings.Replace(string(example), "name: reviews\n", "name: "+name+"\n", 2),
			"version: v2", "version: v1", 1)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	r.Push("10k rollouts", nil)
	return r
}

// BenchmarkSync10k measures a first sync (clone into an empty mirror,
// parse and validate every file) and an incremental one (fetch one new
// commit that changes one file; the other 9,999 come from the cache).
func BenchmarkSync10k(b *testing.B) {
	r := benchRepo(b)
	src := Source{URL: r.URL(), Branch: "main", Path: "apps"}
	check := func(b *testing.B, st State, sha string) {
		if st.Err != nil || (sha != "" && appliedSHA(st) != sha) || len(st.Applied.Objects) != benchRollouts {
			b.Fatalf("applied %s (%d objects), err %v", appliedSHA(st), len(st.Applied.Objects), st.Err)
		}
	}

	b.Run("first", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			s, _ := newTestSyncer(b, src)
			b.StartTimer()
			check(b, s.Sync(context.Background()), "")
		}
	})

	const file = "apps/team-42/svc-04242.yaml"
	original := r.readWork(file)
	b.Run("incremental", func(b *testing.B) {
		s, _ := newTestSyncer(b, src)
		check(b, s.Sync(context.Background()), "")
		b.ResetTimer()
		for i := range b.N {
			b.StopTimer()
			version := fmt.Sprintf("    version: v1-%d-%d\n", b.N, i)
			sha := r.Push("bump", map[string]string{file: strings.Replace(original, "    version: v1\n", version, 1)})
			b.StartTimer()
			st := s.Sync(context.Background())
			check(b, st, sha)
			if d, _ := st.Applied.Lookup(ObjectRef{Kind: "Rollout", Name: "svc-04242"}); "    version: "+d.Rollout.Spec.Backend.Version+"\n" != version {
				b.Fatalf("version %s not applied", version)
			}
		}
	})
}

func (r *remote) readWork(name string) string {
	r.t.Helper()
	data, err := os.ReadFile(filepath.Join(r.Work, filepath.FromSlash(name)))
	if err != nil {
		r.t.Fatal(err)
	}
	return string(data)
}

// largePush is the size of the push of BenchmarkFetchLargePush, the one
// issue 13 measured: 200 MB, written so that Git cannot compress it.
const largePush = 200 << 20

// BenchmarkFetchLargePush fetches a commit with a 200 MB file, outside the
// watched path or inside it (named like a manifest), into an empty
// mirror, without limits, with the default ones (the file is over
// maxBlobBytes), and with only a pack limit below the push. It reports the growth of the Go heap and of the
// process's resident memory at their peak during the sync, over what
// they were before it.
//
//	go test ./gitsync -run '^$' -bench FetchLargePush -benchtime 1x
func BenchmarkFetchLargePush(b *testing.B) {
	remotes := map[string]*remote{}
	for where, name := range map[string]string{"outside": "assets/big.bin", "inside": "apps/big.yaml"} {
		r := newRemote(b)
		r.WriteRandom(name, largePush, 13)
		r.Push("large", map[string]string{"apps/a.yaml": rollout("a", "v1")})
		remotes[where] = r
	}
	unlimited := FetchLimits{MaxPackBytes: 1 << 40, MaxBlobBytes: 1 << 40, MaxFiles: 1 << 30}
	for _, where := range []string{"outside", "inside"} {
		for _, lim := range []struct {
			name   string
			limits FetchLimits
		}{{"no-limits", unlimited}, {"default-limits", FetchLimits{}}, {"pack-64MiB", FetchLimits{MaxPackBytes: 64 << 20, MaxBlobBytes: 1 << 40}}} {
			b.Run(where+"/"+lim.name, func(b *testing.B) {
				src := Source{URL: remotes[where].URL(), Branch: "main", Path: "apps", FetchLimits: lim.limits}
				var heap, rss float64
				for range b.N {
					b.StopTimer()
					s, _ := newTestSyncer(b, src)
					m := startMemoryPeak(b)
					b.StartTimer()
					st := s.Sync(context.Background())
					b.StopTimer()
					h, r := m.stop()
					heap, rss = max(heap, h), max(rss, r)
					b.Logf("%s/%s: kind %q: %v", where, lim.name, KindOf(st.Err), st.Err)
					b.StartTimer()
				}
				b.ReportMetric(heap/(1<<20), "peak-heap-MiB")
				b.ReportMetric(rss/(1<<20), "peak-rss-MiB")
			})
		}
	}
}

// memoryPeak samples the Go heap while a measured call runs and reads the
// kernel's high-water mark of resident memory, reset when it starts.
type memoryPeak struct {
	b                  *testing.B
	heapBase, rssBase  float64
	stopSampling, done chan struct{}
	heapPeak           float64
}

const heapMetric = "/memory/classes/heap/objects:bytes"

func readHeap() float64 {
	s := []rtmetrics.Sample{{Name: heapMetric}}
	rtmetrics.Read(s)
	return float64(s[0].Value.Uint64())
}

// procStatus returns a field of /proc/self/status in bytes.
func procStatus(b *testing.B, field string) float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb * 1024
		}
	}
	b.Fatalf("no %s in /proc/self/status", field)
	return 0
}

func startMemoryPeak(b *testing.B) *memoryPeak {
	runtime.GC()
	debug.FreeOSMemory()
	// "5" resets the peak resident set size (VmHWM) to the current one.
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Fatal(err)
	}
	m := &memoryPeak{b: b, heapBase: readHeap(), rssBase: procStatus(b, "VmRSS"),
		stopSampling: make(chan struct{}), done: make(chan struct{})}
	m.heapPeak = m.heapBase
	go func() {
		defer close(m.done)
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-m.stopSampling:
				return
			case <-t.C:
				m.heapPeak = max(m.heapPeak, readHeap())
			}
		}
	}()
	return m
}

// stop returns the peak growth of the heap and of resident memory.
func (m *memoryPeak) stop() (heap, rss float64) {
	close(m.stopSampling)
	<-m.done
	m.heapPeak = max(m.heapPeak, readHeap())
	return m.heapPeak - m.heapBase, procStatus(m.b, "VmHWM") - m.rssBase
}
