package validation

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Patterns copied from the kubebuilder markers of rollout/v1alpha1; a test
// keeps each in step with its marker.
var (
	backendVersionRE = regexp.MustCompile(`^[a-zA-Z0-9]([-._a-zA-Z0-9]*[a-zA-Z0-9])?$`)
	headerNameRE     = regexp.MustCompile(`^:?[a-z0-9][-a-z0-9_.]*$`)
	cookieNameRE     = regexp.MustCompile(`^[!#$%&'*+\-.^_|~0-9A-Za-z]+$`)
	affinityHeaderRE = regexp.MustCompile(`^[a-z0-9][-a-z0-9_.]*$`)
	routeNameRE      = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	argNameRE        = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

const (
	msgTemplateXorBackend = "exactly one of template (controller mode) or backend (standalone mode) must be set"
	msgOneStrategy        = "exactly one of canary, blueGreen or darkRelease must be set"
	msgOneStepAction      = "a step must set exactly one of setWeight, pause, analysis, setHeaderRoute, setMirror or setRevision"
	msgOneHeaderMatch     = "exactly one of exact, prefix, regex or present must be set"
	msgOneURIMatch        = "exactly one of exact or prefix must be set"
	msgAbortStatus        = "set httpStatus, grpcStatus or both"
	msgOneAffinity        = "exactly one of cookie or header must be set"
)

// Rollout checks a Rollout: its metadata and its spec. Status is the
// controller's and is not checked.
func (v Validator) Rollout(r *v1alpha1.Rollout) field.ErrorList {
	if r == nil {
		return field.ErrorList{field.Required(nil, "rollout is nil")}
	}
	errs := validateObjectMeta(&r.ObjectMeta, field.NewPath("metadata"))
	return append(errs, v.RolloutSpec(&r.Spec, field.NewPath("spec"))...)
}

// RolloutSpec checks a Rollout's spec rooted at p.
func (v Validator) RolloutSpec(s *v1alpha1.RolloutSpec, p *field.Path) field.ErrorList {
	errs := validateService(&s.Service, p.Child("service"))

	switch {
	case s.Template != nil && s.Backend != nil:
		errs = append(errs, field.Forbidden(p.Child("backend"), msgTemplateXorBackend))
	case s.Template == nil && s.Backend == nil:
		errs = append(errs, field.Required(p.Child("template"), msgTemplateXorBackend))
	}
	if s.Template != nil {
		if s.Replicas == nil {
			errs = append(errs, field.Required(p.Child("replicas"), "replicas is required with template"))
		}
		errs = append(errs, validatePodTemplate(s.Template, p.Child("template"))...)
	}
	errs = atLeast(errs, p.Child("replicas"), s.Replicas, 0)
	if s.Backend != nil {
		if s.Replicas != nil && s.Template == nil {
			errs = append(errs, field.Forbidden(p.Child("replicas"), "replicas applies to template (controller mode), not backend"))
		}
		errs = append(errs, validateBackend(s.Backend, p.Child("backend"))...)
	}

	errs = append(errs, v.strategy(&s.Strategy, s.Service.Hosts, p.Child("strategy"))...)
	errs = append(errs, extraRevisions(s, p.Child("strategy"))...)
	errs = append(errs, validateRouters(s, p.Child("service", "routers"))...)
	errs = append(errs, validateGatewayLimits(s, p)...)
	errs = append(errs, validateReplicasRouter(s, p)...)
	if s.Analysis != nil {
		errs = append(errs, v.backgroundAnalysis(s.Analysis, &s.Strategy, p.Child("analysis"))...)
	}
	errs = append(errs, validateWindows(s.Windows, p.Child("windows"))...)
	errs = append(errs, validateRollback(&s.Rollback, p.Child("rollback"))...)
	errs = atLeast(errs, p.Child("progressDeadlineSeconds"), s.ProgressDeadlineSeconds, 1)
	errs = atLeast(errs, p.Child("scaleDownDelaySeconds"), s.ScaleDownDelaySeconds, 0)
	return errs
}

func validateObjectMeta(m *metav1.ObjectMeta, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch {
	case m.Name == "" && m.GenerateName != "":
		errs = append(errs, field.Required(p.Child("name"), "objects kept in Git need a fixed name; generateName is not supported"))
	case m.Name == "":
		errs = append(errs, field.Required(p.Child("name"), ""))
	default:
		errs = messages(errs, p.Child("name"), m.Name, utilvalidation.IsDNS1123Subdomain(m.Name))
	}
	if m.Namespace != "" {
		errs = messages(errs, p.Child("namespace"), m.Namespace, utilvalidation.IsDNS1123Label(m.Namespace))
	}
	errs = append(errs, metav1validation.ValidateLabels(m.Labels, p.Child("labels"))...)
	errs = append(errs, apivalidation.ValidateAnnotations(m.Annotations, p.Child("annotations"))...)
	return errs
}

func validateService(s *v1alpha1.ServiceSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if s.Name == "" {
		errs = append(errs, field.Required(p.Child("name"), ""))
	} else {
		errs = messages(errs, p.Child("name"), s.Name, utilvalidation.IsDNS1123Label(s.Name))
	}

	if len(s.Hosts) == 0 {
		errs = append(errs, field.Required(p.Child("hosts"), "must have at least 1 host"))
	}
	errs = maxItems(errs, p.Child("hosts"), len(s.Hosts), 16)
	errs = validateHosts(errs, p.Child("hosts"), s.Hosts)

	if s.Port == 0 {
		errs = append(errs, field.Required(p.Child("port"), ""))
	} else {
		errs = inRange(errs, p.Child("port"), s.Port, 1, 65535)
	}

	if vs := s.VirtualService; vs != nil {
		vp := p.Child("virtualService")
		if vs.Name == "" {
			errs = append(errs, field.Required(vp.Child("name"), ""))
		}
		seen := map[string]bool{}
		for i, r := range vs.Routes {
			rp := vp.Child("routes").Index(i)
			switch {
			case r == "":
				errs = append(errs, field.Required(rp, "route names must not be empty; leave routes out to manage the single unnamed route"))
			case seen[r]:
				errs = append(errs, field.Duplicate(rp, r))
			}
			seen[r] = true
		}
	}
	if dr := s.DestinationRule; dr != nil && dr.Name == "" {
		errs = append(errs, field.Required(p.Child("destinationRule", "name"), ""))
	}
	if s.Policy != nil {
		errs = append(errs, validatePolicy(s.Policy, p.Child("policy"))...)
	}
	if s.SessionAffinity != nil {
		errs = append(errs, validateAffinity(s.SessionAffinity, p.Child("sessionAffinity"))...)
	}
	return errs
}

// validateHosts checks host names. They become VirtualService hosts, Envoy
// virtual host domains and xds:/// targets, so each must be a DNS name; a
// short name such as "reviews" is one too.
func validateHosts(errs field.ErrorList, p *field.Path, hosts []string) field.ErrorList {
	seen := map[string]bool{}
	for i, h := range hosts {
		hp := p.Index(i)
		switch {
		case h == "":
			errs = append(errs, field.Required(hp, ""))
		case seen[h]:
			errs = append(errs, field.Duplicate(hp, h))
		default:
			if msgs := utilvalidation.IsDNS1123Subdomain(h); len(msgs) > 0 {
				errs = append(errs, field.Invalid(hp, h, "must be a DNS name such as reviews or reviews.prod.svc.cluster.local: "+strings.Join(msgs, "; ")))
			}
		}
		seen[h] = true
	}
	return errs
}

// validatePodTemplate checks only what Sluice relies on. The full pod spec
// is the API server's business in controller mode, where templates are used.
func validatePodTemplate(t *corev1.PodTemplateSpec, p *field.Path) field.ErrorList {
	errs := metav1validation.ValidateLabels(t.Labels, p.Child("metadata", "labels"))
	errs = append(errs, apivalidation.ValidateAnnotations(t.Annotations, p.Child("metadata", "annotations"))...)
	sp := p.Child("spec")
	if len(t.Spec.Containers) == 0 {
		errs = append(errs, field.Required(sp.Child("containers"), "must have at least 1 container"))
	}
	names := map[string]bool{}
	check := func(list string, cs []corev1.Container) {
		for i, c := range cs {
			cp := sp.Child(list).Index(i)
			switch {
			case c.Name == "":
				errs = append(errs, field.Required(cp.Child("name"), ""))
			case names[c.Name]:
				errs = append(errs, field.Duplicate(cp.Child("name"), c.Name))
			default:
				errs = messages(errs, cp.Child("name"), c.Name, utilvalidation.IsDNS1123Label(c.Name))
			}
			names[c.Name] = true
			if strings.TrimSpace(c.Image) == "" {
				errs = append(errs, field.Required(cp.Child("image"), ""))
			}
		}
	}
	check("initContainers", t.Spec.InitContainers)
	check("containers", t.Spec.Containers)
	return errs
}

func validateBackend(b *v1alpha1.Backend, p *field.Path) field.ErrorList {
	errs := pattern(nil, p.Child("version"), b.Version, backendVersionRE)
	errs = maxLength(errs, p.Child("version"), b.Version, 63)
	if len(b.Endpoints) == 0 {
		errs = append(errs, field.Required(p.Child("endpoints"), "must have at least 1 endpoint"))
	}
	seen := map[string]bool{}
	for i, e := range b.Endpoints {
		ep := p.Child("endpoints").Index(i)
		if seen[e] {
			errs = append(errs, field.Duplicate(ep, e))
			continue
		}
		seen[e] = true
		if msg := checkEndpoint(e); msg != "" {
			errs = append(errs, field.Invalid(ep, e, msg))
		}
	}
	return errs
}

// checkEndpoint returns why e is not a usable host:port, or "".
func checkEndpoint(e string) string {
	const want = "must be host:port, e.g. 10.0.0.7:9080, [fd00::7]:9080 or reviews-v2:9080"
	host, port, err := net.SplitHostPort(e)
	if err != nil || host == "" {
		return want
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Sprintf("port %q must be a number between 1 and 65535", port)
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return ""
	}
	if msgs := utilvalidation.IsDNS1123Subdomain(host); len(msgs) > 0 {
		return fmt.Sprintf("host %q must be an IP address or a DNS name: %s", host, strings.Join(msgs, "; "))
	}
	return ""
}

// retryOnTokens are the conditions Envoy accepts in x-envoy-retry-on and
// x-envoy-retry-grpc-on; Istio also takes bare status codes.
var retryOnTokens = func() map[string]bool {
	m := map[string]bool{}
	for _, t := range []string{
		"5xx", "gateway-error", "reset", "reset-before-request", "connect-failure",
		"envoy-ratelimited", "retriable-4xx", "refused-stream", "retriable-status-codes",
		"retriable-headers", "http3-post-connect-failure",
		"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable",
	} {
		m[t] = true
	}
	return m
}()

var statusCodeRE = regexp.MustCompile(`^[1-5][0-9][0-9]$`)

func validatePolicy(pol *v1alpha1.RoutePolicy, p *field.Path) field.ErrorList {
	errs := validateTimeoutRetries(nil, p, pol.Timeout, pol.Retries)
	if f := pol.Fault; f != nil {
		errs = validateFault(errs, p.Child("fault"), f)
		errs = validateMatches(errs, p.Child("fault", "match"), f.Match, -1)
	}
	errs = maxItems(errs, p.Child("rules"), len(pol.Rules), 8)
	seen := map[string]bool{}
	for i, r := range pol.Rules {
		rp := p.Child("rules").Index(i)
		errs = pattern(errs, rp.Child("name"), r.Name, routeNameRE)
		if len(r.Name) > 40 {
			errs = append(errs, field.TooLong(rp.Child("name"), r.Name, 40))
		}
		if seen[r.Name] {
			errs = append(errs, field.Duplicate(rp.Child("name"), r.Name))
		}
		seen[r.Name] = true
		if len(r.Match) == 0 {
			errs = append(errs, field.Required(rp.Child("match"), "a rule applies to the requests it matches; for every request, set the policy's own fields"))
		}
		errs = validateMatches(errs, rp.Child("match"), r.Match, 8)
		errs = validateTimeoutRetries(errs, rp, r.Timeout, r.Retries)
		if f := r.Fault; f != nil {
			errs = validateFault(errs, rp.Child("fault"), f)
			if len(f.Match) > 0 {
				errs = append(errs, field.Forbidden(rp.Child("fault", "match"), "a rule's fault applies to the rule's match; move the conditions to rules[].match"))
			}
		}
		if r.Timeout == nil && r.Retries == nil && r.Fault == nil {
			errs = append(errs, field.Required(rp, "a rule must set timeout, retries or fault"))
		}
	}
	return errs
}

func validateTimeoutRetries(errs field.ErrorList, p *field.Path, timeout *metav1.Duration, r *v1alpha1.RetryPolicy) field.ErrorList {
	errs = positiveDuration(errs, p.Child("timeout"), timeout)
	if r == nil {
		return errs
	}
	rp := p.Child("retries")
	errs = inRange(errs, rp.Child("attempts"), r.Attempts, 0, 10)
	errs = positiveDuration(errs, rp.Child("perTryTimeout"), r.PerTryTimeout)
	if r.RetryOn != "" {
		for tok := range strings.SplitSeq(r.RetryOn, ",") {
			tok = strings.TrimSpace(tok)
			if !retryOnTokens[tok] && !statusCodeRE.MatchString(tok) {
				errs = append(errs, field.Invalid(rp.Child("retryOn"), r.RetryOn,
					fmt.Sprintf("unknown retry condition %q; use Envoy's conditions (e.g. 5xx, reset, connect-failure, unavailable) or status codes, separated by commas", tok)))
				break
			}
		}
	}
	return errs
}

func validateFault(errs field.ErrorList, fp *field.Path, f *v1alpha1.FaultPolicy) field.ErrorList {
	if f.Abort == nil && f.Delay == nil {
		errs = append(errs, field.Required(fp, "must set abort, delay or both"))
	}
	if a := f.Abort; a != nil {
		ap := fp.Child("abort")
		if a.HTTPStatus == nil && a.GRPCStatus == nil {
			errs = append(errs, field.Required(ap.Child("httpStatus"), msgAbortStatus))
		}
		if a.HTTPStatus != nil {
			errs = inRange(errs, ap.Child("httpStatus"), *a.HTTPStatus, 200, 599)
		}
		if a.GRPCStatus != nil {
			errs = inRange(errs, ap.Child("grpcStatus"), *a.GRPCStatus, 1, 16)
		}
		errs = inRange(errs, ap.Child("percent"), a.Percent, 0, 100)
	}
	if d := f.Delay; d != nil {
		dp := fp.Child("delay")
		errs = requiredDuration(errs, dp.Child("fixedDelay"), d.FixedDelay)
		errs = inRange(errs, dp.Child("percent"), d.Percent, 0, 100)
	}
	return errs
}

func validateAffinity(a *v1alpha1.SessionAffinity, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch {
	case a.Cookie != nil && a.Header != nil:
		errs = append(errs, field.Forbidden(p.Child("header"), msgOneAffinity))
	case a.Cookie == nil && a.Header == nil:
		errs = append(errs, field.Required(p.Child("cookie"), msgOneAffinity))
	}
	if c := a.Cookie; c != nil {
		// Empty name is defaulted to sluice-canary.
		if c.Name != "" {
			errs = pattern(errs, p.Child("cookie", "name"), c.Name, cookieNameRE)
		}
		errs = positiveDuration(errs, p.Child("cookie", "maxAge"), c.MaxAge)
	}
	if h := a.Header; h != nil {
		errs = pattern(errs, p.Child("header", "name"), h.Name, affinityHeaderRE)
	}
	return errs
}

// validateMatches checks a list of route matches; limit < 0 means no
// MaxItems marker.
func validateMatches(errs field.ErrorList, p *field.Path, ms []v1alpha1.RouteMatch, limit int) field.ErrorList {
	if limit >= 0 {
		errs = maxItems(errs, p, len(ms), limit)
	}
	for i := range ms {
		errs = validateRouteMatch(errs, p.Index(i), &ms[i])
	}
	return errs
}

func validateRouteMatch(errs field.ErrorList, p *field.Path, m *v1alpha1.RouteMatch) field.ErrorList {
	// An empty match selects every request: a dark release or header route
	// with one would send all traffic to the new revision.
	if len(m.Headers) == 0 && m.URI == nil && len(m.Cookies) == 0 {
		errs = append(errs, field.Required(p, "must set at least one of headers, uri or cookies; an empty match selects every request"))
	}
	errs = maxItems(errs, p.Child("headers"), len(m.Headers), 16)
	for i, h := range m.Headers {
		hp := p.Child("headers").Index(i)
		errs = pattern(errs, hp.Child("name"), h.Name, headerNameRE)
		var set []string
		for _, f := range []struct {
			name string
			on   bool
		}{{"exact", h.Exact != nil}, {"prefix", h.Prefix != nil}, {"regex", h.Regex != nil}, {"present", h.Present != nil}} {
			if f.on {
				set = append(set, f.name)
			}
		}
		switch {
		case len(set) == 0:
			errs = append(errs, field.Required(hp, msgOneHeaderMatch))
		case len(set) > 1:
			errs = append(errs, field.Forbidden(hp.Child(set[1]), msgOneHeaderMatch))
		}
		if h.Regex != nil {
			if _, err := regexp.Compile(*h.Regex); err != nil {
				errs = append(errs, field.Invalid(hp.Child("regex"), *h.Regex, "must be an RE2 regular expression: "+err.Error()))
			}
		}
	}
	if u := m.URI; u != nil {
		up := p.Child("uri")
		switch {
		case u.Exact != nil && u.Prefix != nil:
			errs = append(errs, field.Forbidden(up.Child("prefix"), msgOneURIMatch))
		case u.Exact == nil && u.Prefix == nil:
			errs = append(errs, field.Required(up, msgOneURIMatch))
		}
		for _, f := range []struct {
			name string
			v    *string
		}{{"exact", u.Exact}, {"prefix", u.Prefix}} {
			if f.v != nil && !strings.HasPrefix(*f.v, "/") {
				errs = append(errs, field.Invalid(up.Child(f.name), *f.v, "must start with /"))
			}
		}
	}
	errs = maxItems(errs, p.Child("cookies"), len(m.Cookies), 16)
	for i, c := range m.Cookies {
		errs = pattern(errs, p.Child("cookies").Index(i).Child("name"), c.Name, cookieNameRE)
	}
	return errs
}

func (v Validator) strategy(s *v1alpha1.Strategy, serviceHosts []string, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	var set []string
	if s.Canary != nil {
		set = append(set, "canary")
	}
	if s.BlueGreen != nil {
		set = append(set, "blueGreen")
	}
	if s.DarkRelease != nil {
		set = append(set, "darkRelease")
	}
	switch {
	case len(set) == 0:
		errs = append(errs, field.Required(p, msgOneStrategy))
	case len(set) > 1:
		errs = append(errs, field.Forbidden(p.Child(set[1]), msgOneStrategy))
	}

	if c := s.Canary; c != nil {
		errs = append(errs, v.steps(c.Steps, p.Child("canary", "steps"))...)
	}
	if bg := s.BlueGreen; bg != nil {
		bp := p.Child("blueGreen")
		pp := bp.Child("preview")
		if len(bg.Preview.Match) == 0 && len(bg.Preview.Hosts) == 0 {
			errs = append(errs, field.Required(pp, "preview needs match or hosts"))
		}
		errs = validateMatches(errs, pp.Child("match"), bg.Preview.Match, 8)
		errs = maxItems(errs, pp.Child("hosts"), len(bg.Preview.Hosts), 8)
		errs = validateHosts(errs, pp.Child("hosts"), bg.Preview.Hosts)
		for i, h := range bg.Preview.Hosts {
			for _, sh := range serviceHosts {
				if h == sh {
					errs = append(errs, field.Invalid(pp.Child("hosts").Index(i), h, "is also a service host; preview hosts are served only by the new revision"))
				}
			}
		}
		if bg.PrePromotionAnalysis != nil {
			errs = append(errs, v.analysisStep(bg.PrePromotionAnalysis, bp.Child("prePromotionAnalysis"))...)
			errs = ownSides(errs, bg.PrePromotionAnalysis, bp.Child("prePromotionAnalysis"))
		}
		if bg.PostPromotionAnalysis != nil {
			errs = append(errs, v.analysisStep(bg.PostPromotionAnalysis, bp.Child("postPromotionAnalysis"))...)
			errs = ownSides(errs, bg.PostPromotionAnalysis, bp.Child("postPromotionAnalysis"))
		}
		errs = atLeast(errs, bp.Child("autoPromotionSeconds"), bg.AutoPromotionSeconds, 0)
	}
	if d := s.DarkRelease; d != nil {
		dp := p.Child("darkRelease")
		if len(d.Match) == 0 {
			errs = append(errs, field.Required(dp.Child("match"), "must have at least 1 match"))
		}
		errs = validateMatches(errs, dp.Child("match"), d.Match, 8)
		if d.Analysis != nil {
			errs = append(errs, v.analysisStep(d.Analysis, dp.Child("analysis"))...)
			errs = ownSides(errs, d.Analysis, dp.Child("analysis"))
		}
		errs = positiveDuration(errs, dp.Child("duration"), d.Duration)
		errs = append(errs, v.steps(d.Steps, dp.Child("steps"))...)
	}
	return errs
}

func (v Validator) steps(steps []v1alpha1.CanaryStep, p *field.Path) field.ErrorList {
	errs := maxItems(nil, p, len(steps), 64)
	// Header routes in effect after each step. Setting a name that is in
	// effect replaces that route, so names in effect are unique by
	// construction; removing needs a route to remove.
	inEffect := map[string]bool{}
	for i := range steps {
		s := &steps[i]
		sp := p.Index(i)
		var set []string
		if s.SetWeight != nil {
			set = append(set, "setWeight")
		}
		if s.Pause != nil {
			set = append(set, "pause")
		}
		if s.Analysis != nil {
			set = append(set, "analysis")
		}
		if s.SetHeaderRoute != nil {
			set = append(set, "setHeaderRoute")
		}
		if s.SetMirror != nil {
			set = append(set, "setMirror")
		}
		if s.SetRevision != nil {
			set = append(set, "setRevision")
		}
		switch {
		case len(set) == 0:
			errs = append(errs, field.Required(sp, msgOneStepAction))
		case len(set) > 1:
			errs = append(errs, field.Forbidden(sp.Child(set[1]), msgOneStepAction))
		}

		if s.SetWeight != nil {
			errs = inRange(errs, sp.Child("setWeight"), *s.SetWeight, 0, 100)
		}
		if s.Pause != nil {
			errs = positiveDuration(errs, sp.Child("pause", "duration"), s.Pause.Duration)
		}
		if s.Analysis != nil {
			errs = append(errs, v.analysisStep(s.Analysis, sp.Child("analysis"))...)
		}
		if hr := s.SetHeaderRoute; hr != nil {
			hp := sp.Child("setHeaderRoute")
			errs = pattern(errs, hp.Child("name"), hr.Name, routeNameRE)
			errs = maxLength(errs, hp.Child("name"), hr.Name, 40)
			errs = validateMatches(errs, hp.Child("match"), hr.Match, 8)
			switch {
			case hr.Name == "":
			case len(hr.Match) > 0:
				inEffect[hr.Name] = true
			case !inEffect[hr.Name]:
				errs = append(errs, field.Invalid(hp.Child("name"), hr.Name,
					"without match this step removes a header route, but no earlier step set one with this name (or it was already removed)"))
			default:
				delete(inEffect, hr.Name)
			}
		}
		if s.SetMirror != nil {
			errs = inRange(errs, sp.Child("setMirror", "percent"), s.SetMirror.Percent, 0, 100)
		}
	}
	return errs
}

// ownSides checks the sides of an analysis that runs where no extra
// revision can: only stable and canary exist there.
func ownSides(errs field.ErrorList, a *v1alpha1.AnalysisStep, p *field.Path) field.ErrorList {
	for _, side := range []struct{ name, value string }{{"baseline", a.Baseline}, {"candidate", a.Candidate}} {
		if side.value != "" && side.value != "stable" && side.value != "canary" {
			errs = append(errs, field.NotSupported(p.Child(side.name), side.value, []string{"stable", "canary"}))
		}
	}
	return errs
}

func (v Validator) backgroundAnalysis(a *v1alpha1.BackgroundAnalysis, s *v1alpha1.Strategy, p *field.Path) field.ErrorList {
	errs := ownSides(v.analysisStep(&a.AnalysisStep, p), &a.AnalysisStep, p)
	if a.StartingStep == nil {
		return errs
	}
	sp := p.Child("startingStep")
	if *a.StartingStep < 0 {
		return atLeast(errs, sp, a.StartingStep, 0)
	}
	var n int
	switch {
	case s.Canary != nil:
		n = len(s.Canary.Steps)
	case s.DarkRelease != nil:
		n = len(s.DarkRelease.Steps)
	case s.BlueGreen != nil:
		return append(errs, field.Forbidden(sp, "blueGreen has no steps; leave startingStep out"))
	default:
		return errs // no strategy: reported already
	}
	if int(*a.StartingStep) >= n {
		errs = append(errs, field.Invalid(sp, *a.StartingStep, fmt.Sprintf("must be less than the number of steps (%d)", n)))
	}
	return errs
}

func (v Validator) analysisStep(a *v1alpha1.AnalysisStep, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	tp := p.Child("templates")
	if len(a.Templates) == 0 {
		errs = append(errs, field.Required(tp, "must name at least 1 AnalysisTemplate"))
	}
	seen := map[string]bool{}
	for i, t := range a.Templates {
		np := tp.Index(i).Child("name")
		switch {
		case t.Name == "":
			errs = append(errs, field.Required(np, ""))
		case seen[t.Name]:
			errs = append(errs, field.Duplicate(np, t.Name))
		default:
			errs = messages(errs, np, t.Name, utilvalidation.IsDNS1123Subdomain(t.Name))
		}
		seen[t.Name] = true
	}
	names := make([]string, len(a.Args))
	for i, arg := range a.Args {
		names[i] = arg.Name
	}
	return argNames(errs, p.Child("args"), names, "passed")
}

// argNames checks argument names under p: unique, well formed, and not one
// of the built-ins Sluice supplies (verb says what the user tried).
func argNames(errs field.ErrorList, p *field.Path, names []string, verb string) field.ErrorList {
	seen := map[string]bool{}
	for i, name := range names {
		np := p.Index(i).Child("name")
		switch {
		case seen[name]:
			errs = append(errs, field.Duplicate(np, name))
		case IsBuiltinArg(name):
			errs = append(errs, field.Invalid(np, name, "is supplied by Sluice on every run and cannot be "+verb))
		default:
			errs = pattern(errs, np, name, argNameRE)
		}
		seen[name] = true
	}
	return errs
}

func validateRollback(r *v1alpha1.RollbackPolicy, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	actions := []v1alpha1.FailureAction{v1alpha1.ActionAbort, v1alpha1.ActionPause}
	for _, f := range []struct {
		name string
		a    v1alpha1.FailureAction
	}{{"onAnalysisFailure", r.OnAnalysisFailure}, {"onNack", r.OnNack}} {
		if f.a != "" && f.a != v1alpha1.ActionAbort && f.a != v1alpha1.ActionPause {
			errs = append(errs, field.NotSupported(p.Child(f.name), f.a, actions))
		}
	}
	return errs
}
