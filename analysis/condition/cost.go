package condition

import (
	"fmt"
	"math"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
)

// CostLimit is the most one evaluation of a condition may cost, in
// cel-go's cost units (roughly one operation each). Evaluation stops with
// an error past it; Check refuses a condition whose worst case exceeds it.
const CostLimit = costLimit

// maxStringSize bounds the strings a condition can make: its only inputs
// are doubles, so strings come from literals (whose sizes CEL knows) and
// from string(number), which is short.
const maxStringSize = 32

// resultEstimator tells cel-go's cost estimate how large the inputs can
// get: result has at most MaxValues values, values() is as large as its
// argument, and a string made of a number is short. Without it every list
// would count as unbounded.
type resultEstimator struct{}

func (resultEstimator) EstimateSize(n checker.AstNode) *checker.SizeEstimate {
	if p := n.Path(); len(p) == 1 && p[0] == "result" {
		return &checker.SizeEstimate{Min: 0, Max: MaxValues}
	}
	if t := n.Type(); t != nil && t.IsExactType(cel.StringType) {
		return &checker.SizeEstimate{Min: 0, Max: maxStringSize}
	}
	return nil
}

func (e resultEstimator) EstimateCallCost(_, overloadID string, _ *checker.AstNode, args []checker.AstNode) *checker.CallEstimate {
	switch overloadID {
	case "values_double":
		one := checker.FixedSizeEstimate(1)
		return &checker.CallEstimate{CostEstimate: checker.FixedCostEstimate(1), ResultSize: &one}
	case "values_list_double":
		size := checker.SizeEstimate{Min: 0, Max: math.MaxUint64}
		if s := args[0].ComputedSize(); s != nil {
			size = *s
		} else if s := e.EstimateSize(args[0]); s != nil {
			size = *s
		}
		return &checker.CallEstimate{CostEstimate: checker.FixedCostEstimate(1), ResultSize: &size}
	}
	return nil
}

// worstCase estimates the most one evaluation of checked can cost.
func worstCase(env *cel.Env, checked *cel.Ast) (uint64, error) {
	est, err := env.EstimateCost(checked, resultEstimator{})
	if err != nil {
		return 0, fmt.Errorf("estimating its cost: %w", err)
	}
	return est.Max, nil
}

// WorstCaseCost is the most one evaluation of the condition can cost, for
// the shape of result (scalar, or a vector of up to MaxValues values) that
// costs most; math.MaxUint64 means no bound could be found.
func (c *Condition) WorstCaseCost() uint64 { return c.cost }

// checkCost refuses a condition that could exceed CostLimit: at run time
// it would stop with an error, and the measurement count as one, on the
// very query results that matter most (many series).
func checkCost(c *Condition) error {
	if c.cost <= CostLimit {
		return nil
	}
	figure := "has no upper bound"
	if c.cost != math.MaxUint64 {
		figure = fmt.Sprintf("is %s", thousands(c.cost))
	}
	return fmt.Errorf("worst-case cost %s (with result a list of %d values), more than the limit of %s an evaluation may cost; a loop over result inside another loop over it costs %d×%d: compare against an aggregate instead (max, min, a threshold)",
		figure, MaxValues, thousands(CostLimit), MaxValues, MaxValues)
}

// thousands writes n with comma separators, as figures are in the docs.
func thousands(n uint64) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
