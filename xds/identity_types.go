package xds

import (
	"fmt"
	"net/url"
	"strings"
)

// Identity is the verified workload identity of an xDS stream: who the
// client proved to be (by its certificate or its service-account token),
// not who its node id says it is. Authorization decisions (which services
// a node may see, whose ACKs count) are made on it.
//
// The zero Identity means the stream is unauthenticated, which only
// happens on a server started insecure (--insecure-xds, xds.insecureServePlaintext).
type Identity struct {
	// SPIFFE is the identity as a SPIFFE ID: spiffe://<trust-domain>/<path>.
	// A Kubernetes workload's is spiffe://<trust-domain>/ns/<ns>/sa/<sa>.
	SPIFFE string
	// Namespace and ServiceAccount are set when SPIFFE has the Kubernetes
	// form /ns/<ns>/sa/<sa>; a standalone workload name leaves them empty.
	Namespace      string
	ServiceAccount string
	// Method says how the identity was verified: MethodMTLS or MethodToken.
	Method string
}

// How an Identity was verified.
const (
	MethodMTLS  = "mtls"
	MethodToken = "token"
)

// IsZero reports whether the stream is unauthenticated (insecure server).
func (id Identity) IsZero() bool { return id.SPIFFE == "" }

// String is the SPIFFE ID, or "unauthenticated".
func (id Identity) String() string {
	if id.IsZero() {
		return "unauthenticated"
	}
	return id.SPIFFE
}

// KubernetesIdentity is the identity of a Kubernetes service account in
// the given trust domain (e.g. "cluster.local", the one Istio uses).
func KubernetesIdentity(trustDomain, namespace, serviceAccount, method string) Identity {
	return Identity{
		SPIFFE:         "spiffe://" + trustDomain + "/ns/" + namespace + "/sa/" + serviceAccount,
		Namespace:      namespace,
		ServiceAccount: serviceAccount,
		Method:         method,
	}
}

// ParseSPIFFE turns a SPIFFE ID into an Identity verified by method,
// filling Namespace and ServiceAccount when the path has the Kubernetes
// form. It refuses anything that is not a spiffe:// URI with a trust
// domain and a path.
func ParseSPIFFE(id, method string) (Identity, error) {
	u, err := url.Parse(id)
	if err != nil {
		return Identity{}, fmt.Errorf("spiffe id %q: %w", id, err)
	}
	if u.Scheme != "spiffe" || u.Host == "" || u.User != nil || u.Port() != "" || u.RawQuery != "" || u.Fragment != "" {
		return Identity{}, fmt.Errorf("spiffe id %q: want spiffe://<trust-domain>/<path>", id)
	}
	path := strings.TrimPrefix(u.EscapedPath(), "/")
	if path == "" || strings.HasSuffix(path, "/") || strings.Contains(path, "//") {
		return Identity{}, fmt.Errorf("spiffe id %q: the path must name a workload without empty segments", id)
	}
	out := Identity{SPIFFE: id, Method: method}
	if seg := strings.Split(path, "/"); len(seg) == 4 && seg[0] == "ns" && seg[2] == "sa" {
		out.Namespace, out.ServiceAccount = seg[1], seg[3]
	}
	return out, nil
}
