package analysis

import (
	"math"
	"testing"
)

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

// TestMannWhitneyWorkedExamples checks U and the p-values against worked
// examples of the literature.
func TestMannWhitneyWorkedExamples(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name                   string
		x, y                   []float64
		u                      float64
		pTwoSided, pG, pL, tol float64
		exact                  bool
	}{{
		// Aesop's tortoise and hare (Wikipedia, "Mann–Whitney U test"):
		// finishing order T H H H H H T T T T T H. The hares (y) finish
		// ahead of a tortoise in 11 of the 36 pairs, so U = 11. Of the
		// C(12, 6) = 924 orderings, 143 have U ≤ 11 and 813 have U ≥ 11
		// (counted by enumerating them, outside this code).
		name:      "tortoise and hare",
		x:         []float64{1, 7, 8, 9, 10, 11},
		y:         []float64{2, 3, 4, 5, 6, 12},
		u:         11,
		pTwoSided: 2 * 143.0 / 924, pL: 143.0 / 924, pG: 813.0 / 924, tol: 1e-12,
		exact: true,
	}, {
		// SciPy's documentation of mannwhitneyu (after Conover): ages of
		// male and female workers; U1 = 17, exact two-sided p = 14/126.
		name:      "scipy exact",
		x:         []float64{20, 11, 17, 12},
		y:         []float64{19, 22, 16, 29, 24},
		u:         17,
		pTwoSided: 0.1111111111111111, pG: 7.0 / 126, pL: 1 - 4.0/126, tol: 1e-12,
		exact: true,
	}, {
		// The same data with a tie (16 in both samples) goes to the normal
		// approximation with tie and continuity corrections: the 16s tie
		// for half a pair, U = 3 + 4 + 2.5 + 4 + 4 = 17.5,
		// σ² = 20/12 × (10 - (2³-2)/(9·8)), z = (17.5 - 10 ∓ 0.5)/σ.
		name:      "with a tie",
		x:         []float64{20, 11, 16, 12},
		y:         []float64{19, 22, 16, 29, 24},
		u:         17.5,
		pTwoSided: 2 * (1 - normalCDF(7/math.Sqrt(20.0/12*(10-6.0/72)))),
		pG:        1 - normalCDF(7/math.Sqrt(20.0/12*(10-6.0/72))),
		pL:        normalCDF(8 / math.Sqrt(20.0/12*(10-6.0/72))),
		tol:       1e-12,
	}, {
		// Stable error rate 0 everywhere, canary 0.2 everywhere: every
		// canary sample beats every stable one, U = n1·n2, and the
		// approximation (ties within each side) gives a tiny p.
		name: "separated constant samples",
		x:    []float64{0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		y:    []float64{0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2},
		u:    100,
		// σ² = 100/12 × (21 - 2×(10³-10)/(20·19)), z = (100 - 50 ∓ 0.5)/σ.
		pG:        1 - normalCDF(49.5/math.Sqrt(100.0/12*(21-1980.0/380))),
		pTwoSided: 2 * (1 - normalCDF(49.5/math.Sqrt(100.0/12*(21-1980.0/380)))),
		pL:        normalCDF(50.5 / math.Sqrt(100.0/12*(21-1980.0/380))),
		tol:       1e-12,
	}, {
		name: "all equal", x: []float64{3, 3, 3}, y: []float64{3, 3, 3, 3},
		u: 6, pTwoSided: 1, pG: 1, pL: 1, tol: 0,
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := mannWhitney(tc.x, tc.y)
			if r.u != tc.u {
				t.Errorf("U = %v, want %v", r.u, tc.u)
			}
			if r.exact != tc.exact {
				t.Errorf("exact = %v, want %v", r.exact, tc.exact)
			}
			if !near(r.pTwoSided, tc.pTwoSided, tc.tol) || !near(r.pGreater, tc.pG, tc.tol) || !near(r.pLess, tc.pL, tc.tol) {
				t.Errorf("p two-sided %.15g greater %.15g less %.15g; want %.15g %.15g %.15g", r.pTwoSided, r.pGreater, r.pLess, tc.pTwoSided, tc.pG, tc.pL)
			}
		})
	}
}

