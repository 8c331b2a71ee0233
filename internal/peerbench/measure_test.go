package peerbench

import (
	"math"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func TestRequestKind(t *testing.T) {
	for _, tc := range []struct{ method, url, want string }{
		{"GET", "/api/v1/namespaces", "LIST namespaces"},
		{"GET", "/api/v1/namespaces/ns", "GET namespaces"},
		{"GET", "/apis/apps/v1/namespaces/ns/replicasets?watch=true&resourceVersion=1", "WATCH replicasets"},
		{"GET", "/apis/apps/v1/replicasets", "LIST replicasets"},
		{"PATCH", "/apis/argoproj.io/v1alpha1/namespaces/ns/rollouts/a/status", "PATCH rollouts/status"},
		{"PUT", "/apis/apps/v1/namespaces/ns/replicasets/a/scale", "PUT replicasets/scale"},
		{"POST", "/api/v1/namespaces/ns/events", "POST events"},
		{"GET", "/apis", "GET /apis"},
		{"GET", "/api/v1", "GET /api/v1"},
	} {
		r := httptest.NewRequest(tc.method, tc.url, nil)
		if got := RequestKind(r); got != tc.want {
			t.Errorf("%s %s: %q, want %q", tc.method, tc.url, got, tc.want)
		}
	}
}

const histText = `# TYPE h histogram
h_bucket{c="a",le="0.01"} 5
h_bucket{c="a",le="0.1"} 9
h_bucket{c="a",le="+Inf"} 10
h_sum{c="a"} 1.5
h_count{c="a"} 10
h_bucket{c="b",le="0.01"} 0
h_bucket{c="b",le="0.1"} 10
h_bucket{c="b",le="+Inf"} 10
h_sum{c="b"} 0.5
h_count{c="b"} 10
`

func TestHistogramQuantile(t *testing.T) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(histText))
	if err != nil {
		t.Fatal(err)
	}
	a := HistogramOf(fams, "h", map[string]string{"c": "a"})
	if a.Count() != 10 || a.Sum != 1.5 {
		t.Fatalf("histogram a: %+v", a)
	}
	// Rank 5 of 10 is the top of the first bucket.
	if q := a.Quantile(0.5); math.Abs(q-0.01) > 1e-9 {
		t.Errorf("p50 %v, want 0.01", q)
	}
	// Rank 9.9 falls in +Inf: the highest finite bound.
	if q := a.Quantile(0.99); q != 0.1 {
		t.Errorf("p99 %v, want 0.1", q)
	}
	both := HistogramOf(fams, "h", nil)
	if both.Count() != 20 {
		t.Fatalf("summed count %v, want 20", both.Count())
	}
	// Rank 10 of 20: 5 below 0.01, 19 below 0.1: 0.01 + 0.09*5/14.
	if q, want := both.Quantile(0.5), 0.01+0.09*5/14; math.Abs(q-want) > 1e-9 {
		t.Errorf("summed p50 %v, want %v", q, want)
	}
	if d := both.Since(a); d.Count() != 10 || math.Abs(d.Sum-0.5) > 1e-9 {
		t.Errorf("since: %+v, want b's 10 observations", d)
	}
}

func TestParseStatCPU(t *testing.T) {
	// pid (comm with spaces) state ppid ... utime=250 stime=50 (fields 14, 15).
	stat := "42 (my (odd) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 1 1 1"
	got, err := parseStatCPU(stat)
	if err != nil || got != 3*time.Second {
		t.Fatalf("parseStatCPU: %v, %v; want 3s", got, err)
	}
	u, err := ReadUsage(os.Getpid())
	if err != nil || u.HWM <= 0 || u.RSS <= 0 {
		t.Fatalf("ReadUsage of self: %+v, %v", u, err)
	}
}
