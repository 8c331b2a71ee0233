// Package condition compiles and evaluates the CEL conditions of analysis
// metrics (successCondition, failureCondition) over a query's `result`.
//
// `result` is a double when the query returns a scalar, and a list of
// doubles, one per series, when it returns an instant vector (which is what
// `sum(...)`, `rate(...)` and nearly every other query returns). Besides the
// CEL standard library, conditions may use:
//
//	first(result)           the value of a scalar, or the first value of a
//	                        vector (an error on an empty one)
//	values(result)          a scalar as a one-element list; a list as is
//	all(result, x, pred)    pred holds for every value (scalar or vector)
//	any(result, x, pred)    pred holds for at least one value
//	isNaN(x), isInf(x)      test a double for NaN and ±Inf
//
// The standard forms work too: result[0], size(result),
// result.all(x, pred), result.exists(x, pred). Numbers of different types
// compare as numbers, so `result[0] > 0` needs no `0.0`.
//
// An expression is compiled against both shapes of `result`; it is valid
// when it type-checks, as a boolean, against at least one. This package
// depends on cel-go only, so that manifest validation can use it without
// pulling in the Prometheus client.
package condition

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/operators"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"github.com/google/cel-go/parser"
)

// Limits that keep a hostile or careless expression from costing the
// controller: conditions are short, and an evaluation over even a large
// vector stays far below the cost limit.
const (
	maxExprLength = 4096
	costLimit     = 1_000_000
)

// MaxValues is the largest vector a condition is evaluated on. A gate
// judges a handful of series; thousands mean a query that forgot to
// aggregate, and cel-go's cost tracking grows quadratically with the size
// of a list.
const MaxValues = 1000

// ErrShape is wrapped by Eval errors where the query returned a shape
// (scalar or vector) the expression cannot handle.
var ErrShape = errors.New("condition does not fit the shape of the result")

// Condition is a compiled condition. It is safe for concurrent use.
type Condition struct {
	expr string
	// scalar and vector are nil when the expression does not type-check
	// with that shape of result.
	scalar cel.Program
	vector cel.Program
	// cost is the worst case of the two (see WorstCaseCost).
	cost uint64
}

// String returns the expression.
func (c *Condition) String() string { return c.expr }

var (
	envOnce              sync.Once
	scalarEnv, vectorEnv *cel.Env
	envErr               error
)

func envs() (*cel.Env, *cel.Env, error) {
	envOnce.Do(func() {
		scalarEnv, envErr = newEnv(cel.DoubleType)
		if envErr == nil {
			vectorEnv, envErr = newEnv(cel.ListType(cel.DoubleType))
		}
	})
	return scalarEnv, vectorEnv, envErr
}

func newEnv(resultType *cel.Type) (*cel.Env, error) {
	listOfDouble := cel.ListType(cel.DoubleType)
	env, err := cel.NewEnv(
		cel.Variable("result", resultType),
		cel.CrossTypeNumericComparisons(true),
		cel.ParserExpressionSizeLimit(maxExprLength),
		cel.Macros(quantifier("all", parser.MakeAll), quantifier("any", parser.MakeExists),
			numericEquality(operators.Equals), numericEquality(operators.NotEquals)),
		cel.Function("first",
			cel.Overload("first_double", []*cel.Type{cel.DoubleType}, cel.DoubleType,
				cel.UnaryBinding(func(v ref.Val) ref.Val { return v })),
			cel.Overload("first_list_double", []*cel.Type{listOfDouble}, cel.DoubleType,
				cel.UnaryBinding(firstOfList))),
		cel.Function("values",
			cel.Overload("values_double", []*cel.Type{cel.DoubleType}, listOfDouble,
				cel.UnaryBinding(func(v ref.Val) ref.Val {
					return types.DefaultTypeAdapter.NativeToValue([]ref.Val{v})
				})),
			cel.Overload("values_list_double", []*cel.Type{listOfDouble}, listOfDouble,
				cel.UnaryBinding(func(v ref.Val) ref.Val { return v }))),
		cel.Function("isNaN",
			cel.Overload("isNaN_double", []*cel.Type{cel.DoubleType}, cel.BoolType,
				cel.UnaryBinding(floatTest(math.IsNaN)))),
		cel.Function("isInf",
			cel.Overload("isInf_double", []*cel.Type{cel.DoubleType}, cel.BoolType,
				cel.UnaryBinding(floatTest(func(f float64) bool { return math.IsInf(f, 0) })))),
	)
	if err != nil {
		return nil, fmt.Errorf("condition: building the CEL environment: %w", err)
	}
	return env, nil
}

// quantifier defines the global form name(list, x, pred) as
// values(list).<all|exists>(x, pred), so it also accepts a scalar result.
func quantifier(name string, expand func(parser.ExprHelper, ast.Expr, []ast.Expr) (ast.Expr, *common.Error)) cel.Macro {
	return cel.GlobalMacro(name, 3, func(eh cel.MacroExprFactory, _ ast.Expr, args []ast.Expr) (ast.Expr, *common.Error) {
		return expand(eh, eh.NewCall("values", args[0]), args[1:])
	})
}

func firstOfList(v ref.Val) ref.Val {
	l, ok := v.(traits.Lister)
	if !ok {
		return types.NewErr("first: want a list, got %s", v.Type())
	}
	if l.Size() == types.IntZero {
		return types.NewErr("first: the result is empty")
	}
	return l.Get(types.IntZero)
}

