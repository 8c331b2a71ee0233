package gatewayapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluicehq/sluice/kube/workload"
	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Kind is a Gateway API route kind Sluice writes.
type Kind string

// The route kinds of the standard channel Sluice writes.
const (
	HTTPRoute Kind = "HTTPRoute"
	GRPCRoute Kind = "GRPCRoute"
)

// GroupVersionKind is the kind in gateway.networking.k8s.io/v1.
func (k Kind) GroupVersionKind() schema.GroupVersionKind {
	return gatewayv1.SchemeGroupVersion.WithKind(string(k))
}

// Names Sluice writes on a route.
const (
	// FieldManager is the one server-side-apply field manager of every
	// route write.
	FieldManager = "sluice"
	// LabelRouting marks every route Sluice writes, so that the Writer's
	// cache holds those and no others.
	LabelRouting = "sluice.dev/routing"
	routingValue = "true"
)

// Input is everything Render needs.
type Input struct {
	// Plan is the sealed traffic plan; Plan.Namespace is the route's.
	Plan plan.Plan
	Kind Kind
	// Route names the route and the rules Sluice manages in it.
	Route v1alpha1.GatewayRouteRef
	// Rollout is the name of the Rollout writing: its record on the route
	// is kept under it, so several Rollouts can manage rules of one route.
	Rollout string
	// Owner is the controller reference of a route Sluice creates
	// (Route.Create); such a route is the Rollout's own.
	Owner *metav1.OwnerReference
	// Provenance is the Rollout's Git provenance, recorded with its rules.
	Provenance map[string]string
}

// Desired is what Sluice applies for one plan.
type Desired struct {
	// Apply is the server-side apply request: only the fields Sluice
	// owns. For a route of the user's own: the rules, the routing label
	// and the record annotation, never parentRefs or hostnames.
	Apply *unstructured.Unstructured
	// Changed is false when the live route holds all of Apply already.
	Changed bool
}

// Render merges the plan into the live route, or renders the route
// Sluice creates when there is none (Route.Create). It is pure.
//
// HTTPRoute and GRPCRoute declare spec.rules an atomic list: a server-
// side apply owns all the rules or none. So Sluice applies the whole list,
// rebuilt from the live one: first the live route is taken back to the
// route as declared (AnnotationManagedRules says which rules Sluice put in
// and which backendRefs and filter it changed, and a change is undone only
// where the live value is still Sluice's), then the managed rules are
// rendered again. Whatever another field manager wrote since Sluice's last
// write, a GitOps tool's apply included, is therefore the declaration the
// plan is merged into; nothing it wrote is reverted. The request carries
// the live resourceVersion, and the API server refuses it if the route
// changed after it was read.
func Render(in Input, live *unstructured.Unstructured) (*Desired, error) {
	p := &in.Plan
	if err := p.Check(); err != nil {
		return nil, fmt.Errorf("invalid plan: %w", err)
	}
	if p.Namespace == "" || in.Rollout == "" {
		return nil, errors.New("Gateway API routes are written in controller mode only: the plan needs a namespace and a Rollout")
	}
	if in.Kind != HTTPRoute && in.Kind != GRPCRoute {
		return nil, fmt.Errorf("unknown route kind %q", in.Kind)
	}
	routes, port, err := mainRoutes(p)
	if err != nil {
		return nil, err
	}
	r := &renderer{in: in, routes: routes, port: int32(port)}
	owned, err := r.owned(live)
	if err != nil {
		return nil, err
	}
	decl, recs := []rule(nil), records{}
	if owned {
		decl, err = r.createdRules()
	} else {
		decl, err = rulesOf(live)
		if err == nil {
			recs, err = readRecords(live)
		}
	}
	if err != nil {
		return nil, r.errorf("%w", err)
	}
	rules, mine, err := r.rules(decl, recs)
	if err != nil {
		return nil, r.errorf("%w", err)
	}
	if recs[in.Rollout], err = json.Marshal(mine); err != nil {
		return nil, err
	}
	apply, err := r.applyObject(owned, rules, recs, live)
	if err != nil {
		return nil, r.errorf("%w", err)
	}
	return &Desired{Apply: apply, Changed: live == nil || !holds(live, apply)}, nil
}

// mainRoutes are the routes of the service hosts and their port. A route
// has one set of rules for all its hostnames, so the blue/green preview
// hosts, which route apart, cannot be written to it.
func mainRoutes(p *plan.Plan) ([]plan.Route, uint32, error) {
	main := p.Hosts[0]
	for _, h := range p.Hosts[1:] {
		if !reflect.DeepEqual(h.Routes, main.Routes) {
			return nil, 0, fmt.Errorf("host %q routes apart from %q (a blue/green preview host): a Gateway API route has one set of rules for all its hostnames; preview by match instead", h.Name, main.Name)
		}
	}
	return main.Routes, main.Port, nil
}

