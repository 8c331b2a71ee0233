package argo

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/expr-lang/expr"

	"github.com/sluicehq/sluice/analysis/condition"
)

type conditionCase struct {
	argo string
	cel  string // empty: untranslatable
	// why is a part of the error (untranslatable) or of an approximation.
	why string
}

var conditionCases = []conditionCase{
	// The forms Argo's documentation and users write most.
	{argo: "result[0] >= 0.95", cel: "result[0] >= 0.95"},
	{argo: "result[0] <= 0.95", cel: "result[0] <= 0.95"},
	{argo: "result[0] >= 10", cel: "result[0] >= 10"},
	{argo: "result > 10", cel: "result > 10"},
	{argo: "result >= 0.95", cel: "result >= 0.95"},
	{argo: "all(result, # < 1000)", cel: "all(result, x, x < 1000)"},
	{argo: "all(result, {# < 1000})", cel: "all(result, x, x < 1000)"},
	{argo: "any(result, # > 1)", cel: "any(result, x, x > 1)"},
	{argo: "result | all(# > 0)", cel: "all(result, x, x > 0)"},
	{argo: "isNaN(result) || result >= 0.95", cel: "isNaN(result) || result >= 0.95"},
	{argo: "isNaN(result[0]) or result[0] < 0.05", cel: "isNaN(result[0]) || result[0] < 0.05"},
	{argo: "isInf(result)", cel: "isInf(result)"},
	{argo: "result[0] >= 0.90 and result[1] < 0.5", cel: "result[0] >= 0.9 && result[1] < 0.5"},
	{argo: "not (result[0] > 1)", cel: "!(result[0] > 1)"},
	{argo: "!(result[0] > 1) || result[0] == 0", cel: "!(result[0] > 1) || result[0] == 0"},
	{argo: "result[0] != 0", cel: "result[0] != 0"},
	{argo: "result[0] == 1.5", cel: "result[0] == 1.5"},
	{argo: "0 < result[0] < 1", cel: "0 < result[0] && result[0] < 1"},
	{argo: "(result[0] + result[1]) / 2 < 0.5", cel: "(result[0] + result[1]) / 2.0 < 0.5"},
	{argo: "result[0] * 100 > 5", cel: "result[0] * 100.0 > 5"},
	{argo: "result[0] - 1 > -0.5", cel: "result[0] - 1.0 > -0.5"},
	{argo: "-result[0] < 1", cel: "-result[0] < 1"},
	{argo: "result[-1] > 2", cel: "result[size(result) - 1] > 2"},
	{argo: "result[len(result) - 1] > 2", cel: "result[size(result) - 1] > 2", why: "negative index"},
	{argo: "count(result, # > 1) >= 2", cel: "size(values(result).filter(x, x > 1)) >= 2"},
	{argo: "none(result, {# > 1})", cel: "!values(result).exists(x, x > 1)"},
	{argo: "one(result, # > 1)", cel: "values(result).exists_one(x, x > 1)"},
	{argo: "filter(result, # > 1) | all(# < 5)", cel: "values(result).filter(x, x > 1).all(x, x < 5)"},
	{argo: "all(map(result, # * 2), # < 1)", cel: "values(result).map(x, x * 2.0).all(x, x < 1)"},
	{argo: "result[0] in [1, 2]", cel: "result[0] in [1.0, 2.0]"},
	{argo: "2 in result", cel: "2.0 in values(result)"},
	{argo: "result[0] not in [1, 2]", cel: "!(result[0] in [1.0, 2.0])"},
	{argo: "result[0] > 1 ? result[1] < 1 : true", cel: "result[0] > 1 ? result[1] < 1 : true"},
	{argo: "abs(result[0] - 1) < 0.1", cel: "(result[0] - 1.0 < 0.0 ? -(result[0] - 1.0) : result[0] - 1.0) < 0.1"},
	{argo: "max(result[0], result[1]) < 3", cel: "(result[0] >= result[1] ? result[0] : result[1]) < 3"},
	{argo: "min(result[0], 2) > 1", cel: "(result[0] <= 2.0 ? result[0] : 2.0) > 1"},
	{argo: "first(result) > 1", cel: "first(result) > 1"},
	{argo: "last(result) > 1", cel: "result[size(result) - 1] > 1"},
	{argo: "asFloat(result[0]) > 1", cel: "result[0] > 1"},
	{argo: "asInt(result[0]) == 3", cel: "int(result[0]) == 3", why: "NaN"},
	{argo: "len(result) == 0 || result[0] >= 0.95", cel: "size(result) == 0 || result[0] >= 0.95", why: "Inconclusive"},
	{argo: "len(result) > 0 && result[0] >= 0.95", cel: "size(result) > 0 && result[0] >= 0.95", why: "Inconclusive"},
	{argo: "len(result) == result[0]", cel: "double(size(result)) == result[0]", why: "Inconclusive"},
	{argo: "default(result, 0) < 0.05", cel: "result < 0.05", why: "missing result"},
	{argo: "isNil(result) || result[0] < 1", cel: "false || result[0] < 1", why: "missing or empty"},
	{argo: "result[0] % 2 == 0", why: "integers"},
	{argo: "len(result) % 2 == 0", cel: "size(result) % 2 == 0", why: "Inconclusive"},
	{argo: "true", cel: "true"},

	// What has no equivalent.
	{argo: "result == 'It worked!'", why: "string"},
	{argo: "result.message == 'ok'", why: "no fields"},
	{argo: "all(result, any(result, # > 0))", why: "worst-case cost"},
	{argo: "result.foo > 1", why: "no fields"},
	{argo: "result[0] ** 2 > 1", why: "power"},
	{argo: "result[0] ^ 2 > 1", why: "power"},
	{argo: "result ?? 0 > 1", why: "??"},
	{argo: "result != nil", why: "nil"},
	{argo: "1..3 | all(# > 0)", why: "ranges"},
	{argo: "'a' matches 'b'", why: "strings"},
	{argo: "sum(result) > 1", why: "sum"},
	{argo: "mean(result) > 1", why: "mean"},
	{argo: "result[1:2] | all(# > 0)", why: "slice"},
	{argo: "let x = result[0]; x > 1", why: "let"},
	{argo: "foo > 1", why: `unknown name "foo"`},
	{argo: "result[0]", why: "not true or false"},
	{argo: "result[0] > {{args.threshold}}", why: "placeholder"},
	{argo: "result[0] >", why: "not a valid Argo condition"},
	{argo: "", why: "empty"},
	{argo: "now() > 1", why: "now"},
	{argo: "all(result, #index > 0)", why: "#index"},
	{argo: "result[0] > 1 and 2", why: "not two booleans"},
	{argo: "{'a': 1}.a > 0", why: "map"},
	{argo: "result?.foo > 1", why: "optional"},
	{argo: "map(result, # > 1) | all(#)", why: "map to a boolean"},
}

