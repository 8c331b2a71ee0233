package istio

import (
	"encoding/json"
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/rollout/plan"
)

var (
	virtualServiceType  = metav1.TypeMeta{APIVersion: networkingv1.SchemeGroupVersion.String(), Kind: "VirtualService"}
	destinationRuleType = metav1.TypeMeta{APIVersion: networkingv1.SchemeGroupVersion.String(), Kind: "DestinationRule"}
)

// slot is one entry of the base route list: a route kept as it is, or the
// place where a managed route's rendering goes.
type slot struct {
	route   *networking.HTTPRoute // unmanaged: kept as is
	managed bool
	key     string // managed: the route's name, "" for the unnamed one
}

func (r *renderer) virtualService(main group, t target) (*networkingv1.VirtualService, error) {
	if r.in.VirtualService == nil {
		return r.ownedVirtualService(main, t)
	}
	decl := r.in.VirtualService
	slots, stubs, err := declaredSlots(decl.Spec.Http, r.in.Routes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", decl.Name, err)
	}
	hash, err := declaredHash(&decl.Spec, r.in.Routes...)
	if err != nil {
		return nil, err
	}
	base, rv := &decl.Spec, ""
	if l := r.live.VirtualService; l != nil && l.Annotations[AnnotationDeclaredHash] == hash {
		if ls, ok := liveSlots(l.Spec.Http, l.Annotations[AnnotationManagedRoutes], stubs); ok {
			slots, base, rv = ls, &l.Spec, l.ResourceVersion
		}
	}
	http, written, err := r.expandSlots(slots, stubs, main.routes, t)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", decl.Name, err)
	}
	meta, err := r.objectMeta(decl.Name, &decl.ObjectMeta, map[string]string{
		AnnotationDeclaredHash:  hash,
		AnnotationManagedRoutes: written,
	})
	if err != nil {
		return nil, err
	}
	meta.ResourceVersion = rv
	vs := &networkingv1.VirtualService{TypeMeta: virtualServiceType, ObjectMeta: meta}
	proto.Merge(&vs.Spec, base)
	vs.Spec.Http = http
	return vs, nil
}

// declaredSlots finds the managed routes in Git's route list. With no
// managed names it is the single unnamed route; a VirtualService without
// HTTP routes gets one appended.
func declaredSlots(http []*networking.HTTPRoute, managed []string) ([]slot, map[string]*networking.HTTPRoute, error) {
	stubs := map[string]*networking.HTTPRoute{}
	names := map[string]bool{}
	slots := make([]slot, 0, len(http)+1)
	for _, hr := range http {
		if hr.Name != "" {
			if names[hr.Name] {
				return nil, nil, fmt.Errorf("two HTTP routes are named %q", hr.Name)
			}
			names[hr.Name] = true
		}
		isManaged := hr.Name == ""
		if len(managed) > 0 {
			isManaged = slices.Contains(managed, hr.Name)
		}
		if !isManaged {
			slots = append(slots, slot{route: hr})
			continue
		}
		if _, dup := stubs[hr.Name]; dup {
			return nil, nil, fmt.Errorf("more than one unnamed HTTP route; name the one Sluice manages in service.virtualService.routes")
		}
		stubs[hr.Name] = hr
		slots = append(slots, slot{managed: true, key: hr.Name})
	}
	switch {
	case len(managed) > 0:
		for _, m := range managed {
			if _, ok := stubs[m]; !ok {
				return nil, nil, fmt.Errorf("no HTTP route named %q", m)
			}
		}
	case len(stubs) == 0 && len(http) > 0:
		return nil, nil, fmt.Errorf("no unnamed HTTP route to manage; list the managed routes in service.virtualService.routes")
	case len(stubs) == 0:
		stubs[""] = nil
		slots = append(slots, slot{managed: true, key: ""})
	}
	return slots, stubs, nil
}

// liveSlots finds, in the live route list, the routes Sluice wrote last
// time (recorded in AnnotationManagedRoutes) and turns each block back into
// a managed slot; every other live route is kept as it is. ok is false when
// the record does not fit the list, and Git's declaration is the base.
func liveSlots(http []*networking.HTTPRoute, recorded string, stubs map[string]*networking.HTTPRoute) ([]slot, bool) {
	var rec map[string][]string
	if err := json.Unmarshal([]byte(recorded), &rec); err != nil || len(rec) != len(stubs) {
		return nil, false
	}
	owner := map[string]string{}
	for key, names := range rec {
		if _, ok := stubs[key]; !ok {
			return nil, false
		}
		for _, n := range names {
			owner[n] = key
		}
	}
	seen := map[string]bool{}
	slots := make([]slot, 0, len(http))
	for _, hr := range http {
		key, ok := owner[hr.Name]
		if !ok || hr.Name == "" {
			slots = append(slots, slot{route: hr})
			continue
		}
		if !seen[key] {
			seen[key] = true
			slots = append(slots, slot{managed: true, key: key})
		}
	}
	return slots, len(seen) == len(stubs)
}

