package condition

import (
	"math"

	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"
)

// Threshold returns the number a condition compares the result with, so
// that a dashboard can draw a metric's value against it: the constant of
// the expression's only ordering comparison (<, <=, >, >=) between a
// number and something else, as in `result[0] >= 0.99`,
// `all(result, x, x < 0.05)` or `isNaN(result[0]) || result[0] < 5`.
// An expression with no such comparison, or with several (`result[0] > 1
// && result[0] < 5`), has no single threshold; ok is false, as it is for
// an expression that does not parse.
func Threshold(expr string) (value float64, ok bool) {
	se, _, err := envs()
	if err != nil {
		return 0, false
	}
	parsed, iss := se.Parse(expr)
	if iss.Err() != nil {
		return 0, false
	}
	var found []float64
	ast.PreOrderVisit(parsed.NativeRep().Expr(), ast.NewExprVisitor(func(e ast.Expr) {
		if e.Kind() != ast.CallKind {
			return
		}
		call := e.AsCall()
		switch call.FunctionName() {
		case operators.Less, operators.LessEquals, operators.Greater, operators.GreaterEquals:
		default:
			return
		}
		args := call.Args()
		if len(args) != 2 {
			return
		}
		l, lok := number(args[0])
		r, rok := number(args[1])
		switch {
		case lok && !rok && !isSize(args[1]):
			found = append(found, l)
		case rok && !lok && !isSize(args[0]):
			found = append(found, r)
		}
	}))
	if len(found) != 1 || math.IsNaN(found[0]) || math.IsInf(found[0], 0) {
		return 0, false
	}
	return found[0], true
}

// isSize tells a count of series (`size(result) > 0`), which guards a
// condition rather than judging the value, from the value itself.
func isSize(e ast.Expr) bool {
	return e.Kind() == ast.CallKind && e.AsCall().FunctionName() == "size"
}

// number is the value of a numeric literal, or of a negated one.
func number(e ast.Expr) (float64, bool) {
	switch e.Kind() {
	case ast.LiteralKind:
		switch v := e.AsLiteral().(type) {
		case types.Double:
			return float64(v), true
		case types.Int:
			return float64(v), true
		case types.Uint:
			return float64(v), true
		}
	case ast.CallKind:
		if c := e.AsCall(); c.FunctionName() == operators.Negate && len(c.Args()) == 1 {
			if v, ok := number(c.Args()[0]); ok {
				return -v, true
			}
		}
	}
	return 0, false
}
