package binomial

import "math"

// RingInterval is Interval for keys placed on a consistent-hash ring
// rather than drawn one by one: the central interval [lo, hi] holding at
// least 1-alpha of the number of n keys that land on a share p of a ring
// of points points (ring hash load balancing). Each key is a Bernoulli
// trial with the probability of the share of the hash space the ring
// gives p, and that share is itself a sample: points×p points placed by
// hash own a Beta(points×p, points×(1-p)) share of the ring, not exactly
// p. The count is therefore beta-binomial, wider than Binomial(n, p) by
// the ring's own variance (about ±0.5 percentage point of the key space
// on a 4,096-point ring at 10%), which Interval alone would take for an
// error.
func RingInterval(n int, p float64, points int, alpha float64) (lo, hi int) {
	switch {
	case p <= 0:
		return 0, 0
	case p >= 1:
		return n, n
	}
	a, b := float64(points)*p, float64(points)*(1-p)
	lo, hi = 0, n
	for k, tail := 0, 0.0; k <= n; k++ {
		if tail += betaBinomialPMF(n, k, a, b); tail > alpha/2 {
			lo = k
			break
		}
	}
	for k, tail := n, 0.0; k >= 0; k-- {
		if tail += betaBinomialPMF(n, k, a, b); tail > alpha/2 {
			hi = k
			break
		}
	}
	return lo, hi
}

// betaBinomialPMF is P(X = k) for X ~ BetaBinomial(n, a, b), a, b > 0:
// C(n, k) B(k+a, n-k+b) / B(a, b), in log space.
func betaBinomialPMF(n, k int, a, b float64) float64 {
	c := lgamma(float64(n+1)) - lgamma(float64(k+1)) - lgamma(float64(n-k+1))
	return math.Exp(c + lbeta(float64(k)+a, float64(n-k)+b) - lbeta(a, b))
}

func lbeta(x, y float64) float64 { return lgamma(x) + lgamma(y) - lgamma(x+y) }

func lgamma(x float64) float64 {
	v, _ := math.Lgamma(x)
	return v
}
