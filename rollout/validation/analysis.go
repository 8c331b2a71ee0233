package validation

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"

	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

var (
	metricNameRE = routeNameRE
	// placeholderRE finds every {{...}} in a query; argRefRE is the only
	// form the analysis templater understands.
	placeholderRE = regexp.MustCompile(`\{\{(.*?)\}\}`)
	argRefRE      = regexp.MustCompile(`^\s*args\.([a-zA-Z_][a-zA-Z0-9_]*)\s*$`)
	confidenceRE  = regexp.MustCompile(`^0\.[0-9]{1,4}$`)
	// providerNameRE is a DNS label, as the CRD's pattern.
	providerNameRE = routeNameRE
)

// CompareArgs are the arguments a compare metric's query gets on top of the
// built-ins: the revision ("stable" side: stableRevision, "canary" side:
// canaryRevision) and the subset name ("stable" or "canary") of the side
// being queried. A template with compare metrics cannot declare them.
var CompareArgs = []string{"revision", "subset"}

// AnalysisTemplate checks an AnalysisTemplate: its metadata and its spec.
func (v Validator) AnalysisTemplate(t *v1alpha1.AnalysisTemplate) field.ErrorList {
	if t == nil {
		return field.ErrorList{field.Required(nil, "analysis template is nil")}
	}
	errs := validateObjectMeta(&t.ObjectMeta, field.NewPath("metadata"))
	return append(errs, v.AnalysisTemplateSpec(&t.Spec, field.NewPath("spec"))...)
}

// AnalysisTemplateSpec checks an AnalysisTemplate's spec rooted at p.
func (v Validator) AnalysisTemplateSpec(s *v1alpha1.AnalysisTemplateSpec, p *field.Path) field.ErrorList {
	argList := make([]string, len(s.Args))
	declared := map[string]bool{}
	for i, a := range s.Args {
		argList[i] = a.Name
		declared[a.Name] = true
	}
	errs := argNames(nil, p.Child("args"), argList, "declared")
	hasCompare := slices.ContainsFunc(s.Metrics, func(m v1alpha1.Metric) bool { return m.Compare != nil })
	for i, a := range s.Args {
		if hasCompare && slices.Contains(CompareArgs, a.Name) {
			errs = append(errs, field.Invalid(p.Child("args").Index(i).Child("name"), a.Name, "is supplied by Sluice to compare metrics, which this template has"))
		}
	}

	mp := p.Child("metrics")
	if len(s.Metrics) == 0 {
		errs = append(errs, field.Required(mp, "must have at least 1 metric"))
	}
	errs = maxItems(errs, mp, len(s.Metrics), 32)
	names := map[string]bool{}
	for i := range s.Metrics {
		m := &s.Metrics[i]
		ip := mp.Index(i)
		if names[m.Name] && m.Name != "" {
			errs = append(errs, field.Duplicate(ip.Child("name"), m.Name))
		} else {
			errs = pattern(errs, ip.Child("name"), m.Name, metricNameRE)
			errs = maxLength(errs, ip.Child("name"), m.Name, 63)
		}
		names[m.Name] = true
		errs = append(errs, v.metric(m, declared, ip)...)
	}
	return errs
}

func (v Validator) metric(m *v1alpha1.Metric, declared map[string]bool, p *field.Path) field.ErrorList {
	errs := positiveDuration(nil, p.Child("interval"), m.Interval)
	errs = atLeast(errs, p.Child("count"), m.Count, 1)
	errs = nonNegativeDuration(errs, p.Child("initialDelay"), m.InitialDelay)
	errs = atLeast(errs, p.Child("failureLimit"), m.FailureLimit, 0)
	errs = atLeast(errs, p.Child("inconclusiveLimit"), m.InconclusiveLimit, 0)
	errs = atLeast(errs, p.Child("consecutiveErrorLimit"), m.ConsecutiveErrorLimit, 0)

	switch {
	case m.Compare != nil:
		errs = append(errs, validateCompare(m.Compare, p.Child("compare"))...)
		for _, c := range []struct{ name, expr string }{{"successCondition", m.SuccessCondition}, {"failureCondition", m.FailureCondition}} {
			if c.expr != "" {
				errs = append(errs, field.Forbidden(p.Child(c.name), "compare judges on its own: remove the condition or compare"))
			}
		}
	case m.SuccessCondition == "" && m.FailureCondition == "":
		// With neither condition every measurement would be Inconclusive.
		errs = append(errs, field.Required(p.Child("successCondition"), "at least one of successCondition or failureCondition must be set"))
	}
	if v.ConditionChecker != nil {
		for _, c := range []struct{ name, expr string }{{"successCondition", m.SuccessCondition}, {"failureCondition", m.FailureCondition}} {
			if c.expr == "" {
				continue
			}
			if err := v.ConditionChecker(c.expr); err != nil {
				errs = append(errs, field.Invalid(p.Child(c.name), c.expr, err.Error()))
			}
		}
	}

	pp := p.Child("provider")
	prom := m.Provider.Prometheus
	if prom == nil {
		return append(errs, field.Required(pp, "a metric provider must be set, e.g. prometheus"))
	}
	if m.Compare != nil {
		// The same query is run for both sides, told apart by these.
		withCompare := map[string]bool{}
		for n := range declared {
			withCompare[n] = true
		}
		for _, n := range CompareArgs {
			withCompare[n] = true
		}
		declared = withCompare
		if !usesAny(prom.Query, CompareArgs) {
			errs = append(errs, field.Invalid(pp.Child("prometheus", "query"), prom.Query, "a compare metric's query must tell stable and canary apart with {{args.revision}} or {{args.subset}}"))
		}
	}
	return append(errs, validatePrometheus(prom, declared, pp.Child("prometheus"))...)
}