func TestTranslateCondition(t *testing.T) {
	t.Parallel()
	for _, tc := range conditionCases {
		t.Run(tc.argo, func(t *testing.T) {
			t.Parallel()
			got, err := TranslateCondition(tc.argo)
			if tc.cel == "" {
				if err == nil {
					t.Fatalf("translated to %q; want no equivalent (%s)", got.CEL, tc.why)
				}
				if !errors.Is(err, ErrUntranslatable) || !strings.Contains(err.Error(), tc.why) {
					t.Fatalf("error %q; want ErrUntranslatable mentioning %q", err, tc.why)
				}
				return
			}
			if err != nil {
				t.Fatalf("error %v; want %q", err, tc.cel)
			}
			if got.CEL != tc.cel {
				t.Errorf("CEL %q; want %q", got.CEL, tc.cel)
			}
			notes := strings.Join(got.Approximations, "\n")
			if tc.why == "" && notes != "" {
				t.Errorf("unexpected approximations: %s", notes)
			}
			if tc.why != "" && !strings.Contains(notes, tc.why) {
				t.Errorf("approximations %q; want one mentioning %q", notes, tc.why)
			}
		})
	}
}

// samples are results both languages judge: vectors of ordinary numbers
// (never empty: Sluice does not evaluate conditions on no data) and
// scalars.
var samples = []any{
	[]float64{0.97}, []float64{0.5, 2.5}, []float64{3, -1, 0}, []float64{0, 0}, []float64{1000, 1e-3, 2, 2},
	0.97, 12.0, 0.0, -3.0,
}

