package istio

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/rollout/plan"
)

// Names Sluice writes on the objects.
const (
	// FieldManager is the one server-side-apply field manager of every
	// Istio write.
	FieldManager = "sluice"
	// DefaultRevisionLabel is the pod label the subsets select.
	DefaultRevisionLabel = "sluice.dev/revision"

	// AnnotationPlanVersion is the traffic plan version the object carries.
	AnnotationPlanVersion = "sluice.dev/plan-version"
	// AnnotationDeclaredHash is the hash of Git's declaration (and the
	// managed route names) the last write started from; see Render.
	AnnotationDeclaredHash = "sluice.dev/declared-hash"
	// AnnotationManagedRoutes records, as JSON, the HTTP routes Sluice wrote
	// for each managed route, so the next write finds them in the live list.
	AnnotationManagedRoutes = "sluice.dev/managed-routes"
	// AnnotationExtraSubsets records, as JSON, the DestinationRule subsets
	// Sluice wrote for extra revisions, so the next write based on the
	// live object removes those the plan no longer has.
	AnnotationExtraSubsets = "sluice.dev/extra-subsets"

	// LabelManagedBy marks objects Sluice renders from nothing (no Git
	// declaration); only those it deletes or takes over.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	managedByValue = "sluice"
	// LabelRouting marks every object the Writer writes, declared in Git
	// or its own, so that the controller's cache of VirtualServices and
	// DestinationRules holds those and no others (CacheByObject).
	LabelRouting = "sluice.dev/routing"
	routingValue = "true"

	// previewSuffix names the VirtualService of blue/green preview hosts.
	previewSuffix = "-preview"
	// unnamedPrefix names routes rendered for the unnamed managed route.
	unnamedPrefix = "sluice-"
)

// Input is everything Render needs. Only Plan is required.
type Input struct {
	// Plan is the sealed traffic plan; Plan.Namespace is where the objects
	// live.
	Plan plan.Plan

	// VirtualService is the VirtualService as Git declares it; nil when Git
	// declares none and Sluice renders one of its own.
	VirtualService *networkingv1.VirtualService
	// VirtualServiceName names the VirtualService Sluice renders when Git
	// declares none; default Plan.Service.
	VirtualServiceName string
	// Routes are the managed HTTP route names (service.virtualService.routes);
	// empty means the single unnamed HTTP route.
	Routes []string

	// DestinationRule is the DestinationRule as Git declares it; nil when
	// Sluice renders its own.
	DestinationRule *networkingv1.DestinationRule
	// DestinationRuleName names the DestinationRule Sluice renders when Git
	// declares none; default Plan.Service.
	DestinationRuleName string

	// RevisionLabel is the pod label subsets select; default
	// DefaultRevisionLabel.
	RevisionLabel string
	// Annotations are added to every object written: Git provenance
	// (gitsync.Desired.Annotations).
	Annotations map[string]string
	// Owner becomes the controller reference of objects Sluice renders from
	// nothing, so deleting the Rollout deletes them.
	Owner *metav1.OwnerReference
}

// Live is the objects as the API server has them now (nil when absent).
type Live struct {
	VirtualService  *networkingv1.VirtualService
	Preview         *networkingv1.VirtualService
	DestinationRule *networkingv1.DestinationRule
}

// Desired is what Sluice writes for one plan. Apply the DestinationRule
// first, so every subset a route names exists when the route arrives.
type Desired struct {
	DestinationRule *networkingv1.DestinationRule
	VirtualService  *networkingv1.VirtualService
	// Preview routes the blue/green preview hosts; nil when the plan has
	// none, and then an existing Sluice-owned PreviewName is stale.
	Preview     *networkingv1.VirtualService
	PreviewName string
}