func usesAny(query string, args []string) bool {
	for _, m := range placeholderRE.FindAllStringSubmatch(query, -1) {
		if ref := argRefRE.FindStringSubmatch(m[1]); ref != nil && slices.Contains(args, ref[1]) {
			return true
		}
	}
	return false
}

func validateCompare(c *v1alpha1.MetricCompare, p *field.Path) field.ErrorList {
	errs := positiveDuration(nil, p.Child("window"), c.Window)
	errs = positiveDuration(errs, p.Child("step"), c.Step)
	if c.Window != nil && c.Step != nil && c.Step.Duration > c.Window.Duration && c.Window.Duration > 0 {
		errs = append(errs, field.Invalid(p.Child("step"), c.Step.Duration.String(), "must not be longer than window"))
	}
	if c.Confidence != "" {
		switch {
		case !confidenceRE.MatchString(c.Confidence):
			errs = append(errs, field.Invalid(p.Child("confidence"), c.Confidence, fmt.Sprintf("must match %s, e.g. \"0.95\"", confidenceRE)))
		case strings.Trim(c.Confidence, "0.") == "":
			errs = append(errs, field.Invalid(p.Child("confidence"), c.Confidence, "must be greater than 0"))
		}
	}
	switch c.Direction {
	case "", v1alpha1.CompareIncrease, v1alpha1.CompareDecrease, v1alpha1.CompareEither:
	default:
		errs = append(errs, field.NotSupported(p.Child("direction"), c.Direction, []v1alpha1.CompareDirection{v1alpha1.CompareIncrease, v1alpha1.CompareDecrease, v1alpha1.CompareEither}))
	}
	return errs
}

func validatePrometheus(prom *v1alpha1.PrometheusProvider, declared map[string]bool, p *field.Path) field.ErrorList {
	errs := validateProviderChoice(prom, p)
	if prom.Address != "" {
		if msg := checkAddress(prom.Address); msg != "" {
			errs = append(errs, field.Invalid(p.Child("address"), prom.Address, msg))
		}
	}
	if strings.TrimSpace(prom.Query) == "" {
		errs = append(errs, field.Required(p.Child("query"), ""))
	}
	errs = validatePlaceholders(errs, p.Child("query"), prom.Query, declared)
	errs = positiveDuration(errs, p.Child("timeout"), prom.Timeout)

	if a := prom.Auth; a != nil {
		ap := p.Child("auth")
		basic := a.BasicUsername != nil || a.BasicPassword != nil
		switch {
		case a.BearerToken == nil && !basic:
			errs = append(errs, field.Required(ap, "must set bearerToken, or basicUsername and basicPassword"))
		case a.BearerToken != nil && basic:
			errs = append(errs, field.Forbidden(ap.Child("bearerToken"), "bearerToken cannot be combined with basicUsername and basicPassword"))
		case basic && a.BasicUsername == nil:
			errs = append(errs, field.Required(ap.Child("basicUsername"), "basicPassword needs basicUsername"))
		case basic && a.BasicPassword == nil:
			errs = append(errs, field.Required(ap.Child("basicPassword"), "basicUsername needs basicPassword"))
		}
		for _, r := range []struct {
			name string
			ref  *v1alpha1.SecretKeyRef
		}{{"bearerToken", a.BearerToken}, {"basicUsername", a.BasicUsername}, {"basicPassword", a.BasicPassword}} {
			if r.ref != nil {
				errs = validateSecretKeyRef(errs, ap.Child(r.name), r.ref)
			}
		}
	}

	if t := prom.TLS; t != nil {
		tp := p.Child("tls")
		if (t.Cert == nil) != (t.Key == nil) {
			missing := "key"
			if t.Cert == nil {
				missing = "cert"
			}
			errs = append(errs, field.Required(tp.Child(missing), "cert and key must be set together"))
		}
		for _, r := range []struct {
			name string
			ref  *v1alpha1.SecretKeyRef
		}{{"ca", t.CA}, {"cert", t.Cert}, {"key", t.Key}} {
			if r.ref != nil {
				errs = validateSecretKeyRef(errs, tp.Child(r.name), r.ref)
			}
		}
	}

	seen := map[string]bool{}
	for i, h := range prom.Headers {
		np := p.Child("headers").Index(i).Child("name")
		// HTTP header names are case-insensitive, so X-Org and x-org would
		// be sent as one header with two values.
		key := strings.ToLower(h.Name)
		switch {
		case h.Name == "":
			errs = append(errs, field.Required(np, ""))
		case seen[key]:
			errs = append(errs, field.Duplicate(np, h.Name))
		default:
			errs = messages(errs, np, h.Name, utilvalidation.IsHTTPHeaderName(h.Name))
		}
		seen[key] = true
	}
	return errs
}