// TestTranslatedConditionsAgree evaluates each translated condition and its
// Argo original (with expr itself, in Argo's environment) on the same
// results: where both give a verdict, it must be the same.
func TestTranslatedConditionsAgree(t *testing.T) {
	t.Parallel()
	for _, tc := range conditionCases {
		if tc.cel == "" {
			continue
		}
		t.Run(tc.argo, func(t *testing.T) {
			t.Parallel()
			agreed := checkAgreement(t, tc.argo)
			// A condition written for a vector or a scalar must find a
			// verdict for at least one sample.
			if agreed == 0 {
				t.Errorf("no sample gave a verdict in both languages")
			}
		})
	}
}

// checkAgreement fails t where the translation of argo and argo itself
// disagree on a sample, and returns on how many samples both decided.
func checkAgreement(t *testing.T, argo string) int {
	t.Helper()
	c, err := TranslateCondition(argo)
	if err != nil {
		return 0
	}
	compiled, err := condition.Compile(c.CEL)
	if err != nil {
		t.Fatalf("%q does not compile: %v", c.CEL, err)
	}
	agreed := 0
	for _, s := range samples {
		want, err := evalArgo(argo, s)
		if err != nil {
			continue
		}
		var got bool
		switch s := s.(type) {
		case []float64:
			got, err = compiled.EvalVector(s)
		case float64:
			got, err = compiled.EvalScalar(s)
		}
		if err != nil {
			continue
		}
		agreed++
		if got != want {
			t.Errorf("result %v: Argo %q is %v, Sluice %q is %v", s, argo, want, c.CEL, got)
		}
	}
	return agreed
}

// evalArgo evaluates a condition as Argo Rollouts does: expr with result
// and the helper functions Argo declares (isNaN, isInf, asInt, asFloat,
// isNil, default), each written here from Argo's documentation.
func evalArgo(cond string, result any) (out bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = errors.New("panic")
		}
	}()
	env := map[string]any{
		"result":  result,
		"isNaN":   math.IsNaN,
		"isInf":   func(f float64) bool { return math.IsInf(f, 0) },
		"asInt":   func(x any) int64 { return int64(toFloat(x)) },
		"asFloat": toFloat,
		"isNil":   func(any) bool { return result == nil },
		"default": func(_, d any) any {
			if result == nil {
				return d
			}
			return result
		},
	}
	prg, err := expr.Compile(cond, expr.Env(env))
	if err != nil {
		return false, err
	}
	v, err := expr.Run(prg, env)
	if err != nil {
		return false, err
	}
	b, ok := v.(bool)
	if !ok {
		return false, errors.New("not a boolean")
	}
	return b, nil
}

func toFloat(x any) float64 {
	switch x := x.(type) {
	case float64:
		return x
	case int:
		return float64(x)
	case int64:
		return float64(x)
	}
	panic("not a number")
}

// FuzzTranslateCondition: the translator never panics; what it returns
// compiles in analysis/condition, and where Argo and Sluice both judge a
// sample they agree; anything else is reported as untranslatable.
func FuzzTranslateCondition(f *testing.F) {
	for _, tc := range conditionCases {
		f.Add(tc.argo)
	}
	f.Fuzz(func(t *testing.T, src string) {
		c, err := TranslateCondition(src)
		if err != nil {
			if !errors.Is(err, ErrUntranslatable) {
				t.Fatalf("error %v does not wrap ErrUntranslatable", err)
			}
			return
		}
		if err := condition.Check(c.CEL); err != nil {
			t.Fatalf("%q → %q does not compile: %v", src, c.CEL, err)
		}
		checkAgreement(t, src)
	})
}
