package argo

import (
	"fmt"
	"slices"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// Traffic routers of Argo Rollouts that Sluice has no adapter for.
var foreignRouters = []string{"nginx", "alb", "smi", "ambassador", "appMesh", "traefik", "apisix", "plugins"}

// canaryRouting converts the canary's traffic routing into spec.service's
// virtualService, destinationRule and routers (appended to svc), and
// returns the Service name and hosts it implies ("" and nil: unknown).
func (r *rolloutConv) canaryRouting(canary, svc *yaml.Node) (string, []string) {
	const path = "spec.strategy.canary.trafficRouting"
	stable := scalar(canary, "stableService")
	_, tr := get(canary, "trafficRouting")
	var istio pair
	for _, p := range pairs(tr) {
		fp := join(path, p.k.Value)
		switch {
		case p.k.Value == "istio":
			istio = p
		case p.k.Value == "managedRoutes":
			r.report(p.k, fp, Note, "not needed: Sluice puts its header routes ahead of the managed route itself and removes them when the rollout ends")
		case p.k.Value == "maxTrafficWeight":
			if n, _ := intValue(p.v); n != 100 {
				r.report(p.k, fp, Unsupported, "no equivalent: Sluice's weights are percentages of 100")
			}
		case slices.Contains(foreignRouters, p.k.Value):
			r.reportf(p.k, fp, Unsupported, "no equivalent: Sluice routes with Istio, Gateway API routes (HTTPRoute, GRPCRoute) or replica counts; this Rollout is converted with the replicas router, which approximates weights by pod counts, until you give it one of those (docs/gateway-api.md, docs/istio.md)")
		default:
			r.unknown(p, path)
		}
	}
	if istio.k == nil {
		// Argo's basic canary: weights as replica counts behind one
		// Service, which is Sluice's replicas router exactly.
		r.router = "replicas"
		set(svc, "routers", newSeq(single("replicas", flowLike(newMap(), &yaml.Node{Style: yaml.FlowStyle}))))
		return stable, nil
	}
	r.router = "istio"
	return r.istio(istio, stable, svc, join(path, "istio"))
}

func single(key string, v *yaml.Node) *yaml.Node {
	m := newMap()
	set(m, key, v)
	return m
}

func (r *rolloutConv) istio(p pair, stable string, svc *yaml.Node, path string) (string, []string) {
	var vs, dr pair
	for _, q := range pairs(p.v) {
		fp := join(path, q.k.Value)
		switch q.k.Value {
		case "virtualService":
			vs = q
		case "virtualServices":
			list := items(q.v)
			if len(list) > 0 {
				vs = pair{q.k, list[0]}
			}
			if len(list) > 1 {
				r.report(q.k, fp, Unsupported, "no equivalent: Sluice manages one VirtualService per Rollout; only the first is converted")
			}
		case "destinationRule":
			dr = q
		default:
			r.unknown(q, path)
		}
	}
	var vsDoc *document
	var routes []string
	if vs.k != nil {
		var vsName string
		vsName, routes = r.virtualServiceRef(vs, join(path, "virtualService"))
		ref := newMap()
		set(ref, "name", str(vsName))
		if len(routes) > 0 {
			rs := newSeq()
			rs.Style = yaml.FlowStyle
			for _, rt := range routes {
				rs.Content = append(rs.Content, str(rt))
			}
			set(ref, "routes", rs)
		}
		setFrom(svc, vs.k, "virtualService", ref)
		vsDoc = find(r.c.idx.virtualServices, r.d.file, r.d.namespace, vsName)
	}
	var drDoc *document
	if dr.k != nil {
		drDoc = r.destinationRule(dr, join(path, "destinationRule"), svc, vsDoc)
	}

	var hosts []string
	var vsHost string
	if vsDoc != nil {
		_, spec := get(vsDoc.root, "spec")
		_, hs := get(spec, "hosts")
		for _, h := range items(hs) {
			hosts = append(hosts, h.Value)
		}
		vsHost = r.managedRoutes(spec, routes)
	} else if vs.k != nil {
		r.reportf(vs.k, join(path, "virtualService"), Approximated, "VirtualService %q is not among the files: spec.service.hosts is the Service's name; set it to the hosts the VirtualService serves", scalar(vs.v, "name"))
	}
	name := ""
	switch {
	case drDoc != nil:
		_, spec := get(drDoc.root, "spec")
		name = shortHost(scalar(spec, "host"))
	case stable != "":
		name = stable
	case vsHost != "":
		name = shortHost(vsHost)
	}
	if dr.k == nil {
		r.reportf(p.k, path, Approximated, "Argo split traffic between two Services (host-level); Sluice splits it between the subsets stable and canary of Service %q's host, in a DestinationRule it creates (named after the service), so canaryService is no longer needed and %q must select the pods of both revisions by the template's labels (Argo rewrote its selector; Sluice never does)", name, name)
	}
	return name, hosts
}

// virtualServiceRef reads Argo's virtualService reference.
func (r *rolloutConv) virtualServiceRef(p pair, path string) (string, []string) {
	var name string
	var routes []string
	for _, q := range pairs(p.v) {
		fp := join(path, q.k.Value)
		switch q.k.Value {
		case "name":
			name = q.v.Value
			if ns, n, ok := strings.Cut(name, "/"); ok {
				name = n
				if ns != r.d.namespace {
					r.reportf(q.k, fp, Unsupported, "no equivalent: Sluice's VirtualService is in the Rollout's namespace, not %q", ns)
				}
			}
		case "routes":
			for _, rt := range items(q.v) {
				routes = append(routes, rt.Value)
			}
		case "tlsRoutes", "tcpRoutes":
			r.report(q.k, fp, Unsupported, "no equivalent: Sluice manages HTTP routes only")
		default:
			r.unknown(q, path)
		}
	}
	return name, routes
}

// managedRoutes looks at the VirtualService's managed routes: it notes
// whether they match requests of their own, and returns the host they
// send to.
func (r *rolloutConv) managedRoutes(spec *yaml.Node, names []string) string {
	_, http := get(spec, "http")
	host := ""
	for _, route := range items(http) {
		n := scalar(route, "name")
		if len(names) == 0 && n != "" || len(names) > 0 && !slices.Contains(names, n) {
			continue
		}
		if _, m := get(route, "match"); len(items(m)) > 0 {
			r.declaredMatch = true
		}
		_, dests := get(route, "route")
		for _, d := range items(dests) {
			if h := scalar(valueOf(d, "destination"), "host"); h != "" && host == "" {
				host = h
			}
		}
	}
	return host
}

// destinationRule converts Argo's destinationRule reference, renaming the
// subsets in the DestinationRule (and VirtualService) among the files
// when Argo's names differ from Sluice's stable and canary.
func (r *rolloutConv) destinationRule(p pair, path string, svc *yaml.Node, vsDoc *document) *document {
	name := scalar(p.v, "name")
	ref := newMap()
	set(ref, "name", str(name))
	setFrom(svc, p.k, "destinationRule", ref)
	renames := map[string]string{}
	for _, q := range pairs(p.v) {
		switch q.k.Value {
		case "name":
		case "canarySubsetName", "stableSubsetName":
			want := strings.TrimSuffix(q.k.Value, "SubsetName")
			if q.v.Value != want {
				renames[q.v.Value] = want
			}
		case "additionalSubsetNames":
			r.report(q.k, join(path, q.k.Value), Note, "not needed: Sluice leaves the other subsets as declared")
		default:
			r.unknown(q, path)
		}
	}
	drDoc := find(r.c.idx.destinationRules, r.d.file, r.d.namespace, name)
	if len(renames) == 0 {
		return drDoc
	}
	var olds []string
	for o := range renames {
		olds = append(olds, o)
	}
	slices.Sort(olds)
	if drDoc == nil {
		r.reportf(p.k, path, Unsupported, "DestinationRule %q is not among the files: rename its subsets %s to %s (Sluice names them stable and canary)", name, describeList(olds), describeList(mapped(olds, renames)))
		return nil
	}
	if !renameSubsets(drDoc, renames) {
		r.reportf(p.k, path, Unsupported, "DestinationRule %q (%s) has no subset %s to rename: name its subsets stable and canary", name, drDoc.file, describeList(olds))
		return drDoc
	}
	msg := fmt.Sprintf("subsets %s of DestinationRule %q renamed %s, as Sluice names them", describeList(olds), name, describeList(mapped(olds, renames)))
	if vsDoc != nil && renameSubsets(vsDoc, renames) {
		msg += fmt.Sprintf(", in VirtualService %q too", vsDoc.name)
	}
	r.report(p.k, path, Note, msg)
	return drDoc
}

func mapped(keys []string, m map[string]string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = m[k]
	}
	return out
}

// renameSubsets renames subsets in a DestinationRule (spec.subsets[].name)
// or a VirtualService (every destination's subset) and reports whether it
// changed anything. The document is then written from its tree.
func renameSubsets(d *document, renames map[string]string) bool {
	if d.out == nil {
		c := deepCopy(d.node)
		if c == nil {
			return false
		}
		d.out = c
	}
	changed := false
	var walk func(n *yaml.Node, key string)
	walk = func(n *yaml.Node, key string) {
		switch n.Kind {
		case yaml.DocumentNode, yaml.SequenceNode:
			for _, c := range n.Content {
				walk(c, key)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				if v.Kind == yaml.ScalarNode && (d.kind == "DestinationRule" && key == "subsets" && k.Value == "name" || d.kind == "VirtualService" && k.Value == "subset") {
					if to, ok := renames[v.Value]; ok {
						v.Value = to
						changed = true
					}
				}
				walk(v, k.Value)
			}
		}
	}
	walk(d.out, "")
	return changed
}
