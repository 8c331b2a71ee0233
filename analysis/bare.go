package analysis

import (
	"fmt"
	"regexp"
	"strings"
)

// ArgError is a placeholder whose value cannot be used where it stands.
// Render returns it, so that a caller (sluice validate) can point at the
// argument rather than at the query.
type ArgError struct {
	// Name of the argument.
	Name string
	// Value that was refused.
	Value string
	// Bare is true when the placeholder stands outside any quoted string.
	Bare bool
	Err  error
}

func (e *ArgError) Error() string { return fmt.Sprintf("argument %q: %v", e.Name, e.Err) }

func (e *ArgError) Unwrap() error { return e.Err }

var (
	// numberRE: the unsigned decimal numbers the PromQL lexer reads as one
	// NUMBER token (5, 0.5, .5, 1e-3). A sign is left out on purpose: `-`
	// is an operator, and `{{args.x}} ^ 2` with x = -2 would be -(2^2).
	numberRE = regexp.MustCompile(`^(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$`)
	// durationRE: a PromQL duration such as 5m, 1h30m or 500ms, units in
	// the order Prometheus requires (a disorderly one does not even lex).
	durationRE = regexp.MustCompile(`^(?:[0-9]+y)?(?:[0-9]+w)?(?:[0-9]+d)?(?:[0-9]+h)?(?:[0-9]+m)?(?:[0-9]+s)?(?:[0-9]+ms)?$`)
	// nameRE: a metric, label, function or aggregation name.
	nameRE = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
)

// joiningKeywords are the PromQL keywords that join or modify expressions
// (binary operators, vector matching, grouping, offset, @ modifiers). Any
// of them alone is one token, yet it changes what the tokens around it
// mean. PromQL keywords are case-insensitive.
var joiningKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "atan2": true,
	"offset": true, "by": true, "without": true, "on": true, "ignoring": true,
	"group_left": true, "group_right": true, "bool": true,
	"start": true, "end": true,
}

// bareValue checks a value whose placeholder stands outside any quoted
// string, where it is PromQL code: it must be exactly one token of a kind
// that fits there, so it can change neither the query's structure nor what
// the tokens around it mean. Inside [ ] (a range, a subquery) that is a
// duration or a number; elsewhere also a name, such as the metric or label
// name in `{{args.metric}}{job="api"}` or `sum by ({{args.label}})`, but not
// a keyword like `or` or `offset`.
func bareValue(v string, inBrackets bool) error {
	const hint = "; to use it as a label value, put the placeholder in quotes"
	switch {
	case v != "" && durationRE.MatchString(v), numberRE.MatchString(v):
		return nil
	case inBrackets:
		return fmt.Errorf("value %q stands inside [ ] outside a quoted string, so it must be a duration such as 5m or a number%s", v, hint)
	case nameRE.MatchString(v) && joiningKeywords[strings.ToLower(v)]:
		return fmt.Errorf("value %q is the PromQL keyword %s, which would join or modify the expressions around the placeholder", v, strings.ToLower(v))
	case nameRE.MatchString(v):
		return nil // Inf and NaN included: names to this check, numbers to PromQL
	}
	return fmt.Errorf("value %q stands outside a quoted string, so it must be one number, duration (5m) or name (a metric or label name), with no spaces, operators, braces or comments%s", v, hint)
}
