package argo

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"

	"github.com/sluicehq/sluice/analysis/condition"
)

// Condition is an Argo Rollouts condition translated into Sluice's CEL.
type Condition struct {
	// CEL is the expression, ready for successCondition or
	// failureCondition; it compiles with analysis/condition.
	CEL string
	// Approximations say where the translation does not mean exactly
	// what the Argo condition meant, beyond what holds for every
	// condition (see docs/migrating-from-argo-rollouts.md).
	Approximations []string
}

// ErrUntranslatable is wrapped by TranslateCondition's errors: the
// condition uses something Sluice's conditions cannot express.
var ErrUntranslatable = errors.New("no CEL equivalent")

// maxConditionLength bounds what is parsed; Sluice refuses longer
// conditions anyway.
const maxConditionLength = 4096

// TranslateCondition turns an Argo Rollouts successCondition or
// failureCondition (the expr language, github.com/expr-lang/expr, as Argo
// evaluates it over a Prometheus result) into a CEL condition of
// analysis/condition. Argo's `result` is a float for a scalar and a list
// of floats for a vector, as Sluice's is, so most conditions keep their
// shape: `result[0] >= 0.95` stays as it is, `all(result, # < 1)` becomes
// `all(result, x, x < 1)`, `len(result)` becomes `size(result)`.
//
// What has no equivalent (strings, maps, nil, ranges, `**`, `let`, most
// builtins) is an error wrapping ErrUntranslatable. The result always
// compiles: a translation that analysis/condition refuses is an error too.
func TranslateCondition(src string) (Condition, error) {
	if strings.TrimSpace(src) == "" {
		return Condition{}, fmt.Errorf("%w: the condition is empty", ErrUntranslatable)
	}
	if len(src) > maxConditionLength {
		return Condition{}, fmt.Errorf("%w: the condition is longer than %d characters", ErrUntranslatable, maxConditionLength)
	}
	if strings.Contains(src, "{{") {
		return Condition{}, fmt.Errorf("%w: a {{...}} placeholder is left in the condition; Sluice's conditions take no arguments", ErrUntranslatable)
	}
	tree, err := parseExpr(src)
	if err != nil {
		return Condition{}, fmt.Errorf("%w: not a valid Argo condition: %v", ErrUntranslatable, err)
	}
	tr := &translator{}
	out, err := tr.node(tree)
	if err != nil {
		return Condition{}, fmt.Errorf("%w: %v", ErrUntranslatable, err)
	}
	if out.typ != tBool {
		return Condition{}, fmt.Errorf("%w: the condition is a %s, not true or false", ErrUntranslatable, out.typ)
	}
	if err := condition.Check(out.text); err != nil {
		return Condition{}, fmt.Errorf("%w: the translation %q does not compile: %v", ErrUntranslatable, out.text, err)
	}
	return Condition{CEL: out.text, Approximations: tr.notes}, nil
}

// parseExpr parses with expr's own parser, recovering from a panic so that
// no input can take the converter down.
func parseExpr(src string) (n ast.Node, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("parser failed: %v", r)
		}
	}()
	tree, err := parser.Parse(src)
	if err != nil {
		return nil, errors.New(oneLine(err.Error()))
	}
	return tree.Node, nil
}

func oneLine(s string) string {
	first, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(first)
}

// typ is what the translator knows of a value's CEL type.
type typ int

const (
	tBool   typ = iota
	tInt        // CEL int
	tDouble     // CEL double
	tResult     // `result`: a double or a list of doubles
	tList       // a list of doubles
)

func (t typ) String() string {
	return [...]string{"boolean", "integer", "number", "result", "list"}[t]
}

func (t typ) numeric() bool { return t == tInt || t == tDouble || t == tResult }

// CEL precedence levels, loosest first.
const (
	pTernary = iota + 1
	pOr
	pAnd
	pRelation
	pAdd
	pMul
	pUnary
	pPrimary
)

// cel is a translated expression: its text, type and precedence.
type cel struct {
	text string
	typ  typ
	prec int
	// intLiteral marks an integer literal, which Sluice compares with a
	// double as written.
	intLiteral bool
}

