// Package binomial gives the acceptance interval the traffic tests use:
// how many of n requests may go to a subset with weight p before the split
// is wrong rather than unlucky. Tolerances computed this way, not lucky
// hard-coded ranges, keep those tests honest and non-flaky.
package binomial

import "math"

// Interval returns the central interval [lo, hi] holding at least 1-alpha
// of Binomial(n, p): P(X < lo) <= alpha/2 and P(X > hi) <= alpha/2. It sums
// the exact probability mass, computed in log space.
func Interval(n int, p, alpha float64) (lo, hi int) {
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
