package xds

import (
	"context"
	"fmt"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout/plan"
)

// BenchmarkPublishOneOfMany is a controller's wave as the xDS server sees
// it, with no client connected: services plans are served, and each
// iteration changes one of them (a new weight, so a new plan version),
// publishes the whole set, and asks what the plane asks after a publish:
// the changed plan's Status and, as a replica's report does, Statuses of
// every plan. It reports the wall time of each part, the process's CPU
// time per iteration (the garbage collector's included, and steadier than
// wall time on a loaded machine), and the live heap after all the
// publishes, which must not grow with their number.
//
//	go test -run '^$' -bench PublishOneOfMany -benchtime 300x ./xds/
func BenchmarkPublishOneOfMany(b *testing.B) {
	for _, n := range []int{200, 1000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			benchPublishOneOfMany(b, n)
		})
	}
}

func benchPublishOneOfMany(b *testing.B, n int) {
	services := make([]string, n)
	for i := range services {
		services[i] = fmt.Sprintf("svc-%04d", i)
	}
	eps := staticFor(b, services...)
	srv, err := New(Options{Endpoints: eps, Logger: quiet})
	must(b, err)
	plans := make([]plan.Plan, n)
	for i, s := range services {
		plans[i] = canaryPlan(s, 0, []string{s})
	}
	ctx := context.Background()
	must(b, srv.Publish(ctx, plans))

	var publish, status, statuses time.Duration
	i := 0
	cpu0 := cpuTime(b)
	for b.Loop() {
		j := i % n
		i++
		plans[j] = canaryPlan(services[j], int32(1+i%99), []string{services[j]})
		start := time.Now()
		must(b, srv.Publish(ctx, plans))
		publish += time.Since(start)

		start = time.Now()
		if st := srv.Status(services[j], plans[j].Version); !st.Current {
			b.Fatalf("plan %s of %s is not current", plans[j].Version, services[j])
		}
		status += time.Since(start)

		start = time.Now()
		versions := make(map[string]string, n)
		for k := range plans {
			versions[services[k]] = plans[k].Version
		}
		if got := srv.Statuses(versions); len(got) != n {
			b.Fatalf("Statuses answered %d of %d", len(got), n)
		}
		statuses += time.Since(start)
	}
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(i) }
	b.ReportMetric(per(cpuTime(b)-cpu0), "cpu-ms/op")
	b.ReportMetric(per(publish), "publish-ms")
	b.ReportMetric(per(status), "status-ms")
	b.ReportMetric(per(statuses), "statuses-ms")
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "live-heap-MiB")
	runtime.KeepAlive(srv)
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
