package xdsplane

import (
	"errors"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/kube/workload"
	"github.com/sluicehq/sluice/xds"
)

// endpoint is one slice endpoint; ready and terminating nil mean unset.
func endpoint(addr string, ready, terminating *bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{
		Addresses:  []string{addr},
		Conditions: discoveryv1.EndpointConditions{Ready: ready, Terminating: terminating},
	}
}

func port(name string, n int32, proto corev1.Protocol) discoveryv1.EndpointPort {
	return discoveryv1.EndpointPort{Name: &name, Port: &n, Protocol: &proto}
}

// slice is an EndpointSlice of Sluice's, as the EndpointSlice controller
// makes them from a per-revision Service.
func slice(ns, name, service, revision string, typ discoveryv1.AddressType, ports []discoveryv1.EndpointPort, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	labels := map[string]string{}
	if service != "" {
		labels[workload.LabelService] = service
	}
	if revision != "" {
		labels[workload.LabelRevision] = revision
	}
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		AddressType: typ,
		Ports:       ports,
		Endpoints:   eps,
	}
}

func addrs(eps []xds.Endpoint) []string {
	out := make([]string, len(eps))
	for i, e := range eps {
		out[i] = e.String()
	}
	return out
}

func TestEndpointsOf(t *testing.T) {
	t.Parallel()
	yes, no := ptr.To(true), ptr.To(false)
	tcp := []discoveryv1.EndpointPort{port("", 8080, corev1.ProtocolTCP)}
	v4 := func(ports []discoveryv1.EndpointPort, eps ...discoveryv1.Endpoint) discoveryv1.EndpointSlice {
		return *slice("ns", "s", "svc", "r1", discoveryv1.AddressTypeIPv4, ports, eps...)
	}
	tests := []struct {
		name   string
		slices []discoveryv1.EndpointSlice
		want   []string
	}{
		{"ready unset counts as ready", []discoveryv1.EndpointSlice{v4(tcp, endpoint("10.0.0.1", nil, nil))}, []string{"10.0.0.1:8080"}},
		{"ready and not terminating", []discoveryv1.EndpointSlice{v4(tcp,
			endpoint("10.0.0.1", yes, no), endpoint("10.0.0.2", no, nil), endpoint("10.0.0.3", yes, yes), endpoint("10.0.0.4", nil, yes))},
			[]string{"10.0.0.1:8080"}},
		{"sorted and without duplicates across slices", []discoveryv1.EndpointSlice{
			v4(tcp, endpoint("10.0.0.9", nil, nil), endpoint("10.0.0.1", nil, nil)),
			v4(tcp, endpoint("10.0.0.1", nil, nil))},
			[]string{"10.0.0.1:8080", "10.0.0.9:8080"}},
		{"IPv6, canonical", []discoveryv1.EndpointSlice{
			*slice("ns", "s", "svc", "r1", discoveryv1.AddressTypeIPv6, tcp, endpoint("fd00:0:0:0::2", nil, nil))},
			[]string{"[fd00::2]:8080"}},
		{"host names and non-addresses are skipped", []discoveryv1.EndpointSlice{
			*slice("ns", "s", "svc", "r1", discoveryv1.AddressTypeFQDN, tcp, endpoint("backend.example.com", nil, nil)),
			v4(tcp, endpoint("not-an-ip", nil, nil), endpoint("fe80::1%eth0", nil, nil), endpoint("10.0.0.1", nil, nil))},
			[]string{"10.0.0.1:8080"}},
		{"the first address of an endpoint only", []discoveryv1.EndpointSlice{
			v4(tcp, discoveryv1.Endpoint{Addresses: []string{"10.0.0.1", "10.0.0.2"}})},
			[]string{"10.0.0.1:8080"}},
		{"several ports: grpc before http", []discoveryv1.EndpointSlice{
			v4([]discoveryv1.EndpointPort{port("metrics", 9090, corev1.ProtocolTCP), port("http", 8080, corev1.ProtocolTCP), port("grpc", 50051, corev1.ProtocolTCP)},
				endpoint("10.0.0.1", nil, nil))},
			[]string{"10.0.0.1:50051"}},
		{"several ports, none known: skipped", []discoveryv1.EndpointSlice{
			v4([]discoveryv1.EndpointPort{port("metrics", 9090, corev1.ProtocolTCP), port("admin", 8081, corev1.ProtocolTCP)},
				endpoint("10.0.0.1", nil, nil))},
			nil},
		{"UDP only: skipped", []discoveryv1.EndpointSlice{
			v4([]discoveryv1.EndpointPort{port("dns", 53, corev1.ProtocolUDP)}, endpoint("10.0.0.1", nil, nil))},
			nil},
		{"no port: skipped", []discoveryv1.EndpointSlice{v4(nil, endpoint("10.0.0.1", nil, nil))}, nil},
	}
	for _, tc := range tests {
		if got := addrs(endpointsOf(tc.slices)); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// Changed rings only for Sluice's slices: any other slice change is none
// of the xDS server's business.
func TestNotifyOnlyForSluiceSlices(t *testing.T) {
	t.Parallel()
	tcp := []discoveryv1.EndpointPort{port("", 8080, corev1.ProtocolTCP)}
	tests := []struct {
		name string
		obj  any
		want bool
	}{
		{"service and revision", slice("ns", "s", "svc", "r1", discoveryv1.AddressTypeIPv4, tcp), true},
		{"revision only", slice("ns", "s", "", "r1", discoveryv1.AddressTypeIPv4, tcp), false},
		{"service only", slice("ns", "s", "svc", "", discoveryv1.AddressTypeIPv4, tcp), false},
		{"not a slice", &corev1.Service{}, false},
	}
	for _, tc := range tests {
		s := &EndpointSlices{changed: make(chan struct{}, 1)}
		s.notify(tc.obj)
		select {
		case <-s.changed:
			if !tc.want {
				t.Errorf("%s: rang", tc.name)
			}
		default:
			if tc.want {
				t.Errorf("%s: did not ring", tc.name)
			}
		}
	}
}

// The source reads a real cache filled from a real API server: label
// filtering, readiness, and the bell on add, update and delete.
func TestEndpointSlicesFromTheCache(t *testing.T) {
	t.Parallel()
	c, ns := cluster(t)
	ctx := t.Context()
	src, ca := sliceSource(t, ns)

	yes, no := ptr.To(true), ptr.To(false)
	tcp := []discoveryv1.EndpointPort{port("", 8080, corev1.ProtocolTCP)}
	r1 := slice(ns, "reviews-r1-abcde", "reviews", "r1", discoveryv1.AddressTypeIPv4, tcp,
		endpoint("10.0.0.2", yes, no), endpoint("10.0.0.3", no, yes))
	steps := []struct {
		name  string
		do    func() error
		rings bool
		want  map[[2]string][]string // (service, revision) → endpoints
	}{
		{"a revision's slice", func() error { return c.Create(ctx, r1) }, true,
			map[[2]string][]string{{"reviews", "r1"}: {"10.0.0.2:8080"}}},
		{"another revision and another service", func() error {
			return errors.Join(
				c.Create(ctx, slice(ns, "reviews-r2-abcde", "reviews", "r2", discoveryv1.AddressTypeIPv4, tcp, endpoint("10.0.0.4", nil, nil))),
				c.Create(ctx, slice(ns, "ratings-r1-abcde", "ratings", "r1", discoveryv1.AddressTypeIPv4, tcp, endpoint("10.0.0.5", nil, nil))))
		}, true,
			map[[2]string][]string{{"reviews", "r1"}: {"10.0.0.2:8080"}, {"reviews", "r2"}: {"10.0.0.4:8080"}, {"ratings", "r1"}: {"10.0.0.5:8080"}}},
		{"a slice without the service label is not Sluice's", func() error {
			return c.Create(ctx, slice(ns, "other", "", "r1", discoveryv1.AddressTypeIPv4, tcp, endpoint("10.0.0.9", nil, nil)))
		}, false,
			map[[2]string][]string{{"reviews", "r1"}: {"10.0.0.2:8080"}}},
		{"an endpoint becomes ready", func() error {
			r1.Endpoints[1].Conditions = discoveryv1.EndpointConditions{Ready: yes, Terminating: no}
			return c.Update(ctx, r1)
		}, true,
			map[[2]string][]string{{"reviews", "r1"}: {"10.0.0.2:8080", "10.0.0.3:8080"}}},
		{"the slice goes", func() error { return c.Delete(ctx, r1) }, true,
			map[[2]string][]string{{"reviews", "r1"}: nil, {"reviews", "r2"}: {"10.0.0.4:8080"}}},
	}
	for _, st := range steps {
		drain(src.Changed())
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if st.rings {
			select {
			case <-src.Changed():
			case <-time.After(20 * time.Second):
				t.Fatalf("%s: Changed did not ring", st.name)
			}
		}
		for k, want := range st.want {
			poll.Until(t, st.name+": endpoints of "+k[0]+" "+k[1], func() bool {
				got, err := src.Endpoints(ns, k[0], k[1])
				return err == nil && slices.Equal(addrs(got), want)
			})
		}
	}
	// Events of one kind arrive in order: had the cache taken the slice
	// without the service label, it would hold it by now.
	var all discoveryv1.EndpointSliceList
	if err := ca.List(ctx, &all, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, es := range all.Items {
		if es.Name == "other" {
			t.Error("the cache holds a slice without the service label")
		}
	}
}

// sliceSource is an EndpointSlices source of namespace ns over a cache of
// its own, narrowed as the manager's is, running until the test ends.
func sliceSource(t *testing.T, ns string) (*EndpointSlices, cache.Cache) {
	t.Helper()
	cfg, scheme := env.Start(t)
	ca, err := cache.New(cfg, cache.Options{Scheme: scheme, ByObject: CacheByObject(), DefaultNamespaces: map[string]cache.Config{ns: {}}})
	if err != nil {
		t.Fatal(err)
	}
	src, err := NewEndpointSlices(t.Context(), ca)
	if err != nil {
		t.Fatal(err)
	}
	kubetest.Start(t, "cache", ca)
	return src, ca
}

func drain(ch <-chan struct{}) {
	select {
	case <-ch:
	default:
	}
}