// Render merges the plan into the declared objects. It is pure: same input,
// same output.
//
// Git's declaration is the base, except when the live object records (in
// AnnotationDeclaredHash) that it was written from the very same
// declaration: then nothing changed in Git since Sluice's last write, and
// the live spec is the base, so edits another field manager made since
// survive. Istio's CRDs make spec.http and spec.subsets atomic lists, so
// server-side apply cannot share them route by route; this rule is what
// keeps Sluice from reverting edits it does not own. Such a write carries
// the live resourceVersion, and the API server refuses it if the object
// changed after it was read.
func Render(in Input, live Live) (*Desired, error) {
	p := &in.Plan
	if err := p.Check(); err != nil {
		return nil, fmt.Errorf("invalid plan: %w", err)
	}
	if p.Namespace == "" {
		return nil, errors.New("plan has no namespace; Istio objects are written in controller mode only")
	}
	main, preview, err := hostGroups(p, in.VirtualService)
	if err != nil {
		return nil, err
	}
	canary := p.Revision(plan.Canary)
	main.routes = withAffinityMarker(main.routes, canary)
	if preview != nil {
		preview.routes = withAffinityMarker(preview.routes, canary)
	}
	r := renderer{in: in, live: live, label: in.RevisionLabel}
	if r.label == "" {
		r.label = DefaultRevisionLabel
	}

	t := r.target()
	t.canaryRevision = canary
	d := &Desired{}
	if d.DestinationRule, err = r.destinationRule(t.host); err != nil {
		return nil, fmt.Errorf("DestinationRule: %w", err)
	}
	if d.VirtualService, err = r.virtualService(main, t); err != nil {
		return nil, fmt.Errorf("VirtualService: %w", err)
	}
	d.PreviewName = d.VirtualService.Name + previewSuffix
	if preview != nil {
		if d.Preview, err = r.preview(d.PreviewName, d.VirtualService, preview, t); err != nil {
			return nil, fmt.Errorf("preview VirtualService: %w", err)
		}
	}
	return d, nil
}

// group is a set of hosts that share their routes.
type group struct {
	hosts  []string
	routes []plan.Route
}

// hostGroups splits the plan's hosts into the ones the main VirtualService
// routes and the blue/green preview hosts. A VirtualService holds one route
// list for all its hosts, so hosts with different routes need a
// VirtualService of their own. With a declared VirtualService, its hosts
// pick the main routes; plan hosts it does not list but that share those
// routes are taken to be aliases it covers (Istio resolves short names).
func hostGroups(p *plan.Plan, declared *networkingv1.VirtualService) (main group, preview *group, err error) {
	var in map[string]bool
	if declared != nil {
		in = map[string]bool{}
		for _, h := range declared.Spec.Hosts {
			in[h] = true
		}
	}
	// Without a declaration the first host is a service host (the engine
	// lists preview hosts last) and picks the main routes.
	mainRoutes := p.Hosts[0].Routes
	if declared != nil {
		found := false
		for _, h := range p.Hosts {
			switch {
			case !in[h.Name]:
			case !found:
				mainRoutes, found = h.Routes, true
			case !reflect.DeepEqual(h.Routes, mainRoutes):
				return group{}, nil, fmt.Errorf("hosts of VirtualService %s route differently in the plan (%q); one VirtualService carries one route list", declared.Name, h.Name)
			}
		}
		if !found {
			return group{}, nil, fmt.Errorf("VirtualService %s hosts %v name none of the plan's hosts %v", declared.Name, declared.Spec.Hosts, planHosts(p))
		}
	}
	main.routes = mainRoutes
	for _, h := range p.Hosts {
		switch {
		case reflect.DeepEqual(h.Routes, mainRoutes):
			if in == nil || in[h.Name] {
				main.hosts = append(main.hosts, h.Name)
			}
		case preview == nil:
			preview = &group{hosts: []string{h.Name}, routes: h.Routes}
		case reflect.DeepEqual(h.Routes, preview.routes):
			preview.hosts = append(preview.hosts, h.Name)
		default:
			return group{}, nil, fmt.Errorf("plan routes its hosts in more than two ways (host %q); expected service hosts and preview hosts", h.Name)
		}
	}
	return main, preview, nil
}

func planHosts(p *plan.Plan) []string {
	out := make([]string, 0, len(p.Hosts))
	for _, h := range p.Hosts {
		out = append(out, h.Name)
	}
	return out
}

type renderer struct {
	in    Input
	live  Live
	label string
}

