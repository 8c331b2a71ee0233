package condition

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestCompileRejects(t *testing.T) {
	t.Parallel()
	cases := []struct {
		expr string
		want string
	}{
		{"", "must not be empty"},
		{"   ", "must not be empty"},
		{"result[0] >", "Syntax error"},
		{"reslt[0] > 1", "undeclared reference to 'reslt'"},
		{"result[0] + 1.0", "must evaluate to true or false"},
		{"first(result)", "must evaluate to true or false"},
		{`result[0] > "a"`, "no matching overload"},
		{"nosuch(result)", "undeclared reference to 'nosuch'"},
		{"all(result, 1, true)", "argument must be a simple name"},
		{"size(result) > 0 && isNaN(result)", "with result as a list of values"},
		{strings.Repeat("true && ", 1000) + "true", "size"},
	}
	for _, tc := range cases {
		t.Run(tc.expr, func(t *testing.T) {
			t.Parallel()
			err := Check(tc.expr)
			if err == nil {
				t.Fatalf("Check(%q) = nil, want an error containing %q", tc.expr, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Check(%q) = %q, want it to contain %q", tc.expr, err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), "container") {
				t.Errorf("error spans lines, but it ends up in one field error: %q", err)
			}
		})
	}
}

func TestEval(t *testing.T) {
	t.Parallel()
	nan, inf := math.NaN(), math.Inf(1)
	type want struct {
		ok  bool
		err string // substring; empty: no error
	}
	cases := []struct {
		expr   string
		scalar *float64
		vector []float64
		want   want
	}{
		{"result[0] >= 0.99", nil, []float64{0.995}, want{ok: true}},
		{"result[0] >= 0.99", nil, []float64{0.98}, want{}},
		{"result[0] > 0", nil, []float64{0.5}, want{ok: true}},
		{"result[0] == 0", nil, []float64{0}, want{ok: true}},
		{"size(result) == 1", nil, []float64{0}, want{ok: true}},
		{"size(result) != 0", nil, nil, want{}},
		{"size(result) > 0 && result[0] >= 0.99", nil, []float64{}, want{}},
		{"all(result, x, x < 0.05)", nil, []float64{0.01, 0.04}, want{ok: true}},
		{"all(result, x, x < 0.05)", nil, []float64{0.01, 0.06}, want{}},
		{"all(result, x, x < 0.05)", ptr(0.01), nil, want{ok: true}},
		{"any(result, x, x > 0.5)", nil, []float64{0.1, 0.6}, want{ok: true}},
		{"any(result, x, x > 0.5)", ptr(0.4), nil, want{}},
		{"result.all(x, x < 1)", nil, []float64{0.5}, want{ok: true}},
		{"result.exists(x, x > 1)", nil, []float64{0.5, 2}, want{ok: true}},
		{"first(result) < 300", ptr(250), nil, want{ok: true}},
		{"first(result) < 300", nil, []float64{350, 1}, want{}},
		{"first(result) < 300", nil, []float64{}, want{err: "empty"}},
		{"result < 300", ptr(250), nil, want{ok: true}},
		{"result < 300", nil, []float64{250}, want{err: "single value"}},
		{"result[0] < 300", ptr(250), nil, want{err: "scalar"}},
		{"isNaN(result[0]) || result[0] < 0.05", nil, []float64{nan}, want{ok: true}},
		// Ordering NaN is an error in CEL: the measurement becomes an
		// Error unless the condition tests for NaN first.
		{"result[0] < 0.05", nil, []float64{nan}, want{err: "NaN"}},
		{"result[0] != 0", nil, []float64{1}, want{ok: true}},
		{"0 != result[0]", nil, []float64{0}, want{}},
		{"0 == result[0]", nil, []float64{0}, want{ok: true}},
		{"result[0] == 1", nil, []float64{1.5}, want{}},
		{"isInf(first(result))", nil, []float64{inf}, want{ok: true}},
		{"isInf(result)", ptr(-inf), nil, want{ok: true}},
		{"result[1] > 0", nil, []float64{1}, want{err: "index"}},
		{"1 / int(result[0]) > 0", nil, []float64{0}, want{err: "divi"}},
	}
	for _, tc := range cases {
		t.Run(tc.expr, func(t *testing.T) {
			t.Parallel()
			c, err := Compile(tc.expr)
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			var ok bool
			if tc.scalar != nil {
				ok, err = c.EvalScalar(*tc.scalar)
			} else {
				ok, err = c.EvalVector(tc.vector)
			}
			switch {
			case tc.want.err == "" && err != nil:
				t.Fatalf("error %v, want %v", err, tc.want.ok)
			case tc.want.err != "" && (err == nil || !strings.Contains(err.Error(), tc.want.err)):
				t.Fatalf("got (%v, %v), want an error containing %q", ok, err, tc.want.err)
			case tc.want.err == "" && ok != tc.want.ok:
				t.Fatalf("got %v, want %v", ok, tc.want.ok)
			}
		})
	}
}

func TestShapeErrorsAreMarked(t *testing.T) {
	t.Parallel()
	c, err := Compile("result > 1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.EvalVector([]float64{2}); !errors.Is(err, ErrShape) {
		t.Errorf("EvalVector on a scalar-only condition: %v, want ErrShape", err)
	}
	if _, err := c.EvalScalar(2); err != nil {
		t.Errorf("EvalScalar: %v", err)
	}
}

func TestCostLimit(t *testing.T) {
	t.Parallel()
	// Quadratic in the vector's size: MaxValues values cost far beyond
	// the limit, so evaluation stops instead of hogging the controller.
	c, err := Compile("result.all(x, result.all(y, x + y > -1.0))")
	if err != nil {
		t.Fatal(err)
	}
	big := make([]float64, MaxValues)
	if _, err := c.EvalVector(big); err == nil || !strings.Contains(err.Error(), "cost") {
		t.Fatalf("err = %v, want the cost limit to stop it", err)
	}
	if _, err := c.EvalVector(make([]float64, MaxValues+1)); !errors.Is(err, ErrShape) {
		t.Fatalf("err = %v, want ErrShape for more than MaxValues values", err)
	}
	if ok, err := c.EvalVector(big[:10]); err != nil || !ok {
		t.Fatalf("small input: (%v, %v), want (true, nil)", ok, err)
	}
}

func ptr(f float64) *float64 { return &f }
