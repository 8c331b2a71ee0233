package binomial

import (
	"math"
	"testing"
)

// RingInterval is Interval widened by the ring's own variance: it holds
// the binomial interval, its tails hold at most alpha/2 each, it shrinks
// to Interval as the ring grows, and it matches the normal approximation
// of a beta-binomial (variance np(1-p)(n+points)/(points+1)).
func TestRingInterval(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		n      int
		p      float64
		points int
		alpha  float64
	}{
		{1000, 0.10, 4096, 0.001}, {1000, 0.25, 4096, 0.001}, {1000, 0.50, 4096, 0.001},
		{2000, 0.10, 4096, 1e-6}, {100, 0.3, 1024, 0.01},
	} {
		lo, hi := RingInterval(tc.n, tc.p, tc.points, tc.alpha)
		blo, bhi := Interval(tc.n, tc.p, tc.alpha)
		if lo > blo || hi < bhi {
			t.Errorf("n=%d p=%v: ring interval [%d, %d] narrower than the binomial [%d, %d]", tc.n, tc.p, lo, hi, blo, bhi)
		}
		a, b := float64(tc.points)*tc.p, float64(tc.points)*(1-tc.p)
		var below, above float64
		for k := 0; k < lo; k++ {
			below += betaBinomialPMF(tc.n, k, a, b)
		}
		for k := hi + 1; k <= tc.n; k++ {
			above += betaBinomialPMF(tc.n, k, a, b)
		}
		if below > tc.alpha/2 || above > tc.alpha/2 {
			t.Errorf("n=%d p=%v: tails %g and %g, want each at most %g", tc.n, tc.p, below, above, tc.alpha/2)
		}
		// Normal approximation, within a few keys (not far out in the
		// tails, where the skew of the count tells).
		if tc.alpha < 0.001 {
			continue
		}
		mean := float64(tc.n) * tc.p
		sd := math.Sqrt(mean * (1 - tc.p) * float64(tc.n+tc.points) / float64(tc.points+1))
		z := map[float64]float64{0.001: 3.2905, 0.01: 2.5758}[tc.alpha]
		if math.Abs(float64(lo)-(mean-z*sd)) > 3 || math.Abs(float64(hi)-(mean+z*sd)) > 3 {
			t.Errorf("n=%d p=%v: [%d, %d], normal approximation [%.1f, %.1f]", tc.n, tc.p, lo, hi, mean-z*sd, mean+z*sd)
		}
	}
	// A ring of many points is the binomial.
	lo, hi := RingInterval(1000, 0.1, 1<<30, 0.001)
	if blo, bhi := Interval(1000, 0.1, 0.001); lo != blo || hi != bhi {
		t.Errorf("huge ring: [%d, %d], want the binomial [%d, %d]", lo, hi, blo, bhi)
	}
	if lo, hi := RingInterval(50, 0, 4096, 0.01); lo != 0 || hi != 0 {
		t.Errorf("p=0: [%d, %d]", lo, hi)
	}
	if lo, hi := RingInterval(50, 1, 4096, 0.01); lo != 50 || hi != 50 {
		t.Errorf("p=1: [%d, %d]", lo, hi)
	}
}
