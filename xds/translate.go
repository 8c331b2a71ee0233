package xds

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/sluicehq/sluice/rollout/plan"
)

// TranslateOptions are the few choices the plan does not make.
type TranslateOptions struct {
	// ListenerAddress is the IP Envoy's outbound listeners bind to. The
	// default, 127.0.0.1, serves an application that sends its requests to
	// the sidecar on localhost with the service's Host header; set 0.0.0.0
	// when traffic is redirected to the sidecar (iptables).
	ListenerAddress string
	// ConnectTimeout of every upstream cluster; default 2s.
	ConnectTimeout time.Duration
}

func (o TranslateOptions) withDefaults() TranslateOptions {
	if o.ListenerAddress == "" {
		o.ListenerAddress = "127.0.0.1"
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 2 * time.Second
	}
	return o
}

// Resources is the translation of a set of plans for every group.
type Resources struct {
	Envoy *GroupResources
	GRPC  *GroupResources

	// served is what each service got, by service key: the input of the
	// next publish's translation (retain.go); frags each plan's share of
	// the resources, which it may reuse (fragment.go).
	served map[string]*served
	frags  map[string]*fragment
}

// Group returns the resources of one group.
func (r *Resources) Group(g Group) *GroupResources {
	if g == GroupGRPC {
		return r.GRPC
	}
	return r.Envoy
}

// GroupResources are the resources one group of nodes receives, each list
// sorted by name.
type GroupResources struct {
	Listeners []*listenerv3.Listener
	// Routes is empty for gRPC, whose routes are inline in its listeners.
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
	Endpoints []*endpointv3.ClusterLoadAssignment

	// owners says which resources belong to which service and host, and
	// what a client of each listener must also have applied; the tracker
	// needs it to turn per-resource ACKs into per-plan answers.
	owners map[ownerKey]*ownerInfo
}

// ownerKey names what an acknowledgement question is about: a service
// ("service:ns/name") or a host ("host:reviews").
type ownerKey string

func serviceOwner(key string) ownerKey { return ownerKey("service:" + key) }
func hostOwner(host string) ownerKey   { return ownerKey("host:" + host) }

// ServiceKey is how Status and Wait name a service: "namespace/name", or
// just the name in standalone mode where plans have no namespace.
func ServiceKey(namespace, service string) string {
	if namespace == "" {
		return service
	}
	return namespace + "/" + service
}

// PlanKey is ServiceKey of a plan.
func PlanKey(p *plan.Plan) string { return ServiceKey(p.Namespace, p.Service) }

// ownerInfo is one owner's share of a group's resources.
type ownerInfo struct {
	planVersion string
	// owned lists the owner's resources, sorted (compareResID), each
	// once: a few per owner, and an owner per service and host in every
	// snapshot, so a slice, not a set.
	owned []resID
	// closure maps each listener the owner has to everything a client of
	// that listener needs for this owner: the route configuration (Envoy),
	// the clusters the owner's routes use, and their endpoints. Sorted by
	// listener; one to a few per owner, so a slice, not a map.
	closure []listenerNeeds
}

// listenerNeeds is what a client of one listener needs.
type listenerNeeds struct {
	listener string
	needs    []resID
}

// setNeeds records what a client of the listener needs for this owner.
func (o *ownerInfo) setNeeds(listener string, needs []resID) {
	i, found := slices.BinarySearchFunc(o.closure, listener, func(l listenerNeeds, name string) int { return cmp.Compare(l.listener, name) })
	if found {
		o.closure[i].needs = needs
		return
	}
	o.closure = slices.Insert(o.closure, i, listenerNeeds{listener, needs})
}

// needs is what a client of the listener needs for this owner.
func (o *ownerInfo) needs(listener string) []resID {
	i, found := slices.BinarySearchFunc(o.closure, listener, func(l listenerNeeds, name string) int { return cmp.Compare(l.listener, name) })
	if !found {
		return nil
	}
	return o.closure[i].needs
}