type renderer struct {
	in     Input
	routes []plan.Route
	port   int32
}

func (r *renderer) errorf(format string, args ...any) error {
	return fmt.Errorf("%s %s/%s: "+format, append([]any{r.in.Kind, r.in.Plan.Namespace, r.in.Route.Name}, args...)...)
}

// owned reports whether Sluice renders the whole route: it creates it
// (none exists and Route.Create is set) or created it before. A route
// Sluice created for another Rollout is refused.
func (r *renderer) owned(live *unstructured.Unstructured) (bool, error) {
	create := r.in.Route.Create != nil
	switch {
	case live == nil && !create:
		return false, r.errorf("not found; create it, or set create in the router to let Sluice create it")
	case live == nil:
		return true, nil
	case live.GetLabels()[workload.LabelManagedBy] != workload.ManagedBy:
		return false, nil
	}
	if o := r.in.Owner; o != nil {
		if c := metav1.GetControllerOf(live); c != nil && c.UID != o.UID {
			return false, r.errorf("created by Sluice for %s %s, not for this Rollout", c.Kind, c.Name)
		}
	}
	if !create {
		return false, r.errorf("created by Sluice; keep create in the router, or delete the route to hand it over")
	}
	return true, nil
}

// createdRules are the rules of a route Sluice creates: one per managed
// rule, in the order the router lists them, matching every request.
func (r *renderer) createdRules() ([]rule, error) {
	refs := r.in.Route.Rules
	if len(refs) == 0 {
		refs = []v1alpha1.GatewayRuleRef{{}}
	}
	out := make([]rule, 0, len(refs))
	for i, ref := range refs {
		if ref.Index != nil && int(*ref.Index) != i {
			return nil, fmt.Errorf("rule index %d: the rules of a route Sluice creates are the router's rules, in order", *ref.Index)
		}
		ru := rule{}
		if ref.Name != "" {
			if err := ru.set("name", ref.Name); err != nil {
				return nil, err
			}
		}
		if r.in.Kind == HTTPRoute {
			// The API server's default, written out so the route reads
			// back as it was sent.
			prefix, root := gatewayv1.PathMatchPathPrefix, "/"
			if err := ru.set("matches", []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{Type: &prefix, Value: &root}}}); err != nil {
				return nil, err
			}
		}
		out = append(out, ru)
	}
	return out, nil
}

// rules takes the live rules back to the declaration and renders the
// managed ones again. It returns the rules to write and this Rollout's
// new record.
func (r *renderer) rules(decl []rule, recs records) ([]rule, *entry, error) {
	slots, err := declaredSlots(decl, recs, r.in.Rollout)
	if err != nil {
		return nil, nil, err
	}
	managed, err := r.resolve(slots, recs)
	if err != nil {
		return nil, nil, err
	}
	mine := &entry{PlanVersion: r.in.Plan.Version, Provenance: r.in.Provenance}
	var out []rule
	for i, s := range slots {
		key, ok := managed[i]
		if !ok {
			out = append(out, s.rule)
			continue
		}
		rs, rec, err := r.expand(s.rule, key)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, rs...)
		mine.Rules = append(mine.Rules, rec)
	}
	if err := uniqueNames(out); err != nil {
		return nil, nil, err
	}
	return out, mine, nil
}

// resolve finds the rules the router names, and refuses one that another
// Rollout manages.
func (r *renderer) resolve(slots []slot, recs records) (map[int]string, error) {
	refs := r.in.Route.Rules
	if len(refs) == 0 {
		refs = []v1alpha1.GatewayRuleRef{{}}
	}
	managed := map[int]string{}
	for _, ref := range refs {
		key := ruleKey(ref)
		i, err := findKey(slots, key)
		if err != nil {
			return nil, err
		}
		if other, dup := managed[i]; dup {
			return nil, fmt.Errorf("the router's rules %s and %s are one rule", other, key)
		}
		managed[i] = key
	}
	for ro := range recs {
		if ro == r.in.Rollout {
			continue
		}
		e, err := recs.entry(ro)
		if err != nil {
			return nil, err
		}
		for _, rec := range e.Rules {
			if i, err := findKey(slots, rec.Key); err == nil && managed[i] != "" {
				return nil, fmt.Errorf("rule %s is managed by Rollout %s", managed[i], ro)
			}
		}
	}
	return managed, nil
}