// TestMannWhitneyCriticalValues checks the exact distribution against the
// table of critical values of U found in statistics textbooks (two-tailed,
// α = 0.05, equal sample sizes): U ≤ critical is significant, one more is
// not.
func TestMannWhitneyCriticalValues(t *testing.T) {
	t.Parallel()
	critical := map[int]int{4: 0, 5: 2, 6: 5, 7: 8, 8: 13, 9: 17, 10: 23, 11: 30, 12: 37, 13: 45, 14: 55, 15: 64, 16: 75, 17: 87, 18: 99, 19: 113, 20: 127}
	for n, c := range critical {
		dist := uDistribution(n, n)
		if p := 2 * cumulative(dist, 0, c); p > 0.05 {
			t.Errorf("n=%d: 2·P(U ≤ %d) = %.4f, want ≤ 0.05", n, c, p)
		}
		if p := 2 * cumulative(dist, 0, c+1); p <= 0.05 {
			t.Errorf("n=%d: 2·P(U ≤ %d) = %.4f, want > 0.05", n, c+1, p)
		}
	}
	// n = 3: even the most extreme ordering has p = 2/20 two-sided.
	if p := 2 * cumulative(uDistribution(3, 3), 0, 0); p != 0.1 {
		t.Errorf("n=3: 2·P(U = 0) = %v, want 0.1", p)
	}
}

// TestUDistribution checks the recurrence against brute force: every
// placement of m canary values among m+n ranks, counted directly.
func TestUDistribution(t *testing.T) {
	t.Parallel()
	for m := 0; m <= 6; m++ {
		for n := 0; n <= 6; n++ {
			want := make([]float64, m*n+1)
			for mask := 0; mask < 1<<(m+n); mask++ {
				if popcount(mask) != m {
					continue
				}
				// Bit i set: rank i holds a y; U adds the x's below it.
				u, xs := 0, 0
				for i := 0; i < m+n; i++ {
					if mask&(1<<i) != 0 {
						u += xs
					} else {
						xs++
					}
				}
				want[u]++
			}
			got := uDistribution(m, n)
			for u := range want {
				if got[u] != want[u] {
					t.Fatalf("m=%d n=%d: N(U=%d) = %v, want %v", m, n, u, got[u], want[u])
				}
			}
		}
	}
}

func popcount(x int) int {
	n := 0
	for ; x != 0; x &= x - 1 {
		n++
	}
	return n
}

// TestNormalApproxNearExact: for 20 against 20 without ties, the
// approximation must agree with the exact distribution to within a few
// thousandths, as the textbooks say it does from about n = 20.
func TestNormalApproxNearExact(t *testing.T) {
	t.Parallel()
	const n = 20
	dist := uDistribution(n, n)
	ranks := make([]float64, 2*n)
	for i := range ranks {
		ranks[i] = float64(i + 1)
	}
	for _, u := range []int{100, 127, 150, 200, 250, 273} {
		pl, pg := normalApprox(n, n, float64(u), ranks)
		el, eg := cumulative(dist, 0, u), cumulative(dist, u, n*n)
		if !near(pl, el, 0.003) || !near(pg, eg, 0.003) {
			t.Errorf("U=%d: approx (%.5f, %.5f), exact (%.5f, %.5f)", u, pl, pg, el, eg)
		}
	}
	// Textbook value: for n = 20, U = 127 is the largest significant U at
	// α = 0.05 two-sided by the approximation too.
	pl, _ := normalApprox(n, n, 127, ranks)
	pl2, _ := normalApprox(n, n, 128, ranks)
	if 2*pl > 0.05 || 2*pl2 <= 0.05 {
		t.Errorf("approximation: 2·P(U ≤ 127) = %.4f, 2·P(U ≤ 128) = %.4f; want ≤ 0.05 and > 0.05", 2*pl, 2*pl2)
	}
}

func TestMinPValue(t *testing.T) {
	t.Parallel()
	cases := []struct {
		n1, n2   int
		twoSided bool
		want     float64
	}{
		{3, 3, false, 1.0 / 20},
		{3, 3, true, 2.0 / 20},
		{4, 4, false, 1.0 / 70},
		{1, 1, true, 1},
		{10, 10, true, 2.0 / 184756},
	}
	for _, tc := range cases {
		if got := minPValue(tc.n1, tc.n2, tc.twoSided); !near(got, tc.want, 1e-12) {
			t.Errorf("minPValue(%d, %d, %v) = %v, want %v", tc.n1, tc.n2, tc.twoSided, got, tc.want)
		}
	}
}

// TestNormalApproxScipy: SciPy documents mannwhitneyu(males, females,
// method="asymptotic") on the data of "scipy exact" above as p =
// 0.11134688653314041 (two-sided, continuity-corrected).
func TestNormalApproxScipy(t *testing.T) {
	t.Parallel()
	x := []float64{20, 11, 17, 12}
	y := []float64{19, 22, 16, 29, 24}
	ranks, _ := rank(x, y)
	pl, pg := normalApprox(len(x), len(y), 17, ranks)
	if p := 2 * min(pl, pg); !near(p, 0.11134688653314041, 1e-12) {
		t.Errorf("asymptotic two-sided p = %.17g, want 0.11134688653314041", p)
	}
}