// at returns the text fit to stand where precedence prec is required.
func (c cel) at(prec int) string {
	if c.prec < prec {
		return "(" + c.text + ")"
	}
	return c.text
}

// asDouble returns c as a double: literals are written as doubles,
// other integers converted.
func (c cel) asDouble() cel {
	switch {
	case c.typ != tInt:
		return c
	case c.intLiteral:
		return cel{text: c.text + ".0", typ: tDouble, prec: pPrimary}
	default:
		return cel{text: "double(" + c.text + ")", typ: tDouble, prec: pPrimary}
	}
}

type translator struct {
	notes []string
	vars  []string // closure variables, innermost last
}

func (tr *translator) note(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	for _, n := range tr.notes {
		if n == msg {
			return
		}
	}
	tr.notes = append(tr.notes, msg)
}

func (tr *translator) node(n ast.Node) (cel, error) {
	switch n := n.(type) {
	case *ast.IdentifierNode:
		if n.Value == "result" {
			return cel{text: "result", typ: tResult, prec: pPrimary}, nil
		}
		return cel{}, fmt.Errorf("unknown name %q: a condition sees only result", n.Value)
	case *ast.IntegerNode:
		return cel{text: strconv.Itoa(n.Value), typ: tInt, prec: pPrimary, intLiteral: n.Value >= 0}, nil
	case *ast.FloatNode:
		return floatLiteral(n.Value)
	case *ast.BoolNode:
		return cel{text: strconv.FormatBool(n.Value), typ: tBool, prec: pPrimary}, nil
	case *ast.StringNode:
		return cel{}, fmt.Errorf("string %q: a Prometheus result is a number, and Sluice's conditions compare numbers", n.Value)
	case *ast.NilNode:
		return cel{}, errors.New("nil: Sluice never evaluates a condition on a missing result (no data is Inconclusive)")
	case *ast.UnaryNode:
		return tr.unary(n)
	case *ast.BinaryNode:
		return tr.binary(n)
	case *ast.MemberNode:
		return tr.member(n)
	case *ast.CallNode:
		return tr.call(n)
	case *ast.BuiltinNode:
		return tr.builtin(n)
	case *ast.PointerNode:
		if n.Name != "" || len(tr.vars) == 0 {
			return cel{}, fmt.Errorf("#%s has no equivalent", n.Name)
		}
		return cel{text: tr.vars[len(tr.vars)-1], typ: tDouble, prec: pPrimary}, nil
	case *ast.ConditionalNode:
		return tr.conditional(n)
	case *ast.ArrayNode:
		return tr.array(n)
	case nil:
		return cel{}, errors.New("empty expression")
	}
	return cel{}, fmt.Errorf("%s has no equivalent", describe(n))
}

func describe(n ast.Node) string {
	switch n.(type) {
	case *ast.SliceNode:
		return "a slice (a[i:j])"
	case *ast.ChainNode:
		return "optional chaining (?.)"
	case *ast.VariableDeclaratorNode:
		return "let"
	case *ast.SequenceNode:
		return "a sequence (;)"
	case *ast.MapNode:
		return "a map literal"
	case *ast.PredicateNode:
		return "a predicate outside a builtin"
	}
	return fmt.Sprintf("%T", n)
}

func floatLiteral(f float64) (cel, error) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return cel{}, fmt.Errorf("number %v out of range", f)
	}
	s := strconv.FormatFloat(f, 'g', -1, 64)
	if !strings.ContainsAny(s, ".eE") {
		s += ".0"
	}
	return cel{text: s, typ: tDouble, prec: pPrimary}, nil
}

func (tr *translator) unary(n *ast.UnaryNode) (cel, error) {
	x, err := tr.node(n.Node)
	if err != nil {
		return cel{}, err
	}
	switch n.Operator {
	case "not", "!":
		if x.typ != tBool {
			return cel{}, fmt.Errorf("%s applied to a %s", n.Operator, x.typ)
		}
		return cel{text: "!" + x.at(pUnary), typ: tBool, prec: pUnary}, nil
	case "-":
		if !x.typ.numeric() {
			return cel{}, fmt.Errorf("- applied to a %s", x.typ)
		}
		if x.typ == tResult {
			x.typ = tDouble
		}
		return cel{text: "-" + x.at(pUnary), typ: x.typ, prec: pUnary}, nil
	case "+":
		if !x.typ.numeric() {
			return cel{}, fmt.Errorf("+ applied to a %s", x.typ)
		}
		return x, nil
	}
	return cel{}, fmt.Errorf("operator %s has no equivalent", n.Operator)
}

