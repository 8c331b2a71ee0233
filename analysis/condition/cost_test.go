package condition

import (
	"math"
	"strings"
	"testing"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
)

// The estimate bounds what an evaluation really costs on the largest
// result a condition takes, and Check refuses exactly the conditions whose
// estimate is past CostLimit.
func TestWorstCaseCost(t *testing.T) {
	t.Parallel()
	cases := []struct {
		expr    string
		refused bool
	}{
		{"result[0] > 0.5", false},
		{"first(result) < 0.05", false},
		{"all(result, x, x < 0.05)", false},
		{"any(result, x, isNaN(x))", false},
		{"result.filter(x, x > 1.0).size() == 0", false},
		{"(result + result).all(x, x < 1.0)", false},
		{"string(first(result)).matches('^1')", false},
		{"result.all(x, result.all(y, x + y > -1.0))", true},
		{"values(result).all(x, result.exists(y, x < y))", true},
		{"all(result, x, all(result, y, all(result, z, x + y + z > 0.0)))", true},
	}
	_, vectorEnv, err := envs()
	if err != nil {
		t.Fatal(err)
	}
	vals := make([]ref.Val, MaxValues)
	for i := range vals {
		vals[i] = types.Double(float64(i+1) / MaxValues) // every value in (0, 1]: no loop stops early
	}
	big := types.NewRefValList(types.DefaultTypeAdapter, vals)
	for _, tc := range cases {
		t.Run(tc.expr, func(t *testing.T) {
			t.Parallel()
			c, err := Compile(tc.expr)
			if err != nil {
				t.Fatal(err)
			}
			err = Check(tc.expr)
			switch {
			case tc.refused && (err == nil || !strings.Contains(err.Error(), "worst-case cost")):
				t.Fatalf("Check = %v, want the cost refused (estimate %d)", err, c.WorstCaseCost())
			case !tc.refused && err != nil:
				t.Fatalf("Check = %v, want it accepted", err)
			}
			// What the evaluation really costs: within the estimate for
			// what Check accepts, past the limit for what it refuses.
			checked, iss := vectorEnv.Compile(tc.expr)
			if iss.Err() != nil {
				t.Fatal(iss.Err())
			}
			prg, err := vectorEnv.Program(checked, cel.EvalOptions(cel.OptTrackCost), cel.CostLimit(CostLimit))
			if err != nil {
				t.Fatal(err)
			}
			_, det, err := prg.Eval(map[string]any{"result": big})
			switch {
			case tc.refused && (err == nil || !strings.Contains(err.Error(), "cost")):
				t.Fatalf("evaluation on %d values: %v, want it stopped by the cost limit", MaxValues, err)
			case tc.refused:
			case err != nil:
				t.Fatal(err)
			case *det.ActualCost() > c.WorstCaseCost():
				t.Fatalf("actual cost %d on %d values is above the estimate %d", *det.ActualCost(), MaxValues, c.WorstCaseCost())
			}
		})
	}
}

func TestCostFigure(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cost uint64
		want string
	}{
		{7_005_002, "worst-case cost is 7,005,002 (with result a list of 1000 values), more than the limit of 1,000,000"},
		{math.MaxUint64, "worst-case cost has no upper bound"},
	} {
		err := checkCost(&Condition{cost: tc.cost})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("checkCost(%d) = %v, want %q", tc.cost, err, tc.want)
		}
	}
	if err := checkCost(&Condition{cost: CostLimit}); err != nil {
		t.Errorf("at the limit: %v", err)
	}
}