// shareLists takes old's lists of resources and closures where they are
// equal to this info's.
func (o *ownerInfo) shareLists(old *ownerInfo) {
	if slices.Equal(o.owned, old.owned) {
		o.owned = old.owned
	}
	if slices.EqualFunc(o.closure, old.closure, sameNeeds) {
		o.closure = old.closure
		return
	}
	for i := range o.closure {
		if j, found := slices.BinarySearchFunc(old.closure, o.closure[i].listener, func(l listenerNeeds, name string) int { return cmp.Compare(l.listener, name) }); found && slices.Equal(o.closure[i].needs, old.closure[j].needs) {
			o.closure[i].needs = old.closure[j].needs
		}
	}
}

func sameNeeds(a, b listenerNeeds) bool {
	return a.listener == b.listener && slices.Equal(a.needs, b.needs)
}

func (o *ownerInfo) add(ids ...resID) {
	for _, id := range ids {
		if i, found := slices.BinarySearchFunc(o.owned, id, compareResID); !found {
			o.owned = slices.Insert(o.owned, i, id)
		}
	}
}

// owns reports whether the resource is the owner's.
func (o *ownerInfo) owns(id resID) bool {
	_, found := slices.BinarySearchFunc(o.owned, id, compareResID)
	return found
}

func compareResID(a, b resID) int {
	return cmp.Or(cmp.Compare(a.kind, b.kind), cmp.Compare(a.name, b.name))
}

// kind indexes the four resource types Sluice serves.
type kind uint8

const (
	kindListener kind = iota
	kindRoute
	kindCluster
	kindEndpoint
	numKinds
)

// resID names one resource.
type resID struct {
	kind kind
	name string
}

// Translate renders plans into the resources of both groups. It is a pure
// function of its inputs (plus what eps answers) and returns an error for
// anything a client would reject, so that a bad plan never reaches a proxy.
func Translate(plans []plan.Plan, eps EndpointSource, opts TranslateOptions) (*Resources, error) {
	return translate(plans, eps, opts, nil, nil)
}

// translate is Translate after a publish that served prev (by service
// key): each service also gets the clusters it keeps from its previous
// plan version (retain.go). cache is that publish's fragments, by service
// key (fragment.go); the result's frags are this one's.
func translate(plans []plan.Plan, eps EndpointSource, opts TranslateOptions, prev map[string]*served, cache map[string]*fragment) (*Resources, error) {
	opts = opts.withDefaults()
	if eps == nil {
		return nil, errors.New("translate: no endpoint source")
	}
	sorted := slices.Clone(plans)
	slices.SortFunc(sorted, func(a, b plan.Plan) int { return cmp.Compare(PlanKey(&a), PlanKey(&b)) })
	if err := checkPlans(sorted, nil); err != nil {
		return nil, fmt.Errorf("translate: %w", err)
	}
	t := &translator{
		opts:     opts,
		out:      &Resources{Envoy: newGroupResources(), GRPC: newGroupResources(), served: map[string]*served{}},
		ports:    map[uint32]*envoyPort{},
		prev:     prev,
		cache:    cache,
		frags:    make(map[string]*fragment, len(sorted)),
		replayed: map[ownerKey]bool{},
	}
	for i := range sorted {
		p := &sorted[i]
		f, err := t.reusable(p, eps)
		if err == nil && f != nil {
			t.replay(PlanKey(p), f)
			continue
		}
		if err == nil {
			err = t.record(p, eps)
		}
		if err != nil {
			return nil, fmt.Errorf("translate plan %s version %s: %w", PlanKey(p), p.Version, err)
		}
	}
	if err := t.envoyListeners(); err != nil {
		return nil, fmt.Errorf("translate: %w", err)
	}
	t.finish()
	for _, g := range groups {
		t.out.Group(g).sort()
	}
	t.out.frags = t.frags
	return t.out, nil
}

func newGroupResources() *GroupResources {
	return &GroupResources{owners: map[ownerKey]*ownerInfo{}}
}

func (r *GroupResources) owner(k ownerKey, version string) *ownerInfo {
	o, ok := r.owners[k]
	if !ok {
		o = &ownerInfo{planVersion: version}
		r.owners[k] = o
	}
	return o
}