func (tr *translator) binary(n *ast.BinaryNode) (cel, error) {
	switch n.Operator {
	case "**", "^":
		return cel{}, fmt.Errorf("operator %s: Sluice's CEL has no power operator", n.Operator)
	case "??":
		return cel{}, errors.New("operator ??: Sluice never evaluates a condition on a missing result")
	case "..", "matches", "contains", "startsWith", "endsWith":
		return cel{}, fmt.Errorf("operator %s works on strings or ranges, not on a Prometheus result", n.Operator)
	}
	l, err := tr.node(n.Left)
	if err != nil {
		return cel{}, err
	}
	r, err := tr.node(n.Right)
	if err != nil {
		return cel{}, err
	}
	switch n.Operator {
	case "or", "||":
		return logical("||", pOr, l, r)
	case "and", "&&":
		return logical("&&", pAnd, l, r)
	case "<", ">", "<=", ">=":
		if !l.typ.numeric() || !r.typ.numeric() {
			return cel{}, fmt.Errorf("%s compares a %s with a %s", n.Operator, l.typ, r.typ)
		}
		return relation(n.Operator, l, r), nil
	case "==", "!=":
		return tr.equality(n.Operator, l, r)
	case "in":
		return tr.in(l, r)
	case "+", "-", "*":
		return arithmetic(n.Operator, l, r)
	case "/":
		if !l.typ.numeric() || !r.typ.numeric() {
			return cel{}, fmt.Errorf("/ on a %s and a %s", l.typ, r.typ)
		}
		// expr divides as floats, whatever the operands.
		return cel{text: l.asDouble().at(pMul) + " / " + r.asDouble().at(pMul+1), typ: tDouble, prec: pMul}, nil
	case "%":
		if l.typ != tInt || r.typ != tInt {
			return cel{}, errors.New("% takes integers only")
		}
		return cel{text: l.at(pMul) + " % " + r.at(pMul+1), typ: tInt, prec: pMul}, nil
	}
	return cel{}, fmt.Errorf("operator %s has no equivalent", n.Operator)
}

func logical(op string, prec int, l, r cel) (cel, error) {
	if l.typ != tBool || r.typ != tBool {
		return cel{}, fmt.Errorf("%s joins a %s and a %s, not two booleans", op, l.typ, r.typ)
	}
	return cel{text: l.at(prec) + " " + op + " " + r.at(prec), typ: tBool, prec: prec}, nil
}

func relation(op string, l, r cel) cel {
	return cel{text: l.at(pRelation+1) + " " + op + " " + r.at(pRelation+1), typ: tBool, prec: pRelation}
}

func (tr *translator) equality(op string, l, r cel) (cel, error) {
	switch {
	case l.typ == tBool && r.typ == tBool:
	case l.typ.numeric() && r.typ.numeric():
		// Sluice compares an integer literal with a double by value; any
		// other integer becomes a double, as expr compares numbers.
		if l.typ == tInt && !l.intLiteral && r.typ != tInt {
			l = l.asDouble()
		}
		if r.typ == tInt && !r.intLiteral && l.typ != tInt {
			r = r.asDouble()
		}
		if l.typ == tResult || r.typ == tResult {
			tr.note("%s on the whole result compares a single value (a scalar query); on a vector Sluice's measurement is an Error, as Argo's never matched", op)
		}
	default:
		return cel{}, fmt.Errorf("%s compares a %s with a %s", op, l.typ, r.typ)
	}
	return relation(op, l, r), nil
}