func uniqueNames(rules []rule) error {
	seen := map[string]bool{}
	for _, ru := range rules {
		n := ru.name()
		if n == "" {
			continue
		}
		if seen[n] {
			return fmt.Errorf("rule name %q is used twice: by Sluice and by the route, or twice by the route; rename the route's rule", n)
		}
		seen[n] = true
	}
	return nil
}

// applyObject is the server-side apply request.
func (r *renderer) applyObject(owned bool, rules []rule, recs records, live *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	u, err := applyRules(r.in.Kind, r.in.Plan.Namespace, r.in.Route.Name, rules, recs, live)
	if err != nil || !owned {
		return u, err
	}
	u.SetLabels(map[string]string{LabelRouting: routingValue, workload.LabelManagedBy: workload.ManagedBy})
	if o := r.in.Owner; o != nil {
		u.SetOwnerReferences([]metav1.OwnerReference{*o})
	}
	spec := u.Object["spec"].(map[string]any)
	c := r.in.Route.Create
	if err := jsonInto(parentRefs(c.ParentRefs), &spec, "parentRefs"); err != nil {
		return nil, err
	}
	if len(c.Hostnames) > 0 {
		if err := jsonInto(c.Hostnames, &spec, "hostnames"); err != nil {
			return nil, err
		}
	}
	return u, nil
}

// applyRules is an apply request of a route's rules and Sluice's records
// of them (with its label; neither when there are no records left).
func applyRules(kind Kind, ns, name string, rules []rule, recs records, live *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	spec := map[string]any{}
	if err := jsonInto(rules, &spec, "rules"); err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	u.SetGroupVersionKind(kind.GroupVersionKind())
	u.SetNamespace(ns)
	u.SetName(name)
	if len(recs) > 0 {
		text, err := recs.encode()
		if err != nil {
			return nil, err
		}
		u.SetLabels(map[string]string{LabelRouting: routingValue})
		u.SetAnnotations(map[string]string{AnnotationManagedRules: text})
	}
	if live != nil {
		// The write is refused if the route changed since it was read.
		u.SetResourceVersion(live.GetResourceVersion())
	}
	return u, nil
}

// jsonInto puts v into m[key] as unstructured JSON (integers as int64).
func jsonInto(v any, m *map[string]any, key string) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", key, err)
	}
	var out any
	if err := utiljson.Unmarshal(b, &out); err != nil {
		return fmt.Errorf("decoding %s: %w", key, err)
	}
	(*m)[key] = out
	return nil
}

// parentRefs of a created route, with the API server's defaults written
// out so the route reads back as it was sent.
func parentRefs(in []v1alpha1.GatewayParentRef) []gatewayv1.ParentReference {
	out := make([]gatewayv1.ParentReference, 0, len(in))
	for _, p := range in {
		// Group and kind default to a Gateway; a Service (GAMMA) is in the
		// core group, "".
		group, kind := gatewayv1.Group(p.Group), gatewayv1.Kind(p.Kind)
		if kind == "" {
			kind = "Gateway"
		}
		if group == "" && kind != "Service" {
			group = gatewayv1.GroupName
		}
		ref := gatewayv1.ParentReference{Group: &group, Kind: &kind, Name: gatewayv1.ObjectName(p.Name)}
		if p.Namespace != "" {
			ns := gatewayv1.Namespace(p.Namespace)
			ref.Namespace = &ns
		}
		if p.SectionName != "" {
			s := gatewayv1.SectionName(p.SectionName)
			ref.SectionName = &s
		}
		if p.Port != nil {
			port := gatewayv1.PortNumber(*p.Port)
			ref.Port = &port
		}
		out = append(out, ref)
	}
	return out
}

// holds reports whether live already has every field of the apply
// request, so that applying it would change nothing.
func holds(live, apply *unstructured.Unstructured) bool {
	for k, v := range apply.GetLabels() {
		if live.GetLabels()[k] != v {
			return false
		}
	}
	for k, v := range apply.GetAnnotations() {
		if live.GetAnnotations()[k] != v {
			return false
		}
	}
	if refs := apply.GetOwnerReferences(); len(refs) > 0 && !sameJSON(live.GetOwnerReferences(), refs) {
		return false
	}
	spec, _, _ := unstructured.NestedMap(apply.Object, "spec")
	have, _, _ := unstructured.NestedMap(live.Object, "spec")
	for k, v := range spec {
		if !sameJSON(have[k], v) {
			return false
		}
	}
	return true
}
