// Package validation checks Rollouts and AnalysisTemplates.
//
// In controller mode the API server enforces the OpenAPI schema and CEL rules
// generated from the kubebuilder markers in rollout/v1alpha1; in standalone
// mode there is no API server, and `sluice validate` runs before either. So
// this package enforces everything the markers say (required fields, bounds,
// patterns, enums, the "exactly one of" rules, list limits) and, on top, what
// a schema cannot express: regexes that compile, cron schedules and time zones
// that load, durations that are positive, header routes that are removed only
// after being set, analysis arguments that are declared, and so on.
//
// Every problem is reported, each with its full field path, so a caller can
// point at the exact line of a manifest.
package validation

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Validator holds the checks that need something from outside this package.
// The zero value is ready to use.
type Validator struct {
	// ConditionChecker compiles a metric's successCondition or
	// failureCondition; a non-nil error is reported as an invalid value at
	// that field. Nil skips the check: the CEL environment belongs to the
	// analysis package, which this package must not import.
	ConditionChecker func(expr string) error
}

// ValidateRollout checks a Rollout with the zero Validator.
func ValidateRollout(r *v1alpha1.Rollout) field.ErrorList {
	return Validator{}.Rollout(r)
}

// ValidateAnalysisTemplate checks an AnalysisTemplate with the zero Validator.
func ValidateAnalysisTemplate(t *v1alpha1.AnalysisTemplate) field.ErrorList {
	return Validator{}.AnalysisTemplate(t)
}

// BuiltinArgs are the analysis arguments Sluice supplies on every run. They
// cannot be declared by a template nor passed by a Rollout, so a query never
// silently gets a value other than the one its author expects.
// stableRevision/stableSubset and canaryRevision/canarySubset are the
// analysis step's baseline and candidate (stable and canary unless it says
// otherwise); revision_<name> and subset_<name> (dashes as underscores) are
// each extra revision running when the run starts.
var BuiltinArgs = []string{"rollout", "namespace", "service", "host", "stableRevision", "canaryRevision", "stableSubset", "canarySubset", "revision_<name>", "subset_<name>"}

// IsBuiltinArg reports whether Sluice supplies the argument name.
func IsBuiltinArg(name string) bool {
	return slices.Contains(BuiltinArgs, name) ||
		strings.HasPrefix(name, ExtraRevisionArg) || strings.HasPrefix(name, ExtraSubsetArg)
}

// Prefixes of the arguments of extra revisions.
const (
	ExtraRevisionArg = "revision_"
	ExtraSubsetArg   = "subset_"
)

// Helpers shared by the Rollout and AnalysisTemplate checks. Each appends to
// the list it is given so call sites stay one line per rule.

func inRange(errs field.ErrorList, p *field.Path, v, lo, hi int32) field.ErrorList {
	if v < lo || v > hi {
		return append(errs, field.Invalid(p, v, fmt.Sprintf("must be between %d and %d", lo, hi)))
	}
	return errs
}

func atLeast(errs field.ErrorList, p *field.Path, v *int32, lo int32) field.ErrorList {
	if v != nil && *v < lo {
		return append(errs, field.Invalid(p, *v, fmt.Sprintf("must be greater than or equal to %d", lo)))
	}
	return errs
}

func maxItems(errs field.ErrorList, p *field.Path, n, limit int) field.ErrorList {
	if n > limit {
		return append(errs, field.TooMany(p, n, limit))
	}
	return errs
}

// positiveDuration reports a duration that is zero or negative. A zero
// duration would make a pause, window or timeout meaningless, and the schema
// can only check that the value is a string.
func positiveDuration(errs field.ErrorList, p *field.Path, d *metav1.Duration) field.ErrorList {
	if d != nil && d.Duration <= 0 {
		return append(errs, field.Invalid(p, d.Duration.String(), "must be greater than 0"))
	}
	return errs
}

func nonNegativeDuration(errs field.ErrorList, p *field.Path, d *metav1.Duration) field.ErrorList {
	if d != nil && d.Duration < 0 {
		return append(errs, field.Invalid(p, d.Duration.String(), "must not be negative"))
	}
	return errs
}

// requiredDuration is for non-pointer durations, where absent and zero are
// the same value after decoding.
func requiredDuration(errs field.ErrorList, p *field.Path, d metav1.Duration) field.ErrorList {
	switch {
	case d.Duration == 0:
		return append(errs, field.Required(p, "must be a duration greater than 0, e.g. 30s"))
	case d.Duration < 0:
		return append(errs, field.Invalid(p, d.Duration.String(), "must be greater than 0"))
	}
	return errs
}

// pattern checks a string against a marker pattern. The message names the
// pattern, as the API server's does, so both modes say the same thing.
func pattern(errs field.ErrorList, p *field.Path, v string, re *regexp.Regexp) field.ErrorList {
	if v == "" {
		return append(errs, field.Required(p, ""))
	}
	if !re.MatchString(v) {
		return append(errs, field.Invalid(p, v, fmt.Sprintf("must match %s", re.String())))
	}
	return errs
}

func maxLength(errs field.ErrorList, p *field.Path, v string, limit int) field.ErrorList {
	if len(v) > limit {
		return append(errs, field.TooLong(p, v, limit))
	}
	return errs
}

func messages(errs field.ErrorList, p *field.Path, v string, msgs []string) field.ErrorList {
	if len(msgs) > 0 {
		return append(errs, field.Invalid(p, v, strings.Join(msgs, "; ")))
	}
	return errs
}
