package main

import (
	"math"
	"testing"
)

// binomialInterval returns the central interval [lo, hi] of Binomial(n, p)
// that holds at least 1-alpha of the mass, leaving at most alpha/2 out on
// each side. (The same computation as the xds package's tests.)
func binomialInterval(n int, p, alpha float64) (lo, hi int) {
	switch {
	case p <= 0:
		return 0, 0
	case p >= 1:
		return n, n
	}
	logPMF := func(k int) float64 {
		a, _ := math.Lgamma(float64(n + 1))
		b, _ := math.Lgamma(float64(k + 1))
		c, _ := math.Lgamma(float64(n - k + 1))
		return a - b - c + float64(k)*math.Log(p) + float64(n-k)*math.Log1p(-p)
	}
	cdf := 0.0
	lo, hi = -1, n
	for k := 0; k <= n; k++ {
		cdf += math.Exp(logPMF(k))
		if lo < 0 && cdf > alpha/2 {
			lo = k
		}
		if cdf >= 1-alpha/2 {
			hi = k
			break
		}
	}
	return lo, hi
}

func TestBinomialInterval(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		n      int
		p      float64
		lo, hi int
	}{
		// Binomial(1000, 0.1): mean 100, sd 9.49; 1e-4 is about ±3.9 sd.
		{1000, 0.1, 65, 139}, // checked with exact sums in Python
		{1000, 0.5, 439, 561},
		{100, 0, 0, 0},
		{100, 1, 100, 100},
	} {
		lo, hi := binomialInterval(tc.n, tc.p, 1e-4)
		if lo != tc.lo || hi != tc.hi {
			t.Errorf("binomialInterval(%d, %v) = [%d, %d]; want [%d, %d]", tc.n, tc.p, lo, hi, tc.lo, tc.hi)
		}
	}
}

func TestSetBackend(t *testing.T) {
	t.Parallel()
	in := "spec:\n  backend:\n    version: v1 \n    endpoints:\n      - 127.0.0.1:50051\n  # version: v0\n"
	got, err := setBackend(in, "v2", "127.0.0.1:4242")
	if err != nil {
		t.Fatal(err)
	}
	want := "spec:\n  backend:\n    version: v2\n    endpoints:\n      - 127.0.0.1:4242\n  # version: v0\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if _, err := setBackend(in+"    version: v9\n", "v2", "127.0.0.1:1"); err == nil {
		t.Error("two version lines: no error")
	}
}
