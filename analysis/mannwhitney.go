package analysis

import (
	"math"
	"slices"
)

// The Mann-Whitney U test (Wilcoxon rank-sum test) asks whether one sample
// tends to be larger than another without assuming any distribution, which
// suits latencies and error rates; Kayenta judges canaries with it. It is
// implemented here rather than taken from a library: gonum/stat has no
// rank-sum test, and the test is short. mannwhitney_test.go checks it
// against textbook tables and worked examples.

// mwuResult is the outcome of a test of canary samples y against stable
// samples x.
type mwuResult struct {
	// u counts the pairs (x_i, y_j) with y_j > x_i, ties counting one half.
	u float64
	// pGreater is the one-sided p-value for "y tends to be larger than x",
	// pLess for "smaller", pTwoSided for "different".
	pGreater, pLess, pTwoSided float64
	// exact is true when the p-values come from the exact distribution of
	// U rather than from its normal approximation.
	exact bool
}

// maxExactSize is the largest sample for which the exact distribution is
// computed (it costs O(n1 × n2 × n1·n2)); larger samples use the normal
// approximation, which is then very close.
const maxExactSize = 50

func mannWhitney(x, y []float64) mwuResult {
	n1, n2 := len(x), len(y)
	ranks, ties := rank(x, y)
	var ry float64
	for _, r := range ranks[n1:] {
		ry += r
	}
	u := ry - float64(n2*(n2+1))/2
	res := mwuResult{u: u}
	if !ties && n1 <= maxExactSize && n2 <= maxExactSize {
		dist := uDistribution(n2, n1)
		k := int(math.Round(u))
		res.pLess = cumulative(dist, 0, k)
		res.pGreater = cumulative(dist, k, len(dist)-1)
		res.exact = true
	} else {
		res.pLess, res.pGreater = normalApprox(n1, n2, u, ranks)
	}
	res.pTwoSided = min(1, 2*min(res.pLess, res.pGreater))
	return res
}

// rank returns the ranks (1-based, ties getting the mean of the ranks they
// span) of x followed by y, and whether any two values tie.
func rank(x, y []float64) ([]float64, bool) {
	n := len(x) + len(y)
	all := make([]float64, 0, n)
	all = append(all, x...)
	all = append(all, y...)
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		switch {
		case all[a] < all[b]:
			return -1
		case all[a] > all[b]:
			return 1
		}
		return 0
	})
	ranks := make([]float64, n)
	ties := false
	for i := 0; i < n; {
		j := i + 1
		for j < n && all[idx[j]] == all[idx[i]] {
			j++
		}
		if j-i > 1 {
			ties = true
		}
		mean := float64(i+j+1) / 2 // mean of the ranks i+1 .. j
		for k := i; k < j; k++ {
			ranks[idx[k]] = mean
		}
		i = j
	}
	return ranks, ties
}

// uDistribution returns, for samples of sizes m (y) and n (x) without
// ties, the number of the C(m+n, m) equally likely orderings in which
// U = u, for u = 0 .. m·n. It uses the recurrence on the largest value:
// N(a, b, u) = N(a-1, b, u-b) (a y, above all b x's) + N(a, b-1, u).
// Only additions, so float64 keeps the counts exact up to 2^53 and
// relatively exact beyond.
func uDistribution(m, n int) []float64 {
	size := m*n + 1
	// prev[b] holds N(a-1, b, ·), cur[b] holds N(a, b, ·).
	prev := make([][]float64, n+1)
	cur := make([][]float64, n+1)
	for b := range prev {
		prev[b] = make([]float64, size)
		prev[b][0] = 1 // no y at all: one ordering, U = 0
		cur[b] = make([]float64, size)
	}
	for a := 1; a <= m; a++ {
		for b := 0; b <= n; b++ {
			c := cur[b]
			clear(c)
			if b == 0 {
				c[0] = 1 // no x at all: U = 0
				continue
			}
			left := cur[b-1]
			up := prev[b]
			for u := 0; u <= a*b; u++ {
				v := left[u]
				if u >= b {
					v += up[u-b]
				}
				c[u] = v
			}
		}
		prev, cur = cur, prev
	}
	return prev[n]
}

// cumulative is the probability that U lies in [lo, hi].
func cumulative(dist []float64, lo, hi int) float64 {
	lo, hi = max(lo, 0), min(hi, len(dist)-1)
	var total, in float64
	for u, c := range dist {
		total += c
		if u >= lo && u <= hi {
			in += c
		}
	}
	if total == 0 {
		return 1
	}
	return in / total
}

// normalApprox returns P(U ≤ u) and P(U ≥ u) from the normal
// approximation with the tie correction of the variance and a continuity
// correction of one half.
func normalApprox(n1, n2 int, u float64, ranks []float64) (pLess, pGreater float64) {
	n := float64(n1 + n2)
	mu := float64(n1*n2) / 2
	counts := map[float64]int{}
	for _, r := range ranks {
		counts[r]++
	}
	var t float64
	for _, c := range counts {
		tc := float64(c)
		t += tc*tc*tc - tc
	}
	variance := float64(n1*n2) / 12 * ((n + 1) - t/(n*(n-1)))
	if variance <= 0 {
		// Every value is the same: no evidence either way.
		return 1, 1
	}
	sigma := math.Sqrt(variance)
	pLess = normalCDF((u + 0.5 - mu) / sigma)
	pGreater = 1 - normalCDF((u-0.5-mu)/sigma)
	return min(pLess, 1), min(pGreater, 1)
}

func normalCDF(z float64) float64 {
	return 0.5 * math.Erfc(-z/math.Sqrt2)
}

// minPValue is the smallest p-value samples of sizes n1 and n2 can give:
// the probability of the most extreme ordering, 1 / C(n1+n2, n1), doubled
// for a two-sided test. With fewer samples than that allows, no difference
// could ever be significant, and calling the canary fine would be a lie.
func minPValue(n1, n2 int, twoSided bool) float64 {
	// log C(n1+n2, n1) through the log-gamma function, to avoid overflow.
	lg := func(k int) float64 { v, _ := math.Lgamma(float64(k) + 1); return v }
	p := math.Exp(-(lg(n1+n2) - lg(n1) - lg(n2)))
	if twoSided {
		p *= 2
	}
	return min(p, 1)
}
