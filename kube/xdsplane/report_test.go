package xdsplane

import (
	"encoding/json"
	"fmt"
	"net"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/xds"
)

// reportMap is a report ConfigMap as a Reporter writes it.
func reportMap(t testing.TB, ns, replica string, renew time.Time, heartbeat time.Duration, entries map[string]ReportEntry) *corev1.ConfigMap {
	t.Helper()
	data, err := json.Marshal(Report{Format: ReportFormat, Replica: replica, RenewTime: renew, Heartbeat: metav1.Duration{Duration: heartbeat}, Rollouts: entries})
	if err != nil {
		t.Fatal(err)
	}
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: ReportName(replica), Labels: reportLabels()},
		Data:       map[string]string{ReportKey: string(data)},
	}
}

// thousand is a report entry for each of 1,000 Rollouts with realistic
// names, every one with clients that acknowledged.
func thousand() map[string]ReportEntry {
	out := map[string]ReportEntry{}
	for i := range 1000 {
		out[fmt.Sprintf("team-%02d/service-%04d", i%40, i)] = ReportEntry{Plan: fmt.Sprintf("%016x", i*7919), Clients: 12, State: string(engine.AckAcknowledged)}
	}
	return out
}

// A replica serving 1,000 Rollouts with clients reports them in a small
// fraction of a ConfigMap's 1 MiB.
func TestReportSizeFor1000Rollouts(t *testing.T) {
	t.Parallel()
	cm := reportMap(t, "sluice-system", "sluice-controller-5d8f9c7b6-x2x4z", time.Now(), 10*time.Second, thousand())
	n := len(cm.Data[ReportKey])
	t.Logf("a report of 1,000 Rollouts is %d bytes (%.0f per Rollout)", n, float64(n)/1000)
	if n > 128<<10 {
		t.Errorf("a report of 1,000 Rollouts is %d bytes, want at most 128 KiB (a ConfigMap holds 1 MiB)", n)
	}
	rep, err := parseReport(cm)
	if err != nil || len(rep.Rollouts) != 1000 {
		t.Fatalf("parse: %v, %d entries", err, len(rep.Rollouts))
	}
}

func BenchmarkReport1000(b *testing.B) {
	entries := thousand()
	var n int
	for b.Loop() {
		data, err := json.Marshal(Report{Format: ReportFormat, Replica: "r", RenewTime: time.Now(), Rollouts: entries})
		if err != nil {
			b.Fatal(err)
		}
		n = len(data)
	}
	b.ReportMetric(float64(n), "bytes/report")
}

// fakeClock is the Reports' clock in unit tests.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time                { return c.t }
func (c *fakeClock) add(d time.Duration)           { c.t = c.t.Add(d) }
func (c *fakeClock) ago(d time.Duration) time.Time { return c.t.Add(-d) }

// A report counts while the leader keeps seeing it renewed, by the
// leader's own clock: a dead replica's report stops counting after three
// heartbeats, one seen first long after its renewTime never counts, and a
// replica whose clock is behind counts from its next renewal.
func TestReportFreshness(t *testing.T) {
	t.Parallel()
	const hb = time.Second
	key := types.NamespacedName{Namespace: "shop", Name: "reviews"}
	entries := map[string]ReportEntry{key.String(): {Plan: "p", Clients: 1, State: "Acknowledged"}}
	tests := []struct {
		name string
		// renews are the renewTimes written, relative to the clock at the
		// time; after each the clock moves by step.
		renews []time.Duration
		step   time.Duration
		want   bool
	}{
		{"just written", []time.Duration{0}, 0, true},
		{"renewed every heartbeat", []time.Duration{0, 0, 0, 0, 0}, hb, true},
		{"not renewed for three heartbeats", []time.Duration{0}, 3*hb + time.Millisecond, false},
		{"first seen long after it was written", []time.Duration{-time.Minute}, 0, false},
		{"a clock a minute ahead: counts from when seen", []time.Duration{time.Minute}, 2 * hb, true},
		{"a clock a minute ahead, then silent", []time.Duration{time.Minute}, 4 * hb, false},
		{"a clock a minute behind, renewed", []time.Duration{-time.Minute, -time.Minute}, hb, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clock := &fakeClock{t: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
			r := newReports(nil, ReportOptions{Namespace: "sluice-system", Replica: "a", Heartbeat: hb})
			r.now = clock.now
			for _, d := range tc.renews {
				r.observe(reportMap(t, "sluice-system", "b", clock.t.Add(d), hb, entries))
				clock.add(tc.step)
			}
			if got := len(r.answers(key)) == 1; got != tc.want {
				t.Errorf("report counts: %v, want %v", got, tc.want)
			}
		})
	}
}