// validateProviderChoice checks that a provider is either one of the
// operator's configuration (name, or neither name nor address: the
// default) or the template's own server (address, with its auth, tls,
// headers): a configured provider's credentials must never go to an
// address the template chose, nor carry a header the template added.
// Whether the name is configured, and whether template addresses are
// allowed, only the configuration knows: the Measurer checks that when a
// run starts.
func validateProviderChoice(prom *v1alpha1.PrometheusProvider, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if prom.Name != "" {
		errs = pattern(errs, p.Child("name"), prom.Name, providerNameRE)
		errs = maxLength(errs, p.Child("name"), prom.Name, 63)
		if prom.Address != "" {
			errs = append(errs, field.Forbidden(p.Child("address"), fmt.Sprintf("name %q refers to a provider of the operator's configuration, which has its address; set name or address, not both", prom.Name)))
		}
	}
	if prom.Address != "" {
		return errs
	}
	for _, f := range []struct {
		name string
		set  bool
	}{{"auth", prom.Auth != nil}, {"tls", prom.TLS != nil}, {"headers", len(prom.Headers) > 0}, {"insecureSkipVerify", prom.InsecureSkipVerify}} {
		if f.set {
			errs = append(errs, field.Forbidden(p.Child(f.name), "describes the template's own server and needs address; a configured provider (named, or the default) brings its own from the operator's configuration"))
		}
	}
	return errs
}

func checkAddress(addr string) string {
	u, err := url.Parse(addr)
	if err != nil {
		return "must be a URL such as http://prometheus:9090: " + err.Error()
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "must be an http or https URL such as http://prometheus:9090"
	}
	if u.Host == "" {
		return "must name a host, e.g. http://prometheus:9090"
	}
	return ""
}

// validatePlaceholders checks that every {{...}} in a query is
// {{args.NAME}} with NAME declared or built in; an undeclared argument would
// only fail when the analysis runs, mid-rollout.
func validatePlaceholders(errs field.ErrorList, p *field.Path, query string, declared map[string]bool) field.ErrorList {
	reported := map[string]bool{}
	for _, m := range placeholderRE.FindAllStringSubmatch(query, -1) {
		ref := argRefRE.FindStringSubmatch(m[1])
		switch {
		case ref == nil:
			errs = append(errs, field.Invalid(p, m[0], "placeholders must have the form {{args.NAME}}"))
		case declared[ref[1]] || IsBuiltinArg(ref[1]) || reported[ref[1]]:
		default:
			reported[ref[1]] = true
			errs = append(errs, field.Invalid(p, m[0], fmt.Sprintf("argument %q is not declared in spec.args (built in: %s)", ref[1], strings.Join(BuiltinArgs, ", "))))
		}
	}
	// An opening brace pair with no closing pair is a typo the templater
	// would pass through into PromQL.
	if rest := placeholderRE.ReplaceAllString(query, ""); strings.Contains(rest, "{{") {
		errs = append(errs, field.Invalid(p, query, "has {{ without a matching }}"))
	}
	return errs
}

func validateSecretKeyRef(errs field.ErrorList, p *field.Path, r *v1alpha1.SecretKeyRef) field.ErrorList {
	if r.Name == "" {
		errs = append(errs, field.Required(p.Child("name"), ""))
	} else {
		errs = messages(errs, p.Child("name"), r.Name, utilvalidation.IsDNS1123Subdomain(r.Name))
	}
	if r.Key == "" {
		errs = append(errs, field.Required(p.Child("key"), ""))
	} else {
		errs = messages(errs, p.Child("key"), r.Key, utilvalidation.IsConfigMapKey(r.Key))
	}
	return errs
}