func (r *GroupResources) sort() {
	slices.SortFunc(r.Listeners, func(a, b *listenerv3.Listener) int { return cmp.Compare(a.GetName(), b.GetName()) })
	slices.SortFunc(r.Routes, func(a, b *routev3.RouteConfiguration) int { return cmp.Compare(a.GetName(), b.GetName()) })
	slices.SortFunc(r.Clusters, func(a, b *clusterv3.Cluster) int { return cmp.Compare(a.GetName(), b.GetName()) })
	slices.SortFunc(r.Endpoints, func(a, b *endpointv3.ClusterLoadAssignment) int {
		return cmp.Compare(a.GetClusterName(), b.GetClusterName())
	})
}

// checkPlans rejects plan sets no proxy could serve unambiguously.
//
// checked names plans already checked, by PlanKey and version: those are
// not checked again on their own (Check hashes the whole plan), only
// against the others.
func checkPlans(plans []plan.Plan, checked map[string]string) error {
	var errs []error
	services := map[string]bool{}
	hosts := map[string]string{}
	for i := range plans {
		p := &plans[i]
		key := PlanKey(p)
		if v, ok := checked[key]; !ok || v != p.Version {
			if err := p.Check(); err != nil {
				errs = append(errs, fmt.Errorf("plan %s: %w", key, err))
				continue
			}
		}
		if p.Service == "" {
			errs = append(errs, errors.New("plan without a service"))
		}
		if services[key] {
			errs = append(errs, fmt.Errorf("service %s has two plans", key))
		}
		services[key] = true
		for _, h := range p.Hosts {
			if err := checkHost(h); err != nil {
				errs = append(errs, fmt.Errorf("plan %s: %w", key, err))
			}
			if other, dup := hosts[h.Name]; dup {
				errs = append(errs, fmt.Errorf("host %q is routed by both %s and %s", h.Name, other, key))
			}
			hosts[h.Name] = key
		}
	}
	return errors.Join(errs...)
}

func checkHost(h plan.Host) error {
	if h.Name == "" || strings.ContainsAny(h.Name, ":/ \t*") {
		return fmt.Errorf("host %q: want a host name without port, path or wildcard", h.Name)
	}
	if h.Port == 0 || h.Port > 65535 {
		return fmt.Errorf("host %q: port %d out of 1..65535", h.Name, h.Port)
	}
	return nil
}

type translator struct {
	opts  TranslateOptions
	out   *Resources
	ports map[uint32]*envoyPort
	prev  map[string]*served
	// cache is the previous translation's fragments, frags this one's;
	// cur is the fragment being recorded; replayed are the owners whose
	// ownerInfo came complete from a fragment.
	cache, frags map[string]*fragment
	cur          *fragment
	replayed     map[ownerKey]bool
}

// envoyPort collects the virtual hosts Envoy serves on one port; they share
// one listener and one route configuration, as a sidecar's outbound port
// does.
type envoyPort struct {
	hosts []*routev3.VirtualHost
	// deps lists, per owner with a virtual host here, the clusters its
	// routes use.
	deps map[ownerKey][]string
	// versions of those owners.
	versions map[ownerKey]string
}

// clusterName is content-addressed by revision rather than named after the
// subset, so that promotion (canary becomes stable) renames nothing:
// the cluster that carried 100% keeps carrying it, and only the old
// revision's cluster, at weight 0, disappears.
func clusterName(p *plan.Plan, revision string) string {
	return ServiceKey(p.Namespace, p.Service) + "|" + revision
}

