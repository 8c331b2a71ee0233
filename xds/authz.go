package xds

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Authorization decides which services a node may see; a node is sent
// only their resources, and its ACKs and NACKs count only for them.
//
// By default a verified identity sees the services of its own namespace
// (a Kubernetes workload's is in its SPIFFE ID, /ns/<ns>/sa/<sa>). Plans
// without a namespace (standalone mode, one operator and one repository)
// are in the unnamed namespace, which every verified identity shares.
// Grants widen the view. A stream without a verified identity, possible
// only on a server started insecure, sees everything.
type Authorization struct {
	// Grants widen what the identities they name may see.
	Grants []Grant `json:"grants,omitempty"`
	// GrantsOnly drops the default: an identity sees only what grants
	// give it, not its own namespace (nor the unnamed one). It is how a
	// standalone server keeps one workload from another's routes.
	GrantsOnly bool `json:"grantsOnly,omitempty"`
}

// Grant lets the identities From names see Services.
type Grant struct {
	From GrantFrom `json:"from"`
	// Services are "namespace/name", "namespace/*" (every service of the
	// namespace), "name" (a standalone service) or "*" (every service).
	Services []string `json:"services"`
}

// GrantFrom names identities: every workload of a namespace, or one
// SPIFFE ID exactly. Set exactly one.
type GrantFrom struct {
	Namespace string `json:"namespace,omitempty"`
	SPIFFE    string `json:"spiffe,omitempty"`
}

// Check reports every malformed grant, naming its key under prefix
// (e.g. "xds.authorization").
func (a Authorization) Check(prefix string) error {
	var errs []error
	for i, g := range a.Grants {
		key := fmt.Sprintf("%s.grants[%d]", prefix, i)
		switch {
		case (g.From.Namespace == "") == (g.From.SPIFFE == ""):
			errs = append(errs, fmt.Errorf("%s.from: set exactly one of namespace and spiffe", key))
		case g.From.SPIFFE != "":
			if _, err := ParseSPIFFE(g.From.SPIFFE, ""); err != nil {
				errs = append(errs, fmt.Errorf("%s.from.spiffe: %w", key, err))
			}
		case strings.ContainsAny(g.From.Namespace, "/* "):
			errs = append(errs, fmt.Errorf("%s.from.namespace: %q: want a namespace name", key, g.From.Namespace))
		}
		if len(g.Services) == 0 {
			errs = append(errs, fmt.Errorf("%s.services: name at least one service", key))
		}
		for j, s := range g.Services {
			if err := checkServicePattern(s); err != nil {
				errs = append(errs, fmt.Errorf("%s.services[%d]: %w", key, j, err))
			}
		}
	}
	return errors.Join(errs...)
}

func checkServicePattern(p string) error {
	if p == "*" {
		return nil
	}
	ns, name, namespaced := strings.Cut(p, "/")
	if !namespaced {
		ns, name = "", p
	}
	bad := name == "" || strings.ContainsAny(name, "/ ") || (name != "*" && strings.Contains(name, "*")) ||
		(namespaced && (ns == "" || strings.ContainsAny(ns, "* "))) || (!namespaced && name == "*")
	if bad {
		return fmt.Errorf("%q: want namespace/name, namespace/*, a standalone service name, or *", p)
	}
	return nil
}

// scope is what one identity may see, in a canonical form: equal scopes
// share one view (one snapshot per client group).
type scope struct {
	all bool
	// namespaces whose every service is visible; "" is the unnamed
	// (standalone) namespace.
	namespaces []string
	// services visible one by one, as ServiceKeys.
	services []string
}

// allScope is the view of a stream without a verified identity.
var allScope = scope{all: true}

// scopeOf applies the policy to an identity.
func (a Authorization) scopeOf(id Identity) scope {
	if id.IsZero() {
		return allScope
	}
	var sc scope
	if !a.GrantsOnly {
		sc.namespaces = append(sc.namespaces, "")
		if id.Namespace != "" {
			sc.namespaces = append(sc.namespaces, id.Namespace)
		}
	}
	for _, g := range a.Grants {
		if !g.applies(id) {
			continue
		}
		for _, p := range g.Services {
			ns, name, namespaced := strings.Cut(p, "/")
			switch {
			case p == "*":
				return allScope
			case !namespaced:
				sc.services = append(sc.services, p)
			case name == "*":
				sc.namespaces = append(sc.namespaces, ns)
			default:
				sc.services = append(sc.services, ServiceKey(ns, name))
			}
		}
	}
	slices.Sort(sc.namespaces)
	sc.namespaces = slices.Compact(sc.namespaces)
	slices.Sort(sc.services)
	sc.services = slices.Compact(sc.services)
	// A service already visible through its namespace needs no entry of
	// its own; dropping it keeps equal views equal.
	sc.services = slices.DeleteFunc(sc.services, func(key string) bool {
		ns, _, ok := strings.Cut(key, "/")
		if !ok {
			ns = ""
		}
		_, found := slices.BinarySearch(sc.namespaces, ns)
		return found
	})
	return sc
}

func (g Grant) applies(id Identity) bool {
	if g.From.SPIFFE != "" {
		return g.From.SPIFFE == id.SPIFFE
	}
	return g.From.Namespace == id.Namespace
}

// allows reports whether the scope sees a service.
func (sc scope) allows(namespace, service string) bool {
	if sc.all {
		return true
	}
	if _, ok := slices.BinarySearch(sc.namespaces, namespace); ok {
		return true
	}
	_, ok := slices.BinarySearch(sc.services, ServiceKey(namespace, service))
	return ok
}

// allView is the key of the view of everything.
const allView = "all"

// key names the scope's view: the snapshot caches key by it, so nodes
// with equal scopes share one snapshot however many there are.
func (sc scope) key() string {
	if sc.all {
		return allView
	}
	h := sha256.New()
	for _, ns := range sc.namespaces {
		h.Write([]byte("ns\x00" + ns + "\x00"))
	}
	for _, s := range sc.services {
		h.Write([]byte("svc\x00" + s + "\x00"))
	}
	return "v-" + hex.EncodeToString(h.Sum(nil)[:10])
}

// String describes the scope for logs.
func (sc scope) String() string {
	if sc.all {
		return "every service"
	}
	var parts []string
	for _, ns := range sc.namespaces {
		if ns == "" {
			parts = append(parts, "unnamespaced services")
		} else {
			parts = append(parts, ns+"/*")
		}
	}
	parts = append(parts, sc.services...)
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, ", ")
}
