// Package plan defines the traffic plan: the one data structure that says
// where a service's traffic goes now. The engine produces it; the
// VirtualService writer and the xDS translator consume it and nothing else.
//
// A plan is plain data with no behaviour beyond hashing and checking. Its
// Version is a hash of its content, so it changes exactly when the routing
// changes and the data plane can acknowledge it.
package plan

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Subset names used in every plan. Istio DestinationRule subsets and xDS
// clusters carry these names.
const (
	Stable = "stable"
	Canary = "canary"
)

// Plan is the desired routing of one service.
type Plan struct {
	// Version is the content hash of everything below; set by Seal.
	Version string `json:"version"`
	// Service is the name of the service (the Rollout's service.name).
	Service string `json:"service"`
	// Namespace of the Rollout in controller mode; empty in standalone mode.
	Namespace string `json:"namespace,omitempty"`
	// Subsets say which revision each subset selects.
	Subsets []Subset `json:"subsets"`
	// Hosts are routed independently; each has its ordered routes.
	Hosts []Host `json:"hosts"`
}

// Subset binds a subset name to a revision.
type Subset struct {
	Name     string `json:"name"`
	Revision string `json:"revision"`
}

// Host is the routing for one host name.
type Host struct {
	Name string `json:"name"`
	Port uint32 `json:"port"`
	// Routes are tried in order; the first whose match holds wins. The last
	// route has no match and catches everything.
	Routes []Route `json:"routes"`
}

// Route is one routing rule.
type Route struct {
	// Name is stable across plans, e.g. "primary", "header-jason".
	Name string `json:"name"`
	// Match holds alternatives: the route applies if any one matches.
	// Empty means every request.
	Match []Match `json:"match,omitempty"`
	// Destinations are weighted subsets; weights sum to 100.
	Destinations []Destination `json:"destinations"`
	// Mirror copies a share of requests to a subset.
	Mirror *Mirror `json:"mirror,omitempty"`
	// Policy is the user's timeout, retries and fault for this route.
	Policy *Policy `json:"policy,omitempty"`
	// Affinity pins each session to one destination for as long as the
	// weights stay, and lets a weight change move sessions only towards
	// the destinations whose weight rose. Nil means each request is drawn
	// by weight on its own.
	Affinity *Affinity `json:"affinity,omitempty"`
}

// Affinity names the session key of a request: the value of one header,
// or of one cookie. Exactly one of Header and Cookie is set.
type Affinity struct {
	Header string `json:"header,omitempty"`
	Cookie string `json:"cookie,omitempty"`
	// CookieTTL is the lifetime of the cookie a proxy creates for a
	// request without one; zero means a session cookie.
	CookieTTL time.Duration `json:"cookieTTL,omitempty"`
}

// Match is a conjunction of conditions on a request.
type Match struct {
	Headers []HeaderMatch `json:"headers,omitempty"`
	URI     *URIMatch     `json:"uri,omitempty"`
	Cookies []CookieMatch `json:"cookies,omitempty"`
}

// HeaderMatchKind is how a header value is compared.
type HeaderMatchKind string

const (
	HeaderExact   HeaderMatchKind = "exact"
	HeaderPrefix  HeaderMatchKind = "prefix"
	HeaderRegex   HeaderMatchKind = "regex"
	HeaderPresent HeaderMatchKind = "present"
	// HeaderAbsent matches requests without the header.
	HeaderAbsent HeaderMatchKind = "absent"
)

// HeaderMatch compares one header.
type HeaderMatch struct {
	Name  string          `json:"name"`
	Kind  HeaderMatchKind `json:"kind"`
	Value string          `json:"value,omitempty"`
}

// URIMatch compares the request path.
type URIMatch struct {
	// Prefix is true for a prefix match, false for exact.
	Prefix bool   `json:"prefix,omitempty"`
	Value  string `json:"value"`
}

// CookieMatch requires a cookie with an exact value.
type CookieMatch struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Destination is a weighted subset.
type Destination struct {
	Subset string `json:"subset"`
	Weight int32  `json:"weight"`
}

// Mirror copies requests to a subset; responses of the mirror are dropped.
type Mirror struct {
	Subset  string `json:"subset"`
	Percent int32  `json:"percent"`
}

// Policy is timeout, retries and fault injection on a route.
type Policy struct {
	Timeout time.Duration `json:"timeout,omitempty"`
	Retries *Retries      `json:"retries,omitempty"`
	Fault   *Fault        `json:"fault,omitempty"`
}

