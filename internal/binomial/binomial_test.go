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
