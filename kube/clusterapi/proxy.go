package clusterapi

import (
	"errors"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
)

// Default headers of an authenticating proxy: those the API server's own
// --requestheader-username-headers and --requestheader-group-headers
// conventionally name.
const (
	DefaultUserHeader  = "X-Remote-User"
	DefaultGroupHeader = "X-Remote-Group"
)

// Proxy trusts an authenticating proxy in front of the dashboard (an
// OIDC-aware ingress, oauth2-proxy, ...) to name who a request comes from,
// in headers, as the API server's front-proxy authentication does. The
// headers count only on requests Trusted says came from the proxy; on any
// other request they are refused, not ignored, so that a route around the
// proxy fails closed and says why.
type Proxy struct {
	// UserHeaders are tried in order; the first one present names the
	// user. Default X-Remote-User.
	UserHeaders []string
	// GroupHeaders: every value of each is one group. Default
	// X-Remote-Group.
	GroupHeaders []string
	// Trusted reports whether r came from the proxy: TrustNetworks,
	// TrustClientCertificate, or both (TrustEither).
	Trusted func(r *http.Request) bool
}

// identify returns the user the proxy names, false when the request names
// none.
func (p *Proxy) identify(r *http.Request) (authenticationv1.UserInfo, bool, error) {
	users, groups := p.userHeaders(), p.groupHeaders()
	var user string
	for _, h := range users {
		if user = strings.TrimSpace(r.Header.Get(h)); user != "" {
			break
		}
	}
	named := user != ""
	for _, h := range groups {
		named = named || len(r.Header.Values(h)) > 0
	}
	switch {
	case !named:
		return authenticationv1.UserInfo{}, false, nil
	case !p.Trusted(r):
		return authenticationv1.UserInfo{}, false, errors.New("identity headers (" + strings.Join(append(users, groups...), ", ") +
			") on a request that did not come from the trusted authenticating proxy")
	case user == "":
		return authenticationv1.UserInfo{}, false, nil
	}
	// The API server adds system:authenticated to every user it
	// authenticates, a front proxy's included; RBAC bindings to it count.
	info := authenticationv1.UserInfo{Username: user, Groups: []string{"system:authenticated"}}
	for _, h := range groups {
		for _, g := range r.Header.Values(h) {
			if g = strings.TrimSpace(g); g != "" && !slices.Contains(info.Groups, g) {
				info.Groups = append(info.Groups, g)
			}
		}
	}
	return info, true, nil
}

func (p *Proxy) userHeaders() []string {
	if len(p.UserHeaders) == 0 {
		return []string{DefaultUserHeader}
	}
	return p.UserHeaders
}

func (p *Proxy) groupHeaders() []string {
	if len(p.GroupHeaders) == 0 {
		return []string{DefaultGroupHeader}
	}
	return p.GroupHeaders
}

// TrustNetworks trusts requests whose peer address is in one of prefixes:
// a proxy beside the controller in its pod (127.0.0.1/32, ::1/128), or on
// a network only it can reach the listener from.
func TrustNetworks(prefixes []netip.Prefix) func(*http.Request) bool {
	return func(r *http.Request) bool {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil {
			return false
		}
		addr := ap.Addr().Unmap()
		for _, p := range prefixes {
			if p.Contains(addr) {
				return true
			}
		}
		return false
	}
}

// TrustClientCertificate trusts requests that came over TLS with a client
// certificate the listener verified (its ClientCAs are the proxy's CA);
// with names, the certificate's common name or one of its DNS names must
// be one of them, as the API server's --requestheader-allowed-names.
func TrustClientCertificate(names []string) func(*http.Request) bool {
	return func(r *http.Request) bool {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
			return false
		}
		if len(names) == 0 {
			return true
		}
		leaf := r.TLS.VerifiedChains[0][0]
		for _, n := range append([]string{leaf.Subject.CommonName}, leaf.DNSNames...) {
			if n != "" && slices.Contains(names, n) {
				return true
			}
		}
		return false
	}
}

// TrustEither trusts a request one of checks trusts.
func TrustEither(checks ...func(*http.Request) bool) func(*http.Request) bool {
	return func(r *http.Request) bool {
		for _, c := range checks {
			if c(r) {
				return true
			}
		}
		return false
	}
}