// Retries retries failed requests.
type Retries struct {
	Attempts      int32         `json:"attempts"`
	PerTryTimeout time.Duration `json:"perTryTimeout,omitempty"`
	RetryOn       string        `json:"retryOn,omitempty"`
}

// Fault injects errors or delays into a share of requests.
type Fault struct {
	Abort *FaultAbort `json:"abort,omitempty"`
	Delay *FaultDelay `json:"delay,omitempty"`
}

// FaultAbort answers with an error status; at least one of HTTPStatus and
// GRPCStatus is non-zero. With both, a data plane uses the one its callers
// speak: HTTPStatus for Envoy, GRPCStatus for proxyless gRPC.
type FaultAbort struct {
	HTTPStatus int32 `json:"httpStatus,omitempty"`
	GRPCStatus int32 `json:"grpcStatus,omitempty"`
	Percent    int32 `json:"percent"`
}

// FaultDelay delays requests.
type FaultDelay struct {
	Delay   time.Duration `json:"delay"`
	Percent int32         `json:"percent"`
}

// Seal computes the content hash and stores it in Version. Call it after
// every change; Check verifies it.
func (p *Plan) Seal() {
	p.Version = p.hash()
}

func (p *Plan) hash() string {
	c := *p
	c.Version = ""
	// encoding/json writes struct fields in declaration order and the plan
	// has no maps, so the encoding is canonical.
	b, err := json.Marshal(c)
	if err != nil {
		// Only unsupported types fail to marshal; the plan has none.
		panic(fmt.Sprintf("plan: marshal: %v", err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// Weight returns the weight of subset in the host's last (default) route.
func (h Host) Weight(subset string) int32 {
	if len(h.Routes) == 0 {
		return 0
	}
	for _, d := range h.Routes[len(h.Routes)-1].Destinations {
		if d.Subset == subset {
			return d.Weight
		}
	}
	return 0
}

// Revision returns the revision a subset selects, or "".
func (p *Plan) Revision(subset string) string {
	for _, s := range p.Subsets {
		if s.Name == subset {
			return s.Revision
		}
	}
	return ""
}

// Check verifies the invariants every consumer relies on: weights of every
// route sum to 100, destinations and mirrors name declared subsets, every
// host ends with a catch-all route, and the version matches the content.
func (p *Plan) Check() error {
	var errs []error
	subsets := map[string]bool{}
	for _, s := range p.Subsets {
		if s.Revision == "" {
			errs = append(errs, fmt.Errorf("subset %q: no revision", s.Name))
		}
		subsets[s.Name] = true
	}
	if len(p.Hosts) == 0 {
		errs = append(errs, errors.New("no hosts"))
	}
	for _, h := range p.Hosts {
		if len(h.Routes) == 0 {
			errs = append(errs, fmt.Errorf("host %q: no routes", h.Name))
			continue
		}
		if last := h.Routes[len(h.Routes)-1]; len(last.Match) != 0 {
			errs = append(errs, fmt.Errorf("host %q: last route %q has a match; it must catch everything", h.Name, last.Name))
		}
		for _, r := range h.Routes {
			var sum int32
			for _, d := range r.Destinations {
				if !subsets[d.Subset] {
					errs = append(errs, fmt.Errorf("host %q route %q: unknown subset %q", h.Name, r.Name, d.Subset))
				}
				if d.Weight < 0 || d.Weight > 100 {
					errs = append(errs, fmt.Errorf("host %q route %q: weight %d of %q out of 0..100", h.Name, r.Name, d.Weight, d.Subset))
				}
				sum += d.Weight
			}
			if sum != 100 {
				errs = append(errs, fmt.Errorf("host %q route %q: weights sum to %d, want 100", h.Name, r.Name, sum))
			}
			if a := r.Affinity; a != nil && (a.Header == "") == (a.Cookie == "") {
				errs = append(errs, fmt.Errorf("host %q route %q: affinity needs exactly one of header and cookie", h.Name, r.Name))
			}
			if m := r.Mirror; m != nil {
				if !subsets[m.Subset] {
					errs = append(errs, fmt.Errorf("host %q route %q: mirror to unknown subset %q", h.Name, r.Name, m.Subset))
				}
				if m.Percent <= 0 || m.Percent > 100 {
					errs = append(errs, fmt.Errorf("host %q route %q: mirror percent %d out of 1..100", h.Name, r.Name, m.Percent))
				}
			}
		}
	}
	if p.Version != p.hash() {
		errs = append(errs, fmt.Errorf("version %q does not match content (want %q); call Seal", p.Version, p.hash()))
	}
	return errors.Join(errs...)
}
