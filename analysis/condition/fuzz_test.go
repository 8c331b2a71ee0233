package condition

import (
	"math"
	"strconv"
	"testing"
)

// FuzzCondition feeds arbitrary expressions and values: compiling and
// evaluating must never panic, and evaluation must be deterministic, since
// a measurement's outcome is recorded once and never recomputed.
func FuzzCondition(f *testing.F) {
	for _, s := range []string{
		"result[0] >= 0.99", "size(result) > 0 && result[0] < 0.05", "all(result, x, x < 0.05)",
		"any(result, x, isNaN(x))", "first(result) == 0", "result > 1", "values(result)[0] != 1",
		"result.map(x, x * 2.0).exists(y, y > 1.0)", "isInf(result)", "0 == result[0]",
	} {
		f.Add(s, 0.5, 2.5)
	}
	f.Fuzz(func(t *testing.T, expr string, a, b float64) {
		c, err := Compile(expr)
		if err != nil {
			if Check(expr) == nil {
				t.Fatalf("Compile fails but Check passes for %q", expr)
			}
			return
		}
		for _, vec := range [][]float64{nil, {a}, {a, b}} {
			ok1, err1 := c.EvalVector(vec)
			ok2, err2 := c.EvalVector(vec)
			if ok1 != ok2 || (err1 == nil) != (err2 == nil) {
				t.Fatalf("%q on %v: (%v, %v) then (%v, %v)", expr, vec, ok1, err1, ok2, err2)
			}
		}
		ok1, err1 := c.EvalScalar(a)
		ok2, err2 := c.EvalScalar(a)
		if ok1 != ok2 || (err1 == nil) != (err2 == nil) {
			t.Fatalf("%q on %v: (%v, %v) then (%v, %v)", expr, a, ok1, err1, ok2, err2)
		}
	})
}

// FuzzThreshold checks the comparisons users write most against Go's own:
// `first(result) OP t` must agree with x OP t for every x and t, with NaN
// refusing to be ordered (so that the measurement becomes an Error).
func FuzzThreshold(f *testing.F) {
	f.Add(0.99, 0.995, uint8(0))
	f.Add(0.0, 0.0, uint8(4))
	f.Add(-1.5, 3.0, uint8(2))
	f.Add(math.NaN(), 1.0, uint8(1))
	f.Add(math.Inf(1), 1e300, uint8(3))
	ops := []struct {
		op   string
		eval func(x, t float64) bool
	}{
		{"<", func(x, t float64) bool { return x < t }},
		{"<=", func(x, t float64) bool { return x <= t }},
		{">", func(x, t float64) bool { return x > t }},
		{">=", func(x, t float64) bool { return x >= t }},
		{"==", func(x, t float64) bool { return x == t }},
		{"!=", func(x, t float64) bool { return x != t }},
	}
	f.Fuzz(func(t *testing.T, threshold, x float64, opIndex uint8) {
		if math.IsNaN(threshold) || math.IsInf(threshold, 0) {
			return // not a CEL literal
		}
		o := ops[int(opIndex)%len(ops)]
		lit := strconv.FormatFloat(threshold, 'g', -1, 64)
		expr := "first(result) " + o.op + " " + lit
		c, err := Compile(expr)
		if err != nil {
			t.Fatalf("Compile(%q): %v", expr, err)
		}
		for _, shape := range []string{"scalar", "vector"} {
			var got bool
			if shape == "scalar" {
				got, err = c.EvalScalar(x)
			} else {
				got, err = c.EvalVector([]float64{x, 42})
			}
			if math.IsNaN(x) && o.op != "==" && o.op != "!=" {
				if err == nil {
					t.Fatalf("%s with result %v (%s): %v, want an error", expr, x, shape, got)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s with result %v (%s): %v", expr, x, shape, err)
			}
			if want := o.eval(x, threshold); got != want {
				t.Fatalf("%s with result %v (%s) = %v, want %v", expr, x, shape, got, want)
			}
		}
	})
}
