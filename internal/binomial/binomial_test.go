package binomial

import (
	"math"
	"testing"
)

func TestIntervalKnownValues(t *testing.T) {
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
		lo, hi := Interval(tc.n, tc.p, 1e-4)
		if lo != tc.lo || hi != tc.hi {
			t.Errorf("Interval(%d, %v) = [%d, %d]; want [%d, %d]", tc.n, tc.p, lo, hi, tc.lo, tc.hi)
		}
	}
}

func TestIntervalAgainstNormalApproximation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		n int
		p float64
	}{{4000, 0.05}, {400, 0.5}, {2000, 0.1}} {
		lo, hi := Interval(tc.n, tc.p, 0.01)
		mean := float64(tc.n) * tc.p
		if float64(lo) > mean || float64(hi) < mean {
			t.Errorf("n=%d p=%v: [%d, %d] misses the mean %v", tc.n, tc.p, lo, hi, mean)
		}
		// Against the normal approximation: within a couple of units.
		sd := 2.5758 * math.Sqrt(mean*(1-tc.p))
		if math.Abs(float64(lo)-(mean-sd)) > 2 || math.Abs(float64(hi)-(mean+sd)) > 2 {
			t.Errorf("n=%d p=%v: [%d, %d], normal approximation [%.1f, %.1f]", tc.n, tc.p, lo, hi, mean-sd, mean+sd)
		}
	}
}

// mass is P(lo <= X <= hi) for X ~ Binomial(n, q), 0 < q < 1.
func mass(n int, q float64, lo, hi int) float64 {
	s := 0.0
	for k := max(lo, 0); k <= min(hi, n); k++ {
		s += pmf(n, k, q)
	}
	return s
}

// The interval is the narrowest central one its definition allows, down
// to alphas far below FalseFailure: a sum of the whole mass near 1 (as
// this package once did) rounds the upper tail away below 1e-12 and
// returns an interval too narrow for the alpha asked, hence flaky.
func TestIntervalTails(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		n     int
		p     float64
		alpha float64
	}{
		{4000, 0.05, 0.01}, {4000, 0.05, 1e-6}, {4000, 0.05, 1e-15},
		{4000, 0.5, 1e-6}, {4000, 0.5, 1e-12}, {4000, 0.5, 1e-15},
		{1000, 0.8, Alpha(4)}, {100, 0.1, Alpha(20)}, {10, 0.5, 0.5},
	} {
		lo, hi := Interval(tc.n, tc.p, tc.alpha)
		below, atLo := mass(tc.n, tc.p, 0, lo-1), mass(tc.n, tc.p, 0, lo)
		above, atHi := mass(tc.n, tc.p, hi+1, tc.n), mass(tc.n, tc.p, hi, tc.n)
		if below > tc.alpha/2 || atLo <= tc.alpha/2 {
			t.Errorf("n=%d p=%v alpha=%v: lo=%d, P(X<lo)=%g, P(X<=lo)=%g; want the first k with P(X<=k) > alpha/2",
				tc.n, tc.p, tc.alpha, lo, below, atLo)
		}
		if above > tc.alpha/2 || atHi <= tc.alpha/2 {
			t.Errorf("n=%d p=%v alpha=%v: hi=%d, P(X>hi)=%g, P(X>=hi)=%g; want the last k with P(X>=k) > alpha/2",
				tc.n, tc.p, tc.alpha, hi, above, atHi)
		}
		if tc.p == 0.5 && lo+hi != tc.n {
			t.Errorf("n=%d p=0.5 alpha=%v: [%d, %d] is not symmetric about n/2", tc.n, tc.alpha, lo, hi)
		}
	}
}

func TestAlpha(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		checks int
		want   float64
	}{{1, 1e-6}, {4, 2.5e-7}, {0, 1e-6}, {-3, 1e-6}} {
		if got := Alpha(tc.checks); math.Abs(got-tc.want) > 1e-18 {
			t.Errorf("Alpha(%d) = %g, want %g", tc.checks, got, tc.want)
		}
	}
}

// The intervals the traffic tests use, at their sample sizes and numbers
// of checks, still reject the wrong splits those tests exist to catch.
// miss is the probability that a system serving q instead of p passes one
// check: the chance the test overlooks the bug. Rows follow the callers.
func TestIntervalCatchesWrongSplits(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		test    string
		n       int
		p       float64 // the weight under test
		checks  int     // interval checks in that test
		q       float64 // a wrong split
		maxMiss float64
	}{
		// xds TestGRPCWeightedSplit: [136, 271] of 4000 at 5%. Twice or half
		// the weight fails; 7% instead of 5% only 70% of the time (its 99%
		// interval caught that 99.7% of the time, and failed a correct
		// split once in a hundred runs).
		{"xds weighted split, 10% served at 5%", 4000, 0.05, 1, 0.10, 1e-12},
		{"xds weighted split, 2.5% served at 5%", 4000, 0.05, 1, 0.025, 4e-4},
		{"xds header route, 20% served at 10%", 2000, 0.10, 1, 0.20, 1e-13},
		{"xds header route, 5% served at 10%", 2000, 0.10, 1, 0.05, 2e-4},
		// xds TestGRPCWeightChangesWithoutRestart: 1000 calls per step; it
		// catches a step not taking effect for sure, a doubled weight in
		// nine runs out of ten.
		{"xds weight change, 50% step still at 5%", 1000, 0.50, 2, 0.05, 1e-100},
		{"xds weight change, 10% served at 5%", 1000, 0.05, 2, 0.10, 0.12},
		// kube/xdsplane: 2000 calls, four checks.
		{"xdsplane feeder, 40% served at 30%", 2000, 0.30, 4, 0.40, 2e-5},
		{"xdsplane feeder, 70% served at 80%", 2000, 0.80, 4, 0.70, 2e-7},
		// internal/grpcecho: 2 s at 400 calls/s, at least 200 measured.
		{"grpcecho load, 60% served at 30%", 800, 0.30, 1, 0.60, 1e-30},
		{"grpcecho load, 60% served at 30%, fewest calls", 200, 0.30, 1, 0.60, 1e-4},
		// examples/demo: 3 s pauses at 300 calls/s; a step of v2's rollout
		// gets Alpha(12) (see checkSteps). The previous step's weight fails.
		{"demo pause at 10%, 50% served", 900, 0.10, 12, 0.50, 1e-90},
		{"demo pause at 50%, 10% served", 900, 0.50, 12, 0.10, 1e-90},
		// kube/manager: windows of at least 100 calls, bounded by twice the
		// plans of a rollout (see checkSplits).
		{"manager window at 10%, 50% served", 100, 0.10, 40, 0.50, 1e-4},
	} {
		lo, hi := Interval(tc.n, tc.p, Alpha(tc.checks))
		if miss := mass(tc.n, tc.q, lo, hi); miss > tc.maxMiss {
			t.Errorf("%s: [%d, %d] of %d passes with probability %.3g, want at most %g", tc.test, lo, hi, tc.n, miss, tc.maxMiss)
		}
	}
}
