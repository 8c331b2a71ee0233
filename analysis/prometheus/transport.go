package prometheus

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// settings is everything a client is built from, secrets resolved.
type settings struct {
	address            string
	bearer             string
	basicUser          string
	basicPass          string
	basic              bool
	ca, cert, key      string
	serverName         string
	insecureSkipVerify bool
	headers            [][2]string // sorted by name
}

func (p *Measurer) settings(ctx context.Context, ns string, prov *v1alpha1.PrometheusProvider) (*settings, error) {
	conf, err := p.provider(prov)
	if err != nil {
		return nil, err
	}
	if conf != nil {
		return conf.settings()
	}
	// The template's own server: its credentials come from its namespace's
	// Secrets, never from the configuration.
	s := &settings{address: prov.Address, insecureSkipVerify: prov.InsecureSkipVerify}
	secret := func(dst *string, what string, ref *v1alpha1.SecretKeyRef) error {
		if ref == nil {
			return nil
		}
		if p.opts.Secrets == nil {
			return fmt.Errorf("%s: Secret %s/%s: no Secrets are read for a template's own address here; configure the server with its credentials under prometheus.providers and name it", what, ns, ref.Name)
		}
		v, err := p.opts.Secrets.SecretValue(ctx, ns, *ref)
		if err != nil {
			return fmt.Errorf("%s from Secret %s/%s key %s: %w", what, ns, ref.Name, ref.Key, err)
		}
		*dst = v
		return nil
	}
	if a := prov.Auth; a != nil {
		s.basic = a.BasicUsername != nil
		if err := errors.Join(
			secret(&s.bearer, "bearer token", a.BearerToken),
			secret(&s.basicUser, "basic auth user name", a.BasicUsername),
			secret(&s.basicPass, "basic auth password", a.BasicPassword),
		); err != nil {
			return nil, err
		}
	}
	if t := prov.TLS; t != nil {
		s.serverName = t.ServerName
		if err := errors.Join(
			secret(&s.ca, "TLS CA", t.CA),
			secret(&s.cert, "TLS client certificate", t.Cert),
			secret(&s.key, "TLS client key", t.Key),
		); err != nil {
			return nil, err
		}
	}
	if err := s.addHeaders(prov.Headers); err != nil {
		return nil, err
	}
	return s, nil
}

// settings reads the provider's credentials afresh.
func (c *Provider) settings() (*settings, error) {
	s := &settings{
		address: c.Address, basicUser: c.BasicUsername, basic: c.BasicUsername != "" || c.BasicPassword != nil,
		serverName: c.ServerName, insecureSkipVerify: c.InsecureSkipVerify,
	}
	read := func(dst *string, what string, f Secret) error {
		if f == nil {
			return nil
		}
		v, err := f()
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		*dst = v
		return nil
	}
	if err := errors.Join(
		read(&s.bearer, "bearer token", c.BearerToken),
		read(&s.basicPass, "basic auth password", c.BasicPassword),
		read(&s.ca, "TLS CA", c.CA),
		read(&s.cert, "TLS client certificate", c.Cert),
		read(&s.key, "TLS client key", c.Key),
	); err != nil {
		return nil, fmt.Errorf("prometheus provider %q: %w", c.Name, err)
	}
	if err := s.addHeaders(c.Headers); err != nil {
		return nil, fmt.Errorf("prometheus provider %q: %w", c.Name, err)
	}
	return s, nil
}

// addHeaders sets the headers, sorted by name so that the cache key does
// not depend on their order.
func (s *settings) addHeaders(hs []v1alpha1.HTTPHeader) error {
	for _, h := range hs {
		if (s.bearer != "" || s.basic) && strings.EqualFold(h.Name, "Authorization") {
			return errors.New("header Authorization conflicts with auth; set one or the other")
		}
		s.headers = append(s.headers, [2]string{http.CanonicalHeaderKey(h.Name), h.Value})
	}
	slices.SortFunc(s.headers, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	return nil
}

// key identifies a client by everything it is built from, secret values
// included (hashed), so that a rotated credential gets a new client.
func (s *settings) cacheKey() string {
	h := sha256.New()
	field := func(v string) { fmt.Fprintf(h, "%d:%s;", len(v), v) }
	for _, v := range []string{s.address, s.bearer, s.basicUser, s.basicPass, fmt.Sprint(s.basic), s.ca, s.cert, s.key, s.serverName, fmt.Sprint(s.insecureSkipVerify)} {
		field(v)
	}
	for _, kv := range s.headers {
		field(kv[0])
		field(kv[1])
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (s *settings) httpClient(userAgent string) (*http.Client, error) {
	tc := &tls.Config{
		ServerName:         s.serverName,
		InsecureSkipVerify: s.insecureSkipVerify, //nolint:gosec // the user's explicit choice, documented as "avoid"
		MinVersion:         tls.VersionTLS12,
	}
	if s.ca != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(s.ca)) {
			return nil, errors.New("TLS CA: no PEM certificate found")
		}
		tc.RootCAs = pool
	}
	if s.cert != "" || s.key != "" {
		pair, err := tls.X509KeyPair([]byte(s.cert), []byte(s.key))
		if err != nil {
			return nil, fmt.Errorf("TLS client certificate and key: %w", err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	origin, err := url.Parse(s.address)
	if err != nil || origin.Host == "" {
		return nil, fmt.Errorf("prometheus address %q: want an absolute URL such as http://prometheus:9090", s.address)
	}
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.TLSClientConfig = tc
	return &http.Client{
		Transport: &authTransport{next: base, s: s, userAgent: userAgent, scheme: origin.Scheme, host: origin.Host},
		// A redirect elsewhere is refused rather than followed: the
		// credentials are for this Prometheus only.
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if req.URL.Scheme != origin.Scheme || req.URL.Host != origin.Host {
				return fmt.Errorf("redirected to %s://%s, another host than %s: not followed", req.URL.Scheme, req.URL.Host, origin.Host)
			}
			if len(via) >= 10 {
				return errors.New("stopped after 10 redirects")
			}
			return nil
		},
	}, nil
}

// authTransport adds the configured headers and credentials to requests
// for the configured Prometheus, and to no other host.
type authTransport struct {
	next      http.RoundTripper
	s         *settings
	userAgent string
	// scheme and host of the configured address.
	scheme, host string
}

func (t *authTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	// A RoundTripper must not modify the request it is given.
	req = req.Clone(req.Context())
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", t.userAgent)
	}
	if req.URL.Scheme != t.scheme || req.URL.Host != t.host {
		return t.next.RoundTrip(req)
	}
	for _, kv := range t.s.headers {
		req.Header.Set(kv[0], kv[1])
	}
	switch {
	case t.s.bearer != "":
		req.Header.Set("Authorization", "Bearer "+t.s.bearer)
	case t.s.basic:
		req.SetBasicAuth(t.s.basicUser, t.s.basicPass)
	}
	return t.next.RoundTrip(req)
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the
// underlying transport.
func (t *authTransport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