// expandSlots renders the route list and records which routes Sluice wrote
// for each managed route.
func (r *renderer) expandSlots(slots []slot, stubs map[string]*networking.HTTPRoute, routes []plan.Route, t target) ([]*networking.HTTPRoute, string, error) {
	var out []*networking.HTTPRoute
	written := map[string][]string{}
	for _, s := range slots {
		if !s.managed {
			out = append(out, proto.Clone(s.route).(*networking.HTTPRoute))
			continue
		}
		stub, ok := stubs[s.key]
		if !ok {
			return nil, "", fmt.Errorf("managed route %q is not declared", s.key)
		}
		rs, err := expand(stub, routes, t, managedName(s.key, len(routes)))
		if err != nil {
			return nil, "", err
		}
		written[s.key] = []string{}
		for _, hr := range rs {
			written[s.key] = append(written[s.key], hr.Name)
		}
		out = append(out, rs...)
	}
	if err := uniqueNames(out); err != nil {
		return nil, "", err
	}
	// encoding/json sorts map keys: the record is deterministic.
	b, err := json.Marshal(written)
	if err != nil {
		return nil, "", fmt.Errorf("recording managed routes: %w", err)
	}
	return out, string(b), nil
}

// managedName names the routes rendered for a managed route: the weighted
// route keeps the declared name (dashboards and access logs key on it), the
// match routes before it are "<name>-<plan route>". The unnamed route's get
// "sluice-<plan route>", so the next write can find them.
func managedName(key string, n int) func(int, plan.Route) string {
	return func(i int, r plan.Route) string {
		switch {
		case key == "":
			return unnamedPrefix + r.Name
		case i == n-1:
			return key
		default:
			return key + "-" + r.Name
		}
	}
}

func planName(_ int, r plan.Route) string { return r.Name }

func uniqueNames(http []*networking.HTTPRoute) error {
	seen := map[string]bool{}
	for _, hr := range http {
		if hr.Name == "" {
			continue
		}
		if seen[hr.Name] {
			return fmt.Errorf("route name %q is used by Sluice and by a route Git declares; rename the declared route", hr.Name)
		}
		seen[hr.Name] = true
	}
	return nil
}

// ownedVirtualService renders a VirtualService of Sluice's own for the
// service hosts: it has no gateways, so it routes mesh traffic.
func (r *renderer) ownedVirtualService(main group, t target) (*networkingv1.VirtualService, error) {
	name := r.in.VirtualServiceName
	if name == "" {
		name = r.in.Plan.Service
	}
	if l := r.live.VirtualService; l != nil {
		if err := r.checkOwned(l); err != nil {
			return nil, err
		}
	}
	http, err := expand(nil, main.routes, t, planName)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	meta, err := r.objectMeta(name, nil, nil)
	if err != nil {
		return nil, err
	}
	vs := &networkingv1.VirtualService{TypeMeta: virtualServiceType, ObjectMeta: meta}
	vs.Spec.Hosts = slices.Clone(main.hosts)
	vs.Spec.Http = http
	return vs, nil
}

// preview renders the VirtualService of the blue/green preview hosts. It
// takes the main VirtualService's gateways: a preview host is reached the
// way the service is.
func (r *renderer) preview(name string, main *networkingv1.VirtualService, g *group, t target) (*networkingv1.VirtualService, error) {
	if l := r.live.Preview; l != nil {
		if err := r.checkOwned(l); err != nil {
			return nil, err
		}
	}
	http, err := expand(nil, g.routes, t, planName)
	if err != nil {
		return nil, err
	}
	meta, err := r.objectMeta(name, nil, nil)
	if err != nil {
		return nil, err
	}
	vs := &networkingv1.VirtualService{TypeMeta: virtualServiceType, ObjectMeta: meta}
	vs.Spec.Hosts = slices.Clone(g.hosts)
	vs.Spec.Gateways = slices.Clone(main.Spec.Gateways)
	vs.Spec.ExportTo = slices.Clone(main.Spec.ExportTo)
	vs.Spec.Http = http
	return vs, nil
}
