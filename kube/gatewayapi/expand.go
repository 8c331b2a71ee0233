package gatewayapi

import (
	"encoding/json"
	"fmt"
	"maps"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluicehq/sluice/kube/workload"
	"github.com/sluicehq/sluice/rollout/plan"
)

// expand renders a managed rule: before it, a copy narrowed to each plan
// route with a match, sending that route's traffic; the rule itself
// carries the plan's last route (the weights, and the mirror). Each copy
// keeps the rule's filters, timeouts and every other field.
func (r *renderer) expand(stub rule, key string) ([]rule, ruleRecord, error) {
	rec := ruleRecord{Key: key, Declared: stub["backendRefs"]}
	if err := forwards(stub); err != nil {
		return nil, rec, err
	}
	template := map[string]json.RawMessage{}
	if backs, err := rawList(stub["backendRefs"]); err != nil {
		return nil, rec, fmt.Errorf("backendRefs of rule %q: %w", stub.name(), err)
	} else if len(backs) > 0 {
		if err := json.Unmarshal(backs[0], &template); err != nil {
			return nil, rec, fmt.Errorf("backendRefs of rule %q: %w", stub.name(), err)
		}
	}
	last := len(r.routes) - 1
	out := make([]rule, 0, len(r.routes))
	for i, pr := range r.routes {
		ru := stub.clone()
		if i < last {
			name, err := r.extraName(stub.name(), key, pr.Name)
			if err != nil {
				return nil, rec, err
			}
			if len(pr.Match) > 0 {
				m, err := r.in.Kind.narrow(stub, pr.Match)
				if err != nil {
					return nil, rec, fmt.Errorf("plan route %q in rule %s: %w", pr.Name, key, err)
				}
				if m == nil {
					// No request of the rule can match the plan route.
					continue
				}
				ru["matches"] = m
			}
			if err := ru.set("name", name); err != nil {
				return nil, rec, err
			}
			rec.Extra = append(rec.Extra, name)
		}
		refs, err := r.backendRefs(pr.Destinations, template)
		if err != nil {
			return nil, rec, err
		}
		ru["backendRefs"] = refs
		if pr.Mirror != nil {
			f, err := r.mirror(ru, pr.Mirror)
			if err != nil {
				return nil, rec, err
			}
			if i == last {
				rec.Mirror = f
			}
		}
		if i == last {
			rec.Written = refs
		}
		out = append(out, ru)
	}
	return out, rec, nil
}

// forwards refuses a rule that sends nothing to a backend.
func forwards(stub rule) error {
	var filters []struct {
		Type string `json:"type"`
	}
	if err := stub.get("filters", &filters); err != nil {
		return err
	}
	for _, f := range filters {
		if f.Type == string(gatewayv1.HTTPRouteFilterRequestRedirect) {
			return fmt.Errorf("rule %q redirects: it sends no traffic to a backend, so there is none to split", stub.name())
		}
	}
	return nil
}

// extraName names the copy of a managed rule for a plan route:
// "<rule>-<plan route>", or for an unnamed rule "sluice-<plan route>"
// ("sluice-<index>-<plan route>" when picked by index).
func (r *renderer) extraName(rule, key, planRoute string) (string, error) {
	base := rule
	if base == "" {
		base = "sluice"
		if kind, arg, _ := strings.Cut(key, "/"); kind == "index" {
			base += "-" + arg
		}
	}
	name := base + "-" + planRoute
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return "", fmt.Errorf("rule name %q for plan route %q: %s", name, planRoute, strings.Join(errs, "; "))
	}
	return name, nil
}

// service is the per-revision Service of a plan subset, which the
// controller creates for every revision it runs (workload.Service).
func (r *renderer) service(subset string) (string, error) {
	rev := r.in.Plan.Revision(subset)
	if rev == "" {
		return "", fmt.Errorf("plan subset %q has no revision", subset)
	}
	return workload.ServiceName(r.in.Plan.Service, rev), nil
}

// backendObject refers to a Service of the route's namespace, with the
// API server's defaults written out.
func (r *renderer) backendObject(svc string) gatewayv1.BackendObjectReference {
	group, kind := gatewayv1.Group(""), gatewayv1.Kind("Service")
	port := r.port
	return gatewayv1.BackendObjectReference{Group: &group, Kind: &kind, Name: gatewayv1.ObjectName(svc), Port: &port}
}

// backendRefs are the plan's destinations with a weight, each the
// template (the rule's first declared backendRef, so its filters stay)
// pointed at the destination's Service. A destination at 0% is left out:
// its Service may not exist yet.
func (r *renderer) backendRefs(dests []plan.Destination, template map[string]json.RawMessage) (json.RawMessage, error) {
	out := make([]map[string]json.RawMessage, 0, len(dests))
	for _, d := range dests {
		if d.Weight <= 0 {
			continue
		}
		svc, err := r.service(d.Subset)
		if err != nil {
			return nil, err
		}
		ref := maps.Clone(template)
		for _, k := range []string{"group", "kind", "name", "namespace", "port", "weight"} {
			delete(ref, k)
		}
		fields, err := json.Marshal(struct {
			gatewayv1.BackendObjectReference `json:",inline"`
			Weight                           int32 `json:"weight"`
		}{r.backendObject(svc), d.Weight})
		if err != nil {
			return nil, err
		}
		var set map[string]json.RawMessage
		if err := json.Unmarshal(fields, &set); err != nil {
			return nil, err
		}
		maps.Copy(ref, set)
		out = append(out, ref)
	}
	return json.Marshal(out)
}

// mirror appends a RequestMirror filter for m to the rule's filters and
// returns it.
func (r *renderer) mirror(ru rule, m *plan.Mirror) (json.RawMessage, error) {
	svc, err := r.service(m.Subset)
	if err != nil {
		return nil, err
	}
	pct := m.Percent
	f, err := json.Marshal(gatewayv1.HTTPRouteFilter{
		Type:          gatewayv1.HTTPRouteFilterRequestMirror,
		RequestMirror: &gatewayv1.HTTPRequestMirrorFilter{BackendRef: r.backendObject(svc), Percent: &pct},
	})
	if err != nil {
		return nil, err
	}
	filters, err := rawList(ru["filters"])
	if err != nil {
		return nil, fmt.Errorf("filters of rule %q: %w", ru.name(), err)
	}
	return f, ru.set("filters", append(filters, f))
}
