package grpcecho

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	"github.com/sluicehq/sluice/internal/binomial"
	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/xds"
)

func start(t *testing.T, o Options) *Backend {
	t.Helper()
	b, err := Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Stop)
	return b
}

// A backend fails exactly its share of any 100 calls, names itself in a
// trailer on successes and failures alike, and counts both in the
// counter Prometheus scrapes, with the labels it was given.
func TestBackendFailsItsShareAndCountsIt(t *testing.T) {
	t.Parallel()
	for _, fail := range []int{0, 30, 50, 100} {
		t.Run(fmt.Sprintf("fail %d%%", fail), func(t *testing.T) {
			t.Parallel()
			b := start(t, Options{Service: "echo", Version: "v7", FailPercent: fail, Labels: map[string]string{"revision": "abc123"}})
			cc, err := grpc.NewClient(b.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			c := grpc_testing.NewTestServiceClient(cc)
			failed := 0
			for i := range 200 {
				var tr metadata.MD
				_, err := c.UnaryCall(context.Background(), &grpc_testing.SimpleRequest{}, grpc.Trailer(&tr))
				if err != nil {
					failed++
				}
				if got := tr.Get(VersionKey); len(got) != 1 || got[0] != "v7" {
					t.Fatalf("call %d (err %v): trailer %s = %q, want v7", i, err, VersionKey, got)
				}
			}
			if want := 2 * fail; failed != want {
				t.Errorf("%d of 200 calls failed, want %d", failed, want)
			}
			if b.Calls() != 200 {
				t.Errorf("Calls() = %d, want 200", b.Calls())
			}
			got := scrape(t, b.MetricsAddr)
			want := map[string]float64{"OK": float64(200 - 2*fail), "Unavailable": float64(2 * fail)}
			for code, n := range want {
				if got[code] != n {
					t.Errorf("%s{code=%q} = %v, want %v (scraped %v)", MetricName, code, got[code], n, got)
				}
			}
		})
	}
}

func TestBackendRefusesAnImpossibleShare(t *testing.T) {
	t.Parallel()
	for _, fail := range []int{-1, 101} {
		if b, err := Start(Options{Version: "v1", FailPercent: fail}); err == nil {
			b.Stop()
			t.Errorf("FailPercent %d: no error", fail)
		}
	}
}

// scrape reads the backend's counter by code, checking its constant
// labels on the way.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	fam, ok := fams[MetricName]
	if !ok {
		t.Fatalf("no %s in the metrics", MetricName)
	}
	out := map[string]float64{}
	for _, m := range fam.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["service"] != "echo" || labels["version"] != "v7" || labels["revision"] != "abc123" {
			t.Errorf("labels %v, want service=echo version=v7 revision=abc123", labels)
		}
		out[labels["code"]] = m.GetCounter().GetValue()
	}
	return out
}