// numericEquality lets `result[0] == 0` type-check. CEL declares equality
// for two values of one type, so a double compared with an integer literal
// is rejected before it runs, although at run time CEL compares numbers of
// different types by value. The macro turns `x == 0` into `dyn(x) == 0`,
// which the checker accepts and which evaluates exactly as CEL defines;
// comparisons without an integer literal are left alone, fully checked.
func numericEquality(op string) cel.Macro {
	return cel.GlobalMacro(op, 2, func(eh cel.MacroExprFactory, _ ast.Expr, args []ast.Expr) (ast.Expr, *common.Error) {
		l, r := args[0], args[1]
		switch {
		case isIntLiteral(r) && !isIntLiteral(l):
			return eh.NewCall(op, eh.NewCall("dyn", l), r), nil
		case isIntLiteral(l) && !isIntLiteral(r):
			return eh.NewCall(op, l, eh.NewCall("dyn", r)), nil
		}
		return nil, nil // no expansion: the operator as written
	})
}

func isIntLiteral(e ast.Expr) bool {
	if e.Kind() != ast.LiteralKind {
		return false
	}
	switch e.AsLiteral().(type) {
	case types.Int, types.Uint:
		return true
	}
	return false
}

func floatTest(test func(float64) bool) func(ref.Val) ref.Val {
	return func(v ref.Val) ref.Val {
		d, ok := v.(types.Double)
		if !ok {
			return types.NewErr("want a double, got %s", v.Type())
		}
		return types.Bool(test(float64(d)))
	}
}

// Check reports whether expr is a valid condition whose worst-case cost
// stays within CostLimit. It is the validation.Validator
// ConditionChecker.
func Check(expr string) error {
	c, err := Compile(expr)
	if err != nil {
		return err
	}
	return checkCost(c)
}

// Compile compiles expr against both shapes of result.
func Compile(expr string) (*Condition, error) {
	if strings.TrimSpace(expr) == "" {
		return nil, errors.New("must not be empty")
	}
	se, ve, err := envs()
	if err != nil {
		return nil, err
	}
	c := &Condition{expr: expr}
	var (
		errS, errV   error
		costS, costV uint64
	)
	c.scalar, costS, errS = compileIn(se, expr)
	c.vector, costV, errV = compileIn(ve, expr)
	c.cost = max(costS, costV)
	switch {
	case errS == nil || errV == nil:
		return c, nil
	case errS.Error() == errV.Error():
		return nil, errV
	default:
		// The vector reading goes first: it is what nearly all queries
		// return.
		return nil, fmt.Errorf("with result as a list of values: %v; with result as a single value: %v", errV, errS)
	}
}

// compileIn returns the program of expr in env and its worst-case cost.
func compileIn(env *cel.Env, expr string) (cel.Program, uint64, error) {
	checked, iss := env.Compile(expr)
	if iss != nil && iss.Err() != nil {
		return nil, 0, issuesError(iss)
	}
	if !checked.OutputType().IsExactType(cel.BoolType) {
		return nil, 0, fmt.Errorf("must evaluate to true or false, not %s", checked.OutputType())
	}
	cost, err := worstCase(env, checked)
	if err != nil {
		return nil, 0, err
	}
	prg, err := env.Program(checked, cel.CostLimit(costLimit))
	if err != nil {
		return nil, 0, fmt.Errorf("building the program: %w", err)
	}
	return prg, cost, nil
}

// issuesError turns cel-go's multi-line report (with a caret under the
// source) into one line, since it ends up in a field error.
func issuesError(iss *cel.Issues) error {
	var msgs []string
	for _, e := range iss.Errors() {
		loc := ""
		if l := e.Location; l != nil && l.Line() > 0 {
			loc = fmt.Sprintf(" (at %d:%d)", l.Line(), l.Column()+1)
		}
		// cel-go names the (empty) container in every undeclared
		// reference; it means nothing to a user.
		msg := strings.ReplaceAll(e.Message, " (in container '')", "")
		msgs = append(msgs, msg+loc)
	}
	if len(msgs) == 0 {
		return iss.Err()
	}
	return errors.New(strings.Join(msgs, "; "))
}

// EvalScalar evaluates the condition with result = x.
func (c *Condition) EvalScalar(x float64) (bool, error) {
	if c.scalar == nil {
		return false, fmt.Errorf("%w: it treats result as a list, but the query returned a single value (scalar): use first(result) or all(result, x, ...), which take both", ErrShape)
	}
	return eval(c.scalar, x)
}

// EvalVector evaluates the condition with result = xs.
func (c *Condition) EvalVector(xs []float64) (bool, error) {
	if c.vector == nil {
		return false, fmt.Errorf("%w: it treats result as a single value, but the query returned a vector of %d value(s): use result[0] or first(result)", ErrShape, len(xs))
	}
	if len(xs) > MaxValues {
		return false, fmt.Errorf("%w: the query returned %d values, more than the %d a condition takes; aggregate it (sum, max, topk)", ErrShape, len(xs), MaxValues)
	}
	// Converted once up front: a native []float64 would go through
	// reflection on every element access.
	vals := make([]ref.Val, len(xs))
	for i, x := range xs {
		vals[i] = types.Double(x)
	}
	return eval(c.vector, types.NewRefValList(types.DefaultTypeAdapter, vals))
}

func eval(prg cel.Program, result any) (bool, error) {
	out, _, err := prg.Eval(map[string]any{"result": result})
	if err != nil {
		return false, err
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, fmt.Errorf("evaluated to %v (%s), not true or false", out.Value(), out.Type())
	}
	return bool(b), nil
}