func (t *translator) plan(p *plan.Plan, eps EndpointSource) error {
	svc := serviceOwner(PlanKey(p))
	clusterOf := map[string]string{}
	made := map[string]bool{}
	var own []keptCluster
	endpoints := map[string][]Endpoint{}
	for _, s := range p.Subsets {
		if _, dup := clusterOf[s.Name]; dup {
			return fmt.Errorf("subset %q declared twice", s.Name)
		}
		name := clusterName(p, s.Revision)
		clusterOf[s.Name] = name
		if made[name] {
			// Two subsets on one revision share the cluster.
			continue
		}
		made[name] = true
		found, err := eps.Endpoints(p.Namespace, p.Service, s.Revision)
		if err != nil {
			return fmt.Errorf("endpoints of revision %s: %w", s.Revision, err)
		}
		if t.cur != nil {
			t.cur.eps[s.Revision] = found
		}
		endpoints[name] = found
		if c, ok := t.unchangedCluster(p, name, s.Revision, found); ok {
			t.share(svc, p.Version, c)
			own = append(own, c)
			continue
		}
		cla, err := loadAssignment(name, found)
		if err != nil {
			return err
		}
		c, err := t.addCluster(svc, p.Version, name, cla, nil)
		if err != nil {
			return err
		}
		own = append(own, c)
	}
	split, err := affinitySplit(p, clusterOf)
	if err != nil {
		return err
	}
	if split != nil {
		name := affinityClusterName(p)
		cla, err := affinityAssignment(name, split, endpoints)
		if err != nil {
			return err
		}
		c, err := t.addCluster(svc, p.Version, name, cla, ringHash)
		if err != nil {
			return err
		}
		own = append(own, c)
		clusterOf[affinityKey] = name
	}
	warm := t.keep(p, own)
	for _, h := range p.Hosts {
		if err := t.envoyHost(p, h, clusterOf); err != nil {
			return fmt.Errorf("host %s (envoy): %w", h.Name, err)
		}
		if err := t.grpcHost(p, h, clusterOf, warm); err != nil {
			return fmt.Errorf("host %s (grpc): %w", h.Name, err)
		}
	}
	return nil
}

// domains are what a request's authority is matched against: the bare host
// (gRPC's xds:///reviews, HTTP Host: reviews) and host:port.
func domains(h plan.Host) []string {
	return []string{h.Name, h.Name + ":" + strconv.FormatUint(uint64(h.Port), 10)}
}

func (t *translator) envoyHost(p *plan.Plan, h plan.Host, clusterOf map[string]string) error {
	routes, used, err := buildRoutes(GroupEnvoy, h, clusterOf, nil)
	if err != nil {
		return err
	}
	eh := envoyHost{port: h.Port, vh: &routev3.VirtualHost{Name: h.Name, Domains: domains(h), Routes: routes}, used: used}
	t.addEnvoyHost(p.Version, eh, hostOwner(h.Name), serviceOwner(PlanKey(p)))
	if t.cur != nil {
		t.cur.hosts = append(t.cur.hosts, eh)
	}
	// A host owns the clusters its routes use, so a host's status waits for
	// exactly those.
	ho := t.out.Envoy.owner(hostOwner(h.Name), p.Version)
	for _, c := range used {
		ho.add(resID{kindCluster, c}, resID{kindEndpoint, c})
	}
	return nil
}

// addEnvoyHost puts a virtual host on its port, where the host's and its
// service's owners depend on the clusters it uses.
func (t *translator) addEnvoyHost(version string, h envoyHost, host, svc ownerKey) {
	ep := t.ports[h.port]
	if ep == nil {
		ep = &envoyPort{deps: map[ownerKey][]string{}, versions: map[ownerKey]string{}}
		t.ports[h.port] = ep
	}
	ep.hosts = append(ep.hosts, h.vh)
	for _, o := range []ownerKey{svc, host} {
		ep.deps[o] = append(ep.deps[o], h.used...)
		ep.versions[o] = version
	}
}

// envoyListeners builds one listener and one route configuration per port.
// Ports are visited in order so the output does not depend on map order.
func (t *translator) envoyListeners() error {
	ports := slices.Sorted(func(yield func(uint32) bool) {
		for p := range t.ports {
			if !yield(p) {
				return
			}
		}
	})
	r := t.out.Envoy
	for _, port := range ports {
		ep := t.ports[port]
		routeName := strconv.FormatUint(uint64(port), 10)
		listenerName := t.opts.ListenerAddress + "_" + routeName
		slices.SortFunc(ep.hosts, func(a, b *routev3.VirtualHost) int { return cmp.Compare(a.GetName(), b.GetName()) })
		r.Routes = append(r.Routes, &routev3.RouteConfiguration{
			Name:         routeName,
			VirtualHosts: ep.hosts,
			// Unknown clusters are refused at the request, not by
			// rejecting the whole configuration: the clusters of a new
			// revision may reach Envoy a moment after the routes.
			ValidateClusters: wrapperspb.Bool(false),
		})
		hcm := &hcmv3.HttpConnectionManager{
			StatPrefix: "outbound_" + routeName,
			CodecType:  hcmv3.HttpConnectionManager_AUTO,
			RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
				ConfigSource:    sharedADSSource,
				RouteConfigName: routeName,
			}},
		}
		if err := withFilters(hcm); err != nil {
			return err
		}
		lis, err := listenerWithHCM(listenerName, t.opts.ListenerAddress, port, hcm)
		if err != nil {
			return err
		}
		r.Listeners = append(r.Listeners, lis)
		for o, clusters := range ep.deps {
			if t.replayed[o] {
				continue
			}
			info := r.owner(o, ep.versions[o])
			info.add(resID{kindListener, listenerName}, resID{kindRoute, routeName})
			info.setNeeds(listenerName, closureOf([]resID{{kindRoute, routeName}}, clusters))
		}
	}
	return nil
}