func (tr *translator) in(l, r cel) (cel, error) {
	if !l.typ.numeric() || l.typ == tResult {
		return cel{}, fmt.Errorf("in looks for a %s", l.typ)
	}
	switch r.typ {
	case tResult:
		r = cel{text: "values(result)", typ: tList, prec: pPrimary}
	case tList:
	default:
		return cel{}, fmt.Errorf("in looks in a %s, not a list", r.typ)
	}
	return relation("in", l.asDouble(), r), nil
}

func arithmetic(op string, l, r cel) (cel, error) {
	if !l.typ.numeric() || !r.typ.numeric() {
		return cel{}, fmt.Errorf("%s on a %s and a %s", op, l.typ, r.typ)
	}
	t := tInt
	if l.typ != tInt || r.typ != tInt {
		t = tDouble
		l, r = l.asDouble(), r.asDouble()
	}
	prec := pAdd
	if op == "*" {
		prec = pMul
	}
	return cel{text: l.at(prec) + " " + op + " " + r.at(prec+1), typ: t, prec: prec}, nil
}

// member translates an index into the result or a list.
func (tr *translator) member(n *ast.MemberNode) (cel, error) {
	if n.Optional {
		return cel{}, errors.New("optional chaining (?.) has no equivalent")
	}
	base, err := tr.node(n.Node)
	if err != nil {
		return cel{}, err
	}
	if base.typ != tResult && base.typ != tList {
		return cel{}, fmt.Errorf("indexing a %s", base.typ)
	}
	if s, ok := n.Property.(*ast.StringNode); ok {
		return cel{}, fmt.Errorf("field %q: a Prometheus result has no fields", s.Value)
	}
	// expr counts a negative index from the end.
	if u, ok := n.Property.(*ast.UnaryNode); ok && u.Operator == "-" {
		if i, ok := u.Node.(*ast.IntegerNode); ok && i.Value > 0 {
			return cel{text: fmt.Sprintf("%s[size(%s) - %d]", base.at(pPrimary), base.text, i.Value), typ: tDouble, prec: pPrimary}, nil
		}
	}
	idx, err := tr.node(n.Property)
	if err != nil {
		return cel{}, err
	}
	if idx.typ != tInt {
		return cel{}, fmt.Errorf("an index must be an integer, not a %s", idx.typ)
	}
	if !idx.intLiteral {
		tr.note("index %s: expr counts a negative index from the end, CEL refuses it", idx.text)
	}
	return cel{text: base.at(pPrimary) + "[" + idx.text + "]", typ: tDouble, prec: pPrimary}, nil
}

func (tr *translator) conditional(n *ast.ConditionalNode) (cel, error) {
	c, err := tr.node(n.Cond)
	if err != nil {
		return cel{}, err
	}
	if c.typ != tBool {
		return cel{}, fmt.Errorf("the condition of ?: is a %s", c.typ)
	}
	a, err := tr.node(n.Exp1)
	if err != nil {
		return cel{}, err
	}
	b, err := tr.node(n.Exp2)
	if err != nil {
		return cel{}, err
	}
	switch {
	case a.typ == b.typ && a.typ != tResult:
	case a.typ.numeric() && b.typ.numeric():
		a, b = a.asDouble(), b.asDouble()
		a.typ, b.typ = tDouble, tDouble
	default:
		return cel{}, fmt.Errorf("the branches of ?: are a %s and a %s", a.typ, b.typ)
	}
	return cel{text: c.at(pOr) + " ? " + a.at(pOr) + " : " + b.at(pTernary), typ: a.typ, prec: pTernary}, nil
}

func (tr *translator) array(n *ast.ArrayNode) (cel, error) {
	items := make([]string, len(n.Nodes))
	for i, e := range n.Nodes {
		x, err := tr.node(e)
		if err != nil {
			return cel{}, err
		}
		if !x.typ.numeric() || x.typ == tResult {
			return cel{}, fmt.Errorf("a list of %s values: only lists of numbers have an equivalent", x.typ)
		}
		items[i] = x.asDouble().at(pTernary)
	}
	return cel{text: "[" + strings.Join(items, ", ") + "]", typ: tList, prec: pPrimary}, nil
}