// target picks the destination host: what the declared managed route
// already sends to (Git's spelling, port included), else the declared
// DestinationRule's host, whose subsets the routes name, else the
// Kubernetes Service's FQDN.
func (r *renderer) target() target {
	if vs := r.in.VirtualService; vs != nil {
		for _, hr := range vs.Spec.Http {
			if !r.isManaged(hr) {
				continue
			}
			for _, d := range hr.Route {
				if h := d.GetDestination().GetHost(); h != "" {
					return target{host: h, port: d.Destination.Port}
				}
			}
		}
	}
	if dr := r.in.DestinationRule; dr != nil && dr.Spec.Host != "" {
		return target{host: dr.Spec.Host}
	}
	return target{host: r.serviceHost()}
}

func (r *renderer) isManaged(hr *networking.HTTPRoute) bool {
	if len(r.in.Routes) == 0 {
		return hr.Name == ""
	}
	return slices.Contains(r.in.Routes, hr.Name)
}

// serviceHost is the Kubernetes Service's FQDN: unambiguous from any
// namespace, and what Istio resolves short names to.
func (r *renderer) serviceHost() string {
	return r.in.Plan.Service + "." + r.in.Plan.Namespace + ".svc.cluster.local"
}

// objectMeta builds the metadata of a written object. declared is Git's
// metadata, nil for an object Sluice owns.
func (r *renderer) objectMeta(name string, declared *metav1.ObjectMeta, extra map[string]string) (metav1.ObjectMeta, error) {
	ns := r.in.Plan.Namespace
	m := metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: map[string]string{}}
	if declared != nil {
		if declared.Namespace != "" && declared.Namespace != ns {
			return m, fmt.Errorf("%s is declared in namespace %q, the Rollout is in %q", name, declared.Namespace, ns)
		}
		m.Labels = maps.Clone(declared.Labels)
		for k, v := range declared.Annotations {
			// Git cannot speak for the annotations Sluice keeps.
			if !strings.HasPrefix(k, "sluice.dev/") {
				m.Annotations[k] = v
			}
		}
	} else {
		m.Labels = map[string]string{LabelManagedBy: managedByValue}
		if o := r.in.Owner; o != nil {
			m.OwnerReferences = []metav1.OwnerReference{*o}
		}
	}
	if m.Labels == nil {
		m.Labels = map[string]string{}
	}
	m.Labels[LabelRouting] = routingValue
	maps.Copy(m.Annotations, r.in.Annotations)
	maps.Copy(m.Annotations, extra)
	m.Annotations[AnnotationPlanVersion] = r.in.Plan.Version
	return m, nil
}

// checkOwned refuses to take over an object Sluice did not create: a
// VirtualService of the same name that someone else wrote, or one owned by
// another Rollout.
// live must not be nil.
func (r *renderer) checkOwned(live metav1.Object) error {
	if live.GetLabels()[LabelManagedBy] != managedByValue {
		// Said for people who applied the object with kubectl: the
		// routing Sluice does not own comes from Git only.
		return fmt.Errorf("%s/%s exists and was not created by Sluice, which merges its routes only into an object "+
			"that the Rollout's Git source declares, or writes one of its own: add it to the Git repository the Rollout comes from, "+
			"or delete it (kubectl delete -n %s %s %s) and Sluice creates its own",
			live.GetNamespace(), live.GetName(), live.GetNamespace(), kindName(live), live.GetName())
	}
	if o := r.in.Owner; o != nil {
		if c := metav1.GetControllerOf(live); c != nil && c.UID != o.UID {
			return fmt.Errorf("%s/%s belongs to %s %s", live.GetNamespace(), live.GetName(), c.Kind, c.Name)
		}
	}
	return nil
}

// kindName is obj's resource name for kubectl.
func kindName(obj metav1.Object) string {
	if _, ok := obj.(*networkingv1.DestinationRule); ok {
		return "destinationrule.networking.istio.io"
	}
	return "virtualservice.networking.istio.io"
}

// declaredHash fingerprints a declaration. Deterministic proto encoding
// sorts map keys, so equal specs give equal hashes.
func declaredHash(spec proto.Message, extra ...string) (string, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(spec)
	if err != nil {
		return "", fmt.Errorf("hashing the declared spec: %w", err)
	}
	h := sha256.New()
	h.Write(b)
	for _, e := range extra {
		h.Write([]byte{0})
		h.Write([]byte(e))
	}
	return hex.EncodeToString(h.Sum(nil)[:8]), nil
}
