// Package binomial gives the acceptance interval the traffic tests use:
// how many of n requests may go to a subset with weight p before the split
// is wrong rather than unlucky. Tolerances computed this way, not lucky
// hard-coded ranges, keep those tests honest and non-flaky.
//
// A test judges a correct split wrong with the probability alpha it chose,
// so alpha is how often the test fails by construction. CI runs every test
// on every push: at 1% (a 99% interval) one run in a hundred fails a
// correct split, and a test known to be flaky stops being read. Tests
// therefore take their alpha from Alpha, which keeps the whole test's
// false-failure rate within FalseFailure however many intervals it checks.
package binomial

import "math"

// FalseFailure bounds the probability that a test using these intervals
// fails although the split it measures is right: once in a million runs.
// The price is a wider interval, about ±4.9 standard deviations instead of
// ±2.6 at 1%, so a small error passes more often: 4000 requests at 5%
// still reject 10% in all but 5e-13 of the runs, but 7% only in 70%.
// TestIntervalCatchesWrongSplits shows what each caller still catches.
const FalseFailure = 1e-6

// Alpha is the alpha to give Interval for each of the checks intervals one
// test judges, so that the test fails a correct split with probability at
// most FalseFailure: the probability that any check fails is at most the
// sum of their alphas (Bonferroni, true however the checks depend on each
// other). A test that does not know its number of checks in advance may
// pass an upper bound. checks below 1 count as 1.
func Alpha(checks int) float64 {
	return FalseFailure / float64(max(checks, 1))
}

// Interval returns the central interval [lo, hi] holding at least 1-alpha
// of Binomial(n, p): P(X < lo) <= alpha/2 and P(X > hi) <= alpha/2. It sums
// the exact probability mass, computed in log space, each tail from its
// own end so that a tiny alpha is not lost in the rounding of a sum near 1.
func Interval(n int, p, alpha float64) (lo, hi int) {
	switch {
	case p <= 0:
		return 0, 0
	case p >= 1:
		return n, n
	}
	lo, hi = 0, n
	for k, tail := 0, 0.0; k <= n; k++ {
		if tail += pmf(n, k, p); tail > alpha/2 {
			lo = k
			break
		}
	}
	for k, tail := n, 0.0; k >= 0; k-- {
		if tail += pmf(n, k, p); tail > alpha/2 {
			hi = k
			break
		}
	}
	return lo, hi
}

// pmf is P(X = k) for X ~ Binomial(n, p), 0 < p < 1.
func pmf(n, k int, p float64) float64 {
	a, _ := math.Lgamma(float64(n + 1))
	b, _ := math.Lgamma(float64(k + 1))
	c, _ := math.Lgamma(float64(n - k + 1))
	return math.Exp(a - b - c + float64(k)*math.Log(p) + float64(n-k)*math.Log1p(-p))
}
