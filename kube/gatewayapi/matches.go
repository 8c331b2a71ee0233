package gatewayapi

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluicehq/sluice/rollout/plan"
)

// A match of a route Sluice writes before a managed rule is one of the
// rule's own matches with one of the plan route's added: the rule's path,
// method, query parameters and headers stay, the plan's headers (and, as a
// "cookie" header pattern, its cookies) join them, and the plan's URI
// narrows the path (HTTPRoute) or the method (GRPCRoute). Such a match is
// at least as specific as the rule's own under the Gateway API's
// precedence (same path, more headers) and comes first in the list, so it
// wins for the requests it names.

// match is one entry of a rule's matches, each field raw like a rule's.
type match map[string]json.RawMessage

// narrow returns the matches that hold when one of the stub rule's and
// one of the plan route's hold; none when no request satisfies both.
func (k Kind) narrow(stub rule, pm []plan.Match) (json.RawMessage, error) {
	var own []match
	if err := stub.get("matches", &own); err != nil {
		return nil, err
	}
	if len(own) == 0 {
		// No matches: every request (a GRPCRoute's default).
		own = []match{{}}
	}
	var out []match
	for _, s := range own {
		for _, m := range pm {
			both, ok, err := k.conjoin(s, m)
			if err != nil {
				return nil, err
			}
			if ok {
				out = append(out, both)
			}
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("encoding matches: %w", err)
	}
	return b, nil
}

// conjoin is s with m's conditions added; ok is false when no request can
// satisfy both, and err says what a Gateway API match cannot express.
func (k Kind) conjoin(s match, m plan.Match) (match, bool, error) {
	out := match{}
	for key, v := range s {
		out[key] = v
	}
	var headers []gatewayv1.HTTPHeaderMatch
	if raw, ok := s["headers"]; ok {
		if err := json.Unmarshal(raw, &headers); err != nil {
			return nil, false, fmt.Errorf("headers of a match: %w", err)
		}
	}
	add, err := planHeaders(m)
	if err != nil {
		return nil, false, err
	}
	for _, h := range add {
		if have, ok := findHeader(headers, string(h.Name)); ok {
			if sameJSON(have, h) {
				continue
			}
			return nil, false, fmt.Errorf("header %q is matched both by the route rule and by the plan; Gateway API holds one condition per header", h.Name)
		}
		headers = append(headers, h)
	}
	if len(headers) > 0 {
		if out["headers"], err = json.Marshal(headers); err != nil {
			return nil, false, err
		}
	}
	if k == GRPCRoute {
		return narrowMethod(out, m.URI)
	}
	return narrowPath(out, m.URI)
}

func findHeader(hs []gatewayv1.HTTPHeaderMatch, name string) (gatewayv1.HTTPHeaderMatch, bool) {
	for _, h := range hs {
		if strings.EqualFold(string(h.Name), name) {
			return h, true
		}
	}
	return gatewayv1.HTTPHeaderMatch{}, false
}

// headerName is the Gateway API's pattern for a header name: no HTTP/2
// pseudo-headers.
var headerName = regexp.MustCompile("^[A-Za-z0-9!#$%&'*+\\-.^_`|~]+$")

// planHeaders converts the plan match's headers and cookies. The Gateway
// API compares a header's value exactly or by a regular expression, so a
// prefix is the pattern ^<prefix>.* and presence .*; it cannot require a
// header to be absent.
func planHeaders(m plan.Match) ([]gatewayv1.HTTPHeaderMatch, error) {
	var out []gatewayv1.HTTPHeaderMatch
	seen := map[string]bool{}
	put := func(name string, t gatewayv1.HeaderMatchType, v string) error {
		if !headerName.MatchString(name) {
			return fmt.Errorf("header %q cannot be matched by a Gateway API route", name)
		}
		if seen[strings.ToLower(name)] {
			return fmt.Errorf("two conditions on header %q in one match; Gateway API holds one per header", name)
		}
		seen[strings.ToLower(name)] = true
		out = append(out, gatewayv1.HTTPHeaderMatch{Type: &t, Name: gatewayv1.HTTPHeaderName(name), Value: v})
		return nil
	}
	for _, h := range m.Headers {
		var err error
		switch h.Kind {
		case plan.HeaderExact:
			err = put(h.Name, gatewayv1.HeaderMatchExact, h.Value)
		case plan.HeaderPrefix:
			err = put(h.Name, gatewayv1.HeaderMatchRegularExpression, "^"+regexp.QuoteMeta(h.Value)+".*")
		case plan.HeaderRegex:
			err = put(h.Name, gatewayv1.HeaderMatchRegularExpression, h.Value)
		case plan.HeaderPresent:
			err = put(h.Name, gatewayv1.HeaderMatchRegularExpression, ".*")
		case plan.HeaderAbsent:
			err = fmt.Errorf("header %q: a Gateway API match cannot require a header to be absent", h.Name)
		default:
			err = fmt.Errorf("header %q: unknown match kind %q", h.Name, h.Kind)
		}
		if err != nil {
			return nil, err
		}
	}
	if len(m.Cookies) > 0 {
		p, err := cookiePattern(m.Cookies)
		if err != nil {
			return nil, err
		}
		if err := put("cookie", gatewayv1.HeaderMatchRegularExpression, p); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// maxCookies bounds the alternatives cookiePattern writes (3! = 6).
const maxCookies = 3

// cookiePattern matches a Cookie header that carries each cookie with its
// exact value, in any order. The Gateway API has no cookie match and one
// condition per header, and RE2 has no lookahead, so every order is an
// alternative. A cookie begins the header or follows "; ", and ends it or
// is followed by ";": "xname=v" and "name=vv" do not match name=v.
func cookiePattern(cs []plan.CookieMatch) (string, error) {
	if len(cs) > maxCookies {
		return "", fmt.Errorf("%d cookie conditions in one match; a Gateway API route can express at most %d", len(cs), maxCookies)
	}
	quoted := make([]string, len(cs))
	for i, c := range cs {
		quoted[i] = regexp.QuoteMeta(c.Name + "=" + c.Value)
	}
	var alts []string
	for _, order := range orders(len(quoted)) {
		parts := make([]string, len(order))
		for i, j := range order {
			parts[i] = quoted[j]
		}
		alts = append(alts, `(?:.*;\s*)?`+strings.Join(parts, `;(?:.*;)?\s*`)+`(?:;.*)?`)
	}
	return "^(?:" + strings.Join(alts, "|") + ")$", nil
}

// orders lists every order of 0..n-1.
func orders(n int) [][]int {
	if n == 0 {
		return [][]int{{}}
	}
	var out [][]int
	for _, rest := range orders(n - 1) {
		for at := 0; at <= len(rest); at++ {
			o := make([]int, 0, n)
			o = append(o, rest[:at]...)
			o = append(o, n-1)
			out = append(out, append(o, rest[at:]...))
		}
	}
	return out
}

// narrowPath narrows an HTTPRoute match's path to the plan's URI.
func narrowPath(m match, u *plan.URIMatch) (match, bool, error) {
	if u == nil {
		return m, true, nil
	}
	t := gatewayv1.PathMatchExact
	if u.Prefix {
		t = gatewayv1.PathMatchPathPrefix
	}
	return narrowField(m, "path", &gatewayv1.HTTPPathMatch{Type: &t, Value: &u.Value}, conjoinPath)
}

// narrowField sets field key of m to the condition that holds when m's
// and want hold (conjoin); ok is false when none does.
func narrowField[T any](m match, key string, want *T, conjoin func(have, want *T) (*T, bool, error)) (match, bool, error) {
	var have *T
	if raw, ok := m[key]; ok {
		if err := json.Unmarshal(raw, &have); err != nil {
			return nil, false, fmt.Errorf("%s of a match: %w", key, err)
		}
	}
	both, ok, err := conjoin(have, want)
	if err != nil || !ok {
		return nil, ok, err
	}
	b, err := json.Marshal(both)
	if err != nil {
		return nil, false, err
	}
	m[key] = b
	return m, true, nil
}

// conjoinPath is the path condition that holds when a and b hold. Gateway
// API prefixes match whole path segments.
func conjoinPath(a, b *gatewayv1.HTTPPathMatch) (*gatewayv1.HTTPPathMatch, bool, error) {
	if a == nil || a.Value == nil {
		return b, true, nil
	}
	at, bt := pathType(a), pathType(b)
	av, bv := *a.Value, *b.Value
	switch {
	case at == bt && av == bv:
		return a, true, nil
	case at == gatewayv1.PathMatchRegularExpression || bt == gatewayv1.PathMatchRegularExpression:
		return nil, false, fmt.Errorf("cannot narrow path %s %q to %s %q: a Gateway API match has one path condition", at, av, bt, bv)
	case at == gatewayv1.PathMatchExact && bt == gatewayv1.PathMatchExact:
		return nil, false, nil
	case at == gatewayv1.PathMatchExact:
		return a, underPrefix(av, bv), nil
	case bt == gatewayv1.PathMatchExact:
		return b, underPrefix(bv, av), nil
	case underPrefix(bv, av):
		// Two prefixes: the longer one, if one lies under the other.
		return b, true, nil
	}
	return a, underPrefix(av, bv), nil
}

func pathType(p *gatewayv1.HTTPPathMatch) gatewayv1.PathMatchType {
	if p.Type == nil {
		return gatewayv1.PathMatchPathPrefix
	}
	return *p.Type
}

// underPrefix reports whether path lies under prefix, segment by segment.
func underPrefix(path, prefix string) bool {
	p := strings.TrimSuffix(prefix, "/")
	return p == "" || path == p || strings.HasPrefix(path, p+"/")
}

// narrowMethod narrows a GRPCRoute match's method to the plan's URI, which
// names a gRPC method as /<service>/<method>, or a service as /<service>/.
func narrowMethod(m match, u *plan.URIMatch) (match, bool, error) {
	want, err := planMethod(u)
	if err != nil || want == nil {
		return m, err == nil, err
	}
	return narrowField(m, "method", want, conjoinMethod)
}

func planMethod(u *plan.URIMatch) (*gatewayv1.GRPCMethodMatch, error) {
	if u == nil || (u.Prefix && u.Value == "/") {
		return nil, nil
	}
	parts := strings.Split(strings.TrimPrefix(u.Value, "/"), "/")
	exact := gatewayv1.GRPCMethodMatchExact
	switch {
	case !strings.HasPrefix(u.Value, "/") || len(parts) != 2 || parts[0] == "":
	case u.Prefix && parts[1] == "":
		return &gatewayv1.GRPCMethodMatch{Type: &exact, Service: &parts[0]}, nil
	case !u.Prefix && parts[1] != "":
		return &gatewayv1.GRPCMethodMatch{Type: &exact, Service: &parts[0], Method: &parts[1]}, nil
	}
	return nil, fmt.Errorf("uri %q is neither a gRPC method (exact /<service>/<method>) nor a gRPC service (prefix /<service>/)", u.Value)
}

// conjoinMethod is the method condition that holds when a and b hold.
func conjoinMethod(a, b *gatewayv1.GRPCMethodMatch) (*gatewayv1.GRPCMethodMatch, bool, error) {
	switch {
	case a == nil:
		return b, true, nil
	case sameJSON(a, b):
		return a, true, nil
	case a.Type != nil && *a.Type == gatewayv1.GRPCMethodMatchRegularExpression:
		return nil, false, fmt.Errorf("cannot narrow the rule's method pattern to the plan's method: a Gateway API match has one method condition")
	}
	svc, ok1 := mergeName(a.Service, b.Service)
	mth, ok2 := mergeName(a.Method, b.Method)
	if !ok1 || !ok2 {
		return nil, false, nil
	}
	exact := gatewayv1.GRPCMethodMatchExact
	return &gatewayv1.GRPCMethodMatch{Type: &exact, Service: svc, Method: mth}, true, nil
}

// mergeName is the one of a and b that is set; ok is false when both are
// set and differ.
func mergeName(a, b *string) (*string, bool) {
	switch {
	case a == nil || *a == "":
		return b, true
	case b == nil || *b == "" || *a == *b:
		return a, true
	}
	return nil, false
}