// grpcHost builds the host's API listeners; warm are the clusters the
// service keeps from its previous plan version.
func (t *translator) grpcHost(p *plan.Plan, h plan.Host, clusterOf map[string]string, warm []string) error {
	routes, used, err := buildRoutes(GroupGRPC, h, clusterOf, warm)
	if err != nil {
		return err
	}
	// The route configuration is inline: go-control-plane's Consistent()
	// does not follow RDS references out of API listeners, and inline
	// routes save proxyless clients one round trip per host.
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: h.Name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name:         h.Name,
			VirtualHosts: []*routev3.VirtualHost{{Name: h.Name, Domains: domains(h), Routes: routes}},
		}},
	}
	if err := withFilters(hcm); err != nil {
		return err
	}
	api, err := pack(hcm)
	if err != nil {
		return err
	}
	r := t.out.GRPC
	// Every listener of the host needs the same: one read-only list.
	closure := closureOf(nil, used)
	// xds:///reviews asks for listener "reviews", xds:///reviews:9080 for
	// "reviews:9080"; both are served so either target form works.
	for _, name := range domains(h) {
		r.Listeners = append(r.Listeners, &listenerv3.Listener{
			Name:        name,
			ApiListener: &listenerv3.ApiListener{ApiListener: api},
		})
		for _, o := range []ownerKey{serviceOwner(PlanKey(p)), hostOwner(h.Name)} {
			info := r.owner(o, p.Version)
			info.add(resID{kindListener, name})
			info.setNeeds(name, closure)
			for _, c := range used {
				info.add(resID{kindCluster, c}, resID{kindEndpoint, c})
			}
		}
	}
	return nil
}

// closureOf lists what a listener's client must have: the given resources
// plus each cluster and its endpoints, without duplicates.
func closureOf(base []resID, clusters []string) []resID {
	out := slices.Clone(base)
	for _, c := range clusters {
		for _, id := range []resID{{kindCluster, c}, {kindEndpoint, c}} {
			if !slices.Contains(out, id) {
				out = append(out, id)
			}
		}
	}
	return out
}

// withFilters installs the HTTP filter chain shared by both groups: the
// fault filter, inert unless a route carries a fault in
// typed_per_filter_config, then the router, which must be last.
func withFilters(hcm *hcmv3.HttpConnectionManager) error {
	filters, err := httpFilters()
	if err != nil {
		return err
	}
	hcm.HttpFilters = filters
	return nil
}

// httpFilters is the chain withFilters installs, built once and shared,
// read-only, by every connection manager.
var httpFilters = sync.OnceValues(func() ([]*hcmv3.HttpFilter, error) {
	fault, err := pack(&faultv3.HTTPFault{})
	if err != nil {
		return nil, err
	}
	router, err := pack(&routerv3.Router{})
	if err != nil {
		return nil, err
	}
	return []*hcmv3.HttpFilter{
		{Name: wellknown.Fault, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: fault}},
		{Name: wellknown.Router, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router}},
	}, nil
})

func listenerWithHCM(name, addr string, port uint32, hcm *hcmv3.HttpConnectionManager) (*listenerv3.Listener, error) {
	cfg, err := pack(hcm)
	if err != nil {
		return nil, err
	}
	return &listenerv3.Listener{
		Name: name,
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Protocol:      corev3.SocketAddress_TCP,
			Address:       addr,
			PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
		}}},
		TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{
				Name:       wellknown.HTTPConnectionManager,
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: cfg},
			}},
		}},
	}, nil
}