// The load generator is a real xDS client: it follows the weights of the
// plan a real xDS server serves, and counts who answered.
func TestLoadFollowsTheServedWeights(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("about 3 s of calls")
	}
	v1, v2 := start(t, Options{Service: "echo", Version: "v1"}), start(t, Options{Service: "echo", Version: "v2", FailPercent: 50})
	eps := xds.NewStatic()
	for _, b := range []*Backend{v1, v2} {
		if err := eps.Set("", "echo", b.Version, b.Addr); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := xds.New(xds.Options{Endpoints: eps, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("xDS server: %v", err)
		}
	})
	p := plan.Plan{
		Service: "echo",
		Subsets: []plan.Subset{{Name: plan.Stable, Revision: "v1"}, {Name: plan.Canary, Revision: "v2"}},
		Hosts: []plan.Host{{Name: "echo", Port: 50051, Routes: []plan.Route{{Name: "primary", Destinations: []plan.Destination{
			{Subset: plan.Stable, Weight: 70}, {Subset: plan.Canary, Weight: 30},
		}}}}},
	}
	p.Seal()
	if err := srv.Publish(ctx, []plan.Plan{p}); err != nil {
		t.Fatal(err)
	}

	l, err := StartLoad(ctx, LoadOptions{XDSAddr: lis.Addr().String(), Target: "echo", Rate: 400})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Stop()
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if _, err := srv.WaitHost(wctx, "echo", p.Version); err != nil {
		t.Fatal(err)
	}
	from := time.Now()
	time.Sleep(2 * time.Second)
	s := l.Window(from, time.Now())
	if s.Total < 200 {
		t.Fatalf("only %d calls in 2 s at 400/s: %s", s.Total, s)
	}
	if n := s.Calls["v1"] + s.Calls["v2"]; n != s.Total {
		t.Errorf("calls %v: want only v1 and v2 answering", s.Calls)
	}
	if lo, hi := binomial.Interval(s.Total, 0.3, binomial.Alpha(1)); s.Calls["v2"] < lo || s.Calls["v2"] > hi {
		t.Errorf("v2 answered %d of %d calls, want [%d, %d] for 30%%: %s", s.Calls["v2"], s.Total, lo, hi, s)
	}
	// v2 fails every other call: its failures are attributed to it.
	if f := s.Failed["v2"]; f < s.Calls["v2"]/2-1 || f > s.Calls["v2"]/2+1 || s.Failed["v1"] != 0 {
		t.Errorf("failed %v of %v, want half of v2's and none of v1's", s.Failed, s.Calls)
	}
	// Each failure is kept with its status.
	if errs := s.ErrorsOf("v2"); len(errs) != s.Failed["v2"] || len(s.Errors) != len(errs) {
		t.Errorf("errors %v, want one per failed call of v2 (%d)", s.Errors, s.Failed["v2"])
	}
	for _, e := range s.Errors {
		if e.Code != codes.Unavailable || !strings.Contains(e.Message, "v2 is failing on purpose") || e.At.Before(from) {
			t.Errorf("error %s, want v2's own UNAVAILABLE", e)
			break
		}
	}
	if got := s.String(); !strings.Contains(got, "v1 ") || !strings.Contains(got, "v2 ") {
		t.Errorf("String() = %q", got)
	}

	// WaitFor notices when all calls go to one version.
	p.Hosts[0].Routes[0].Destinations = []plan.Destination{{Subset: plan.Stable, Weight: 100}, {Subset: plan.Canary, Weight: 0}}
	p.Seal()
	if err := srv.Publish(ctx, []plan.Plan{p}); err != nil {
		t.Fatal(err)
	}
	since, err := l.WaitFor(wctx, "v1", 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if after := l.Window(since, time.Now()); after.Calls["v2"] != 0 {
		t.Errorf("calls since %v: %s, want v1 alone", since, after)
	}
}

func TestSplitShareAndString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		s    Split
		v    string
		want float64
		str  string
	}{
		{Split{}, "v1", 0, "no calls"},
		{Split{Total: 4, Calls: map[string]int{"v1": 3, "v2": 1}}, "v2", 25, "v1 75.0% / v2 25.0%"},
		{Split{Total: 2, Calls: map[string]int{"": 1, "v1": 1}}, "", 50, "no answer 50.0% / v1 50.0%"},
	}
	for _, tc := range tests {
		if got := tc.s.Share(tc.v); got != tc.want {
			t.Errorf("%+v.Share(%q) = %v, want %v", tc.s, tc.v, got, tc.want)
		}
		if got := tc.s.String(); got != tc.str {
			t.Errorf("String() = %q, want %q", got, tc.str)
		}
	}
}

// A backend standing in for a pod listens on an address an EndpointSlice
// may hold, and answers there.
func TestPodAddressServes(t *testing.T) {
	t.Parallel()
	ip, err := PodAddress()
	if errors.Is(err, ErrNoPodAddress) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if a := net.ParseIP(ip); a == nil || a.To4() == nil || a.IsLoopback() || a.IsLinkLocalUnicast() {
		t.Fatalf("PodAddress() = %q, want an IPv4 address neither loopback nor link-local", ip)
	}
	b := start(t, Options{Service: "echo", Version: "v1", Host: ip})
	if host, _, _ := net.SplitHostPort(b.Addr); host != ip {
		t.Fatalf("backend listens on %s, want %s", b.Addr, ip)
	}
	cc, err := grpc.NewClient(b.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	resp, err := grpc_testing.NewTestServiceClient(cc).UnaryCall(context.Background(), &grpc_testing.SimpleRequest{})
	if err != nil || resp.GetHostname() != "v1" {
		t.Fatalf("call at %s: %v, %v", b.Addr, resp, err)
	}
}
