package analysis

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/sluicehq/sluice/analysis/condition"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// judge turns one taken measurement into its outcome, the value as text
// and, unless Successful, the reason in words.
func judge(m *metric, r Result) (v1alpha1.AnalysisPhase, string, string) {
	if r.Err != nil {
		return v1alpha1.AnalysisError, "", r.Err.Error()
	}
	if m.compare != nil {
		return judgeCompare(m.compare, r.Stable, r.Canary)
	}
	return judgeThreshold(m, r.Value)
}

// judgeThreshold applies the conditions. No data is Inconclusive whatever
// the conditions say. A true failureCondition wins; an evaluation error is
// an Error (a NaN cannot be ordered in CEL, so `result[0] < 0.05` on NaN is
// one); a NaN or Inf that no condition explicitly accepts or rejects is an
// Error. With one condition only, the other outcome is its negation.
func judgeThreshold(m *metric, v Value) (v1alpha1.AnalysisPhase, string, string) {
	if len(v.Values) == 0 {
		return v1alpha1.AnalysisInconclusive, "[]", "no data: the query returned no series"
	}
	value := formatValue(v)
	eval := func(c *condition.Condition) (bool, error) {
		if v.Scalar {
			return c.EvalScalar(v.Values[0])
		}
		return c.EvalVector(v.Values)
	}
	var failed, succeeded bool
	var failErr, succErr error
	if m.failure != nil {
		failed, failErr = eval(m.failure)
		if failErr == nil && failed {
			return v1alpha1.AnalysisFailed, value, fmt.Sprintf("value %s: failureCondition `%s` is true", value, m.failure)
		}
	}
	if m.success != nil {
		succeeded, succErr = eval(m.success)
	}
	switch {
	case failErr != nil:
		return v1alpha1.AnalysisError, value, fmt.Sprintf("value %s: failureCondition `%s`: %v", value, m.failure, failErr)
	case succErr != nil:
		return v1alpha1.AnalysisError, value, fmt.Sprintf("value %s: successCondition `%s`: %v", value, m.success, succErr)
	case succeeded:
		return v1alpha1.AnalysisSuccessful, value, ""
	case !allFinite(v.Values):
		return v1alpha1.AnalysisError, value, fmt.Sprintf("value %s is not a finite number and no condition holds for it; conditions can test isNaN() and isInf()", value)
	case m.success != nil && m.failure != nil:
		return v1alpha1.AnalysisInconclusive, value, fmt.Sprintf("value %s: neither successCondition `%s` nor failureCondition `%s` holds", value, m.success, m.failure)
	case m.success == nil:
		return v1alpha1.AnalysisSuccessful, value, ""
	}
	return v1alpha1.AnalysisFailed, value, fmt.Sprintf("value %s: successCondition `%s` is false", value, m.success)
}

// judgeCompare runs the Mann-Whitney U test of canary against stable.
// Samples that are not finite numbers (a rate of 0/0 where a side had no
// traffic) carry no information and are left out.
func judgeCompare(c *compareMetric, stable, canary []float64) (v1alpha1.AnalysisPhase, string, string) {
	x, y := finite(stable), finite(canary)
	medians := fmt.Sprintf("canary %s vs stable %s", formatFloat(median(y)), formatFloat(median(x)))
	value := fmt.Sprintf("%s (medians of %d and %d samples)", medians, len(y), len(x))
	if len(x) == 0 || len(y) == 0 {
		return v1alpha1.AnalysisInconclusive, value, fmt.Sprintf("no data: %d stable and %d canary samples", len(x), len(y))
	}
	twoSided := c.direction == v1alpha1.CompareEither
	if p := minPValue(len(x), len(y), twoSided); p > c.alpha {
		return v1alpha1.AnalysisInconclusive, value, fmt.Sprintf("%d stable and %d canary samples are too few to reach confidence %s (the smallest possible p-value is %s); widen compare.window or shorten compare.step",
			len(x), len(y), formatFloat(1-c.alpha), formatFloat(p))
	}
	t := mannWhitney(x, y)
	var p float64
	var worse string
	switch c.direction {
	case v1alpha1.CompareDecrease:
		p, worse = t.pLess, "lower"
	case v1alpha1.CompareEither:
		p, worse = t.pTwoSided, "different"
		if t.pLess < t.pGreater {
			worse = "lower"
		} else {
			worse = "higher"
		}
	default:
		p, worse = t.pGreater, "higher"
	}
	value += ", p=" + formatFloat(p)
	if p <= c.alpha {
		return v1alpha1.AnalysisFailed, value, fmt.Sprintf("canary is significantly %s than stable: %s (p=%s ≤ %s)", worse, medians, formatFloat(p), formatFloat(c.alpha))
	}
	return v1alpha1.AnalysisSuccessful, value, ""
}

func allFinite(xs []float64) bool {
	for _, x := range xs {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return false
		}
	}
	return true
}

func finite(xs []float64) []float64 {
	out := make([]float64, 0, len(xs))
	for _, x := range xs {
		if !math.IsNaN(x) && !math.IsInf(x, 0) {
			out = append(out, x)
		}
	}
	return out
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// maxShownValues bounds the text of a vector in status.
const maxShownValues = 5

// formatValue writes a scalar as a number and a vector as a list, e.g.
// [0.993, 0.987], eliding all but the first few values.
func formatValue(v Value) string {
	if v.Scalar && len(v.Values) == 1 {
		return formatFloat(v.Values[0])
	}
	parts := make([]string, 0, min(len(v.Values), maxShownValues)+1)
	for i, x := range v.Values {
		if i == maxShownValues {
			parts = append(parts, fmt.Sprintf("… %d more", len(v.Values)-maxShownValues))
			break
		}
		parts = append(parts, formatFloat(x))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// formatFloat keeps six significant digits: enough to compare with any
// threshold a person writes, short enough for a status line.
func formatFloat(x float64) string {
	return strconv.FormatFloat(x, 'g', 6, 64)
}