// addCluster gives both groups the cluster and its endpoints, owned by the
// service; shape, if not nil, changes the cluster before it is shared. It
// returns them, for the next translation to keep (retain.go).
func (t *translator) addCluster(svc ownerKey, version, name string, cla *endpointv3.ClusterLoadAssignment, shape func(*clusterv3.Cluster)) (keptCluster, error) {
	c, err := t.cluster(name)
	if err != nil {
		return keptCluster{}, err
	}
	if shape != nil {
		shape(c)
	}
	k := keptCluster{cluster: c, cla: cla}
	t.share(svc, version, k)
	return k, nil
}

func (t *translator) cluster(name string) (*clusterv3.Cluster, error) {
	opts, err := clusterProtocolOptions()
	if err != nil {
		return nil, err
	}
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: sharedADSSource, ServiceName: name},
		ConnectTimeout:       durationpb.New(t.opts.ConnectTimeout),
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
		// Envoy's Prometheus output cuts the cluster name at its first
		// dot; a revision such as "1.4.2" would otherwise split it.
		AltStatName:                   strings.ReplaceAll(name, ".", "_"),
		TypedExtensionProtocolOptions: opts,
	}, nil
}

// clusterProtocolOptions are every cluster's protocol options: the
// upstream speaks whatever the downstream spoke, so one cluster serves
// HTTP/1.1 and gRPC (HTTP/2) callers alike; proxyless gRPC ignores them.
// They are the same for every cluster, so all clusters share one map and
// one packed message, read-only like every translated resource.
var clusterProtocolOptions = sync.OnceValues(func() (map[string]*anypb.Any, error) {
	opts, err := pack(&httpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_UseDownstreamProtocolConfig{
			UseDownstreamProtocolConfig: &httpv3.HttpProtocolOptions_UseDownstreamHttpConfig{
				HttpProtocolOptions:  &corev3.Http1ProtocolOptions{},
				Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
			},
		},
	})
	if err != nil {
		return nil, err
	}
	return map[string]*anypb.Any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": opts}, nil
})

// loadAssignment puts every endpoint in one locality with weight 1: gRPC
// ignores localities without a weight, and rejects duplicate addresses,
// so they are removed here.
func loadAssignment(cluster string, eps []Endpoint) (*endpointv3.ClusterLoadAssignment, error) {
	eps = sortedEndpoints(eps)
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: cluster}
	if len(eps) == 0 {
		return cla, nil
	}
	loc := &endpointv3.LocalityLbEndpoints{Locality: &corev3.Locality{}, LoadBalancingWeight: wrapperspb.UInt32(1)}
	for _, e := range eps {
		if _, err := ParseEndpoint(e.String()); err != nil {
			return nil, fmt.Errorf("cluster %s: %w", cluster, err)
		}
		loc.LbEndpoints = append(loc.LbEndpoints, &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(e)}},
		})
	}
	cla.Endpoints = []*endpointv3.LocalityLbEndpoints{loc}
	return cla, nil
}

// sortedEndpoints is eps in address order without duplicates.
func sortedEndpoints(eps []Endpoint) []Endpoint {
	eps = slices.Clone(eps)
	slices.SortFunc(eps, func(a, b Endpoint) int {
		return cmp.Or(cmp.Compare(a.Address, b.Address), cmp.Compare(a.Port, b.Port))
	})
	return slices.Compact(eps)
}

func socketAddress(e Endpoint) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Protocol:      corev3.SocketAddress_TCP,
		Address:       e.Address,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: e.Port},
	}}}
}

// sharedADSSource is the config source of every cluster's endpoints and
// every Envoy listener's routes; one read-only message serves them all.
var sharedADSSource = &corev3.ConfigSource{
	ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	ResourceApiVersion:    corev3.ApiVersion_V3,
}

// validator is what every generated Envoy message implements.
type validator interface{ Validate() error }

// pack validates a message that goes inside an Any, because a resource's
// own Validate() does not look into its Anys, and marshals it
// deterministically so equal content always hashes to the same version.
func pack(m proto.Message) (*anypb.Any, error) {
	if v, ok := m.(validator); ok {
		if err := v.Validate(); err != nil {
			return nil, fmt.Errorf("%s: %w", m.ProtoReflect().Descriptor().FullName(), err)
		}
	}
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		return nil, fmt.Errorf("pack %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	return a, nil
}