// call translates the functions Argo adds to expr's environment.
func (tr *translator) call(n *ast.CallNode) (cel, error) {
	id, ok := n.Callee.(*ast.IdentifierNode)
	if !ok {
		return cel{}, errors.New("a method call has no equivalent")
	}
	args, err := tr.nodes(n.Arguments)
	name := id.Value
	switch name {
	case "isNil":
		if len(n.Arguments) != 1 {
			return cel{}, errors.New("isNil takes one argument")
		}
		// Argo's isNil ignores its argument and asks whether the result
		// is missing; Sluice judges a missing or empty result
		// Inconclusive before any condition runs.
		tr.note("isNil(...) became false: Sluice never evaluates a condition on a missing or empty result (it is Inconclusive)")
		return cel{text: "false", typ: tBool, prec: pPrimary}, nil
	case "default":
		// Argo's default(x, d) is the result itself unless it is missing.
		if len(n.Arguments) != 2 {
			return cel{}, errors.New("default takes two arguments")
		}
		if id, ok := n.Arguments[0].(*ast.IdentifierNode); !ok || id.Value != "result" {
			return cel{}, errors.New("default(x, d) returns the whole result whatever x is; only default(result, d) has an equivalent")
		}
		tr.note("default(result, d) became result: Sluice never evaluates a condition on a missing result (it is Inconclusive)")
		return cel{text: "result", typ: tResult, prec: pPrimary}, nil
	}
	if err != nil {
		return cel{}, err
	}
	if len(args) != 1 {
		return cel{}, fmt.Errorf("function %s: unknown, or called with %d arguments", name, len(args))
	}
	x := args[0]
	switch name {
	case "isNaN", "isInf":
		if !x.typ.numeric() {
			return cel{}, fmt.Errorf("%s of a %s", name, x.typ)
		}
		return cel{text: name + "(" + x.asDouble().text + ")", typ: tBool, prec: pPrimary}, nil
	case "asFloat":
		if !x.typ.numeric() {
			return cel{}, fmt.Errorf("asFloat of a %s", x.typ)
		}
		return x.asDouble(), nil
	case "asInt":
		switch x.typ {
		case tInt:
			return x, nil
		case tDouble, tResult:
			tr.note("asInt(%s): CEL's int() fails on NaN and ±Inf where expr's returned a number", x.text)
			return cel{text: "int(" + x.text + ")", typ: tInt, prec: pPrimary}, nil
		}
		return cel{}, fmt.Errorf("asInt of a %s", x.typ)
	}
	return cel{}, fmt.Errorf("function %s has no equivalent", name)
}

func (tr *translator) nodes(ns []ast.Node) ([]cel, error) {
	out := make([]cel, len(ns))
	for i, n := range ns {
		c, err := tr.node(n)
		if err != nil {
			return nil, err
		}
		out[i] = c
	}
	return out, nil
}

// quantifiers maps expr's predicate builtins to CEL. %[1]s is the list,
// %[2]s the variable, %[3]s the predicate.
var quantifiers = map[string]struct {
	format string
	typ    typ
}{
	"all":    {"%[1]s.all(%[2]s, %[3]s)", tBool},
	"any":    {"%[1]s.exists(%[2]s, %[3]s)", tBool},
	"none":   {"!%[1]s.exists(%[2]s, %[3]s)", tBool},
	"one":    {"%[1]s.exists_one(%[2]s, %[3]s)", tBool},
	"filter": {"%[1]s.filter(%[2]s, %[3]s)", tList},
	"count":  {"size(%[1]s.filter(%[2]s, %[3]s))", tInt},
	"map":    {"%[1]s.map(%[2]s, %[3]s)", tList},
}

