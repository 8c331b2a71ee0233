package xds

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
)

// Endpoint is one backend address of a revision.
type Endpoint struct {
	// Address is an IP literal. Envoy rejects host names in EDS, so the
	// source resolves names, not the translator.
	Address string
	Port    uint32
}

func (e Endpoint) String() string {
	return net.JoinHostPort(e.Address, strconv.FormatUint(uint64(e.Port), 10))
}

// EndpointSource says where each revision of a service runs. The standalone
// runner uses Static; controller mode will read EndpointSlices.
//
// The interface is deliberately two methods so that a Kubernetes source
// only has to answer a lookup and ring a bell.
type EndpointSource interface {
	// Endpoints returns the addresses of one revision. An unknown revision
	// has no endpoints and no error: a revision that is not running yet is
	// a normal state, and its cluster simply has no hosts. An error means
	// the source cannot answer and fails the publish.
	Endpoints(namespace, service, revision string) ([]Endpoint, error)
	// Changed is signalled (coalesced, never blocking the source) after
	// endpoints change, so the server re-translates the current plans.
	// There is one consumer: the server that owns the source.
	Changed() <-chan struct{}
}

// Static is an EndpointSource held in memory, set by its owner (the
// standalone runner reads it from its configuration; tests set it
// directly). It is safe for concurrent use.
type Static struct {
	mu      sync.Mutex
	m       map[staticKey][]Endpoint
	changed chan struct{}
}

type staticKey struct{ namespace, service, revision string }

// NewStatic returns an empty Static source.
func NewStatic() *Static {
	return &Static{m: map[staticKey][]Endpoint{}, changed: make(chan struct{}, 1)}
}

// Set replaces the endpoints of one revision with addrs, each "ip:port",
// and signals the change. No addresses removes the revision. Setting what
// is already set (the same addresses in the same order) changes nothing
// and signals nothing, so an owner may set every revision it knows as
// often as it likes: each signal makes the server translate every plan
// again.
func (s *Static) Set(namespace, service, revision string, addrs ...string) error {
	changed, err := s.Put(namespace, service, revision, addrs...)
	if err != nil || !changed {
		return err
	}
	// A full channel already holds a pending signal; the consumer reads the
	// latest state when it wakes, so one signal covers any number of sets.
	select {
	case s.changed <- struct{}{}:
	default:
	}
	return nil
}

// Put is Set without the signal, for an owner that publishes its plans
// right after and so makes the server read the endpoints anyway (the
// standalone runner: a signal would cost the server a second translation
// of every plan). It reports whether anything changed; the owner must
// publish then, even plans it published before.
func (s *Static) Put(namespace, service, revision string, addrs ...string) (changed bool, err error) {
	eps := make([]Endpoint, 0, len(addrs))
	for _, a := range addrs {
		ep, err := ParseEndpoint(a)
		if err != nil {
			return false, fmt.Errorf("endpoints of %s revision %s: %w", service, revision, err)
		}
		eps = append(eps, ep)
	}
	k := staticKey{namespace, service, revision}
	s.mu.Lock()
	defer s.mu.Unlock()
	if slices.Equal(s.m[k], eps) {
		return false, nil
	}
	if len(eps) == 0 {
		delete(s.m, k)
	} else {
		s.m[k] = eps
	}
	return true, nil
}

// Endpoints implements EndpointSource.
func (s *Static) Endpoints(namespace, service, revision string) ([]Endpoint, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.m[staticKey{namespace, service, revision}]), nil
}

// Changed implements EndpointSource.
func (s *Static) Changed() <-chan struct{} { return s.changed }

// ParseEndpoint parses "ip:port" (IPv6 in brackets).
func ParseEndpoint(s string) (Endpoint, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return Endpoint{}, fmt.Errorf("endpoint %q: want ip:port: %w", s, err)
	}
	if ap.Port() == 0 {
		return Endpoint{}, fmt.Errorf("endpoint %q: port 0", s)
	}
	return Endpoint{Address: ap.Addr().String(), Port: uint32(ap.Port())}, nil
}