// A change of another replica's answer about a Rollout wakes the waits
// on that Rollout, and only those; the replica's own report and
// reports that say the same again wake nobody.
func TestReportChangedWakesItsRollout(t *testing.T) {
	t.Parallel()
	clock := &fakeClock{t: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	r := newReports(nil, ReportOptions{Namespace: "sluice-system", Replica: "a", Heartbeat: time.Second})
	r.now = clock.now
	reviews := types.NamespacedName{Namespace: "shop", Name: "reviews"}
	ratings := types.NamespacedName{Namespace: "shop", Name: "ratings"}
	entry := func(state string) ReportEntry { return ReportEntry{Plan: "p", Clients: 1, State: state} }
	report := func(replica string, e map[string]ReportEntry) *corev1.ConfigMap {
		return reportMap(t, "sluice-system", replica, clock.t, time.Second, e)
	}
	r.observe(report("b", map[string]ReportEntry{reviews.String(): entry(statePending), ratings.String(): entry("Acknowledged")}))

	steps := []struct {
		name    string
		do      func()
		reviews bool // the reviews wait wakes
		ratings bool
	}{
		{"the same entries renewed", func() {
			clock.add(time.Second)
			r.observe(report("b", map[string]ReportEntry{reviews.String(): entry(statePending), ratings.String(): entry("Acknowledged")}))
		}, false, false},
		{"reviews acknowledged", func() {
			r.observe(report("b", map[string]ReportEntry{reviews.String(): entry("Acknowledged"), ratings.String(): entry("Acknowledged")}))
		}, true, false},
		{"this replica's own report", func() {
			r.observe(report("a", map[string]ReportEntry{reviews.String(): entry("Rejected")}))
		}, false, false},
		{"a new replica with ratings clients", func() {
			r.observe(report("c", map[string]ReportEntry{ratings.String(): entry(statePending)}))
		}, false, true},
		{"replica b's report deleted", func() { r.set(ReportName("b"), nil) }, true, true},
	}
	for _, s := range steps {
		chReviews, chRatings := r.changed(reviews), r.changed(ratings)
		s.do()
		if got := closed(chReviews); got != s.reviews {
			t.Errorf("%s: reviews woken %v, want %v", s.name, got, s.reviews)
		}
		if got := closed(chRatings); got != s.ratings {
			t.Errorf("%s: ratings woken %v, want %v", s.name, got, s.ratings)
		}
	}
	if a := r.answers(reviews); len(a) != 0 {
		t.Errorf("answers about reviews after b's report went: %+v, want none (the replica's own report never counts)", a)
	}
	if a := r.answers(ratings); len(a) != 1 || a[0].replica != "c" {
		t.Errorf("answers about ratings: %+v, want replica c's", a)
	}
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// BenchmarkCollect1000 is the cost of one report's collection on a
// replica serving 1,000 Rollouts, each with one subscribed client: the
// work behind each write, at most one per MinInterval.
func BenchmarkCollect1000(b *testing.B) {
	srv, err := xds.New(xds.Options{Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	plane := NewPlane(b.Context(), srv, Options{})
	var changes []change
	for i := range 1000 {
		ro, p := rolloutAt(b, "shop", fmt.Sprintf("svc-%04d", i), fmt.Sprintf("svc-%04d", i), 30, "1")
		changes = append(changes, change{key: keyOf(ro), plan: p, rv: ro.ResourceVersion})
	}
	if err := plane.update(b.Context(), changes...); err != nil {
		b.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = Runnable(srv, lis).Start(b.Context()) }()
	addr := lis.Addr().String()
	for i := range 1000 {
		startRawClient(b, addr, fmt.Sprintf("node-%04d", i), fmt.Sprintf("svc-%04d", i))
	}
	for srv.Status(xds.ServiceKey("shop", "svc-0999"), changes[999].plan.Version).NoClients() {
		time.Sleep(10 * time.Millisecond)
	}
	r := &Reporter{plane: plane}
	var n int
	for b.Loop() {
		n = len(r.collect())
	}
	b.ReportMetric(float64(n), "entries")
}