// builtin translates expr's builtins.
func (tr *translator) builtin(n *ast.BuiltinNode) (cel, error) {
	if q, ok := quantifiers[n.Name]; ok {
		return tr.quantifier(n, q.format, q.typ)
	}
	args, err := tr.nodes(n.Arguments)
	if err != nil {
		return cel{}, err
	}
	switch {
	case n.Name == "len" && len(args) == 1 && (args[0].typ == tResult || args[0].typ == tList):
		if args[0].typ == tResult {
			tr.note("len(result): Sluice judges an empty result Inconclusive before any condition runs, so it is never 0 here")
		}
		return cel{text: "size(" + args[0].text + ")", typ: tInt, prec: pPrimary}, nil
	case n.Name == "first" && len(args) == 1 && args[0].typ == tResult:
		return cel{text: "first(result)", typ: tDouble, prec: pPrimary}, nil
	case n.Name == "first" && len(args) == 1 && args[0].typ == tList:
		return cel{text: args[0].at(pPrimary) + "[0]", typ: tDouble, prec: pPrimary}, nil
	case n.Name == "last" && len(args) == 1 && (args[0].typ == tResult || args[0].typ == tList):
		l := args[0]
		return cel{text: fmt.Sprintf("%s[size(%s) - 1]", l.at(pPrimary), l.text), typ: tDouble, prec: pPrimary}, nil
	case n.Name == "abs" && len(args) == 1 && args[0].typ.numeric():
		x := args[0]
		if x.typ == tResult {
			x.typ = tDouble
		}
		zero := "0"
		if x.typ == tDouble {
			zero = "0.0"
		}
		return cel{text: fmt.Sprintf("%s < %s ? -%s : %s", x.at(pRelation+1), zero, x.at(pUnary), x.at(pOr)), typ: x.typ, prec: pTernary}, nil
	case (n.Name == "max" || n.Name == "min") && len(args) == 2 && args[0].typ.numeric() && args[1].typ.numeric():
		a, b := args[0].asDouble(), args[1].asDouble()
		if args[0].typ == tInt && args[1].typ == tInt {
			a, b = args[0], args[1]
		}
		op := ">="
		if n.Name == "min" {
			op = "<="
		}
		t := a.typ
		if t == tResult {
			t = tDouble
		}
		return cel{text: fmt.Sprintf("%s %s %s ? %s : %s", a.at(pRelation+1), op, b.at(pRelation+1), a.at(pOr), b.at(pTernary)), typ: t, prec: pTernary}, nil
	}
	return cel{}, fmt.Errorf("builtin %s(%d argument(s)) has no equivalent", n.Name, len(args))
}

// varNames name the variables of nested predicates.
var varNames = []string{"x", "y", "z"}

func (tr *translator) quantifier(n *ast.BuiltinNode, format string, t typ) (cel, error) {
	if len(n.Arguments) != 2 {
		return cel{}, fmt.Errorf("%s without a predicate has no equivalent", n.Name)
	}
	list, err := tr.node(n.Arguments[0])
	if err != nil {
		return cel{}, err
	}
	switch list.typ {
	case tResult:
		// values() takes a scalar result too, as Sluice's all() and any().
		list = cel{text: "values(result)", typ: tList, prec: pPrimary}
	case tList:
	default:
		return cel{}, fmt.Errorf("%s over a %s", n.Name, list.typ)
	}
	pred, ok := n.Arguments[1].(*ast.PredicateNode)
	if !ok {
		return cel{}, fmt.Errorf("%s without a predicate has no equivalent", n.Name)
	}
	v := fmt.Sprintf("x%d", len(tr.vars))
	if len(tr.vars) < len(varNames) {
		v = varNames[len(tr.vars)]
	}
	tr.vars = append(tr.vars, v)
	body, err := tr.node(pred.Node)
	tr.vars = tr.vars[:len(tr.vars)-1]
	if err != nil {
		return cel{}, err
	}
	switch {
	case n.Name == "map":
		if !body.typ.numeric() || body.typ == tResult {
			return cel{}, fmt.Errorf("map to a %s: only maps to numbers have an equivalent", body.typ)
		}
		body = body.asDouble()
	case body.typ != tBool:
		return cel{}, fmt.Errorf("the predicate of %s is a %s, not true or false", n.Name, body.typ)
	}
	text := fmt.Sprintf(format, list.at(pPrimary), v, body.text)
	// The global all() and any() of Sluice read best on the whole result.
	if list.text == "values(result)" && (n.Name == "all" || n.Name == "any") {
		text = fmt.Sprintf("%s(result, %s, %s)", n.Name, v, body.text)
	}
	prec := pPrimary
	if n.Name == "none" {
		prec = pUnary
	}
	return cel{text: text, typ: t, prec: prec}, nil
}
