package config

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"

	promanalysis "github.com/sluicehq/sluice/analysis/prometheus"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Prometheus is the analysis section: the Prometheus servers templates
// may query, and with which credentials. The same section configures
// `sluice controller`.
type Prometheus struct {
	// Address is the provider named "default", without credentials: the
	// one of templates that name no provider and give no address. Set it
	// or a provider named default, not both.
	Address string `json:"address,omitempty"`
	// Providers are the servers a template names
	// (provider.prometheus.name). Their credentials are sent to their
	// address only; templates never see them.
	Providers []PrometheusProvider `json:"providers,omitempty"`
	// AllowTemplateAddresses lets a template give an address of its own
	// (provider.prometheus.address). Off by default: a template's author
	// could otherwise make Sluice send requests to any host it reaches.
	// Such a template never gets a configured credential; in controller
	// mode it may read Secrets of its own namespace, in standalone mode
	// none.
	AllowTemplateAddresses bool `json:"allowTemplateAddresses,omitempty"`
}

// PrometheusProvider is one named Prometheus server.
type PrometheusProvider struct {
	// Name is what templates call it: a DNS label such as team-a.
	Name string `json:"name"`
	// Address is the server's URL, e.g. https://prometheus.monitoring:9090.
	Address string `json:"address"`
	// BearerToken is sent as Authorization: Bearer; it is read for every
	// measurement, so a rotated file takes effect at once.
	BearerToken *ValueFrom  `json:"bearerToken,omitempty"`
	BasicAuth   *BasicAuth  `json:"basicAuth,omitempty"`
	TLS         *ClientTLS  `json:"tls,omitempty"`
	Headers     []HTTPField `json:"headers,omitempty"`
}

// BasicAuth is a user name and a password.
type BasicAuth struct {
	Username string     `json:"username"`
	Password *ValueFrom `json:"password"`
}

// ClientTLS is how a provider's server is verified and, with certFile and
// keyFile, how Sluice proves who it is. Files are read for every
// measurement.
type ClientTLS struct {
	// CAFile holds the PEM authorities that sign the server's
	// certificate; absent: the system's roots.
	CAFile     string `json:"caFile,omitempty"`
	CertFile   string `json:"certFile,omitempty"`
	KeyFile    string `json:"keyFile,omitempty"`
	ServerName string `json:"serverName,omitempty"`
	// InsecureSkipVerify turns certificate checks off. Avoid.
	InsecureSkipVerify bool `json:"insecureSkipVerify,omitempty"`
}

// HTTPField is a header sent with every request, e.g. X-Scope-OrgID for a
// Mimir, Cortex or Thanos tenant.
type HTTPField struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Check reports every problem of the section, each naming its key.
func (p *Prometheus) Check() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if p.Address != "" {
		if msg := checkURL(p.Address); msg != "" {
			bad("prometheus.address", "%q: %s", p.Address, msg)
		}
	}
	seen := map[string]bool{}
	for i, pr := range p.Providers {
		key := fmt.Sprintf("prometheus.providers[%d]", i)
		switch {
		case pr.Name == "":
			bad(key+".name", "required")
		case seen[pr.Name]:
			bad(key+".name", "%q is used twice", pr.Name)
		case pr.Name == promanalysis.DefaultProvider && p.Address != "":
			bad(key+".name", "%q: prometheus.address (or --prometheus-url) is already the provider named default; set one of them", pr.Name)
		default:
			for _, msg := range validation.IsDNS1123Label(pr.Name) {
				bad(key+".name", "%q: %s", pr.Name, msg)
			}
		}
		seen[pr.Name] = true
		if msg := checkURL(pr.Address); msg != "" {
			bad(key+".address", "%q: %s", pr.Address, msg)
		}
		if pr.BearerToken != nil && pr.BasicAuth != nil {
			bad(key, "set bearerToken or basicAuth, not both")
		}
		checkValue := func(k string, v *ValueFrom) {
			if v != nil && (v.Env == "") == (v.File == "") {
				bad(k, "set exactly one of env and file")
			}
		}
		checkValue(key+".bearerToken", pr.BearerToken)
		if b := pr.BasicAuth; b != nil {
			if b.Username == "" {
				bad(key+".basicAuth.username", "required")
			}
			if b.Password == nil {
				bad(key+".basicAuth.password", "required")
			}
			checkValue(key+".basicAuth.password", b.Password)
		}
		if t := pr.TLS; t != nil && (t.CertFile == "") != (t.KeyFile == "") {
			bad(key+".tls", "certFile and keyFile go together")
		}
		names := map[string]bool{}
		for j, h := range pr.Headers {
			hk := fmt.Sprintf("%s.headers[%d].name", key, j)
			canon := http.CanonicalHeaderKey(h.Name)
			switch {
			case len(validation.IsHTTPHeaderName(h.Name)) > 0:
				bad(hk, "%q: not an HTTP header name", h.Name)
			case names[canon]:
				bad(hk, "%q is used twice", h.Name)
			case canon == "Authorization" && (pr.BearerToken != nil || pr.BasicAuth != nil):
				bad(hk, "conflicts with bearerToken and basicAuth; set one or the other")
			}
			names[canon] = true
		}
	}
	return errors.Join(errs...)
}

func checkURL(addr string) string {
	u, err := url.Parse(addr)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "want an http(s) URL such as http://prometheus:9090"
	}
	return ""
}

// Options are the analysis/prometheus options of the section: its
// providers, credentials read when each measurement is taken, and the
// template-address policy. Call after Check.
func (p *Prometheus) Options() promanalysis.Options {
	opts := promanalysis.Options{AllowTemplateAddresses: p.AllowTemplateAddresses}
	if p.Address != "" {
		opts.Providers = append(opts.Providers, promanalysis.Provider{Name: promanalysis.DefaultProvider, Address: p.Address})
	}
	for i, pr := range p.Providers {
		key := fmt.Sprintf("prometheus.providers[%d]", i)
		out := promanalysis.Provider{Name: pr.Name, Address: pr.Address, BearerToken: pr.BearerToken.secret(key + ".bearerToken")}
		if b := pr.BasicAuth; b != nil {
			out.BasicUsername, out.BasicPassword = b.Username, b.Password.secret(key+".basicAuth.password")
		}
		if t := pr.TLS; t != nil {
			out.CA, out.Cert, out.Key = fileSecret(key+".tls.caFile", t.CAFile), fileSecret(key+".tls.certFile", t.CertFile), fileSecret(key+".tls.keyFile", t.KeyFile)
			out.ServerName, out.InsecureSkipVerify = t.ServerName, t.InsecureSkipVerify
		}
		for _, h := range pr.Headers {
			out.Headers = append(out.Headers, v1alpha1.HTTPHeader{Name: h.Name, Value: h.Value})
		}
		opts.Providers = append(opts.Providers, out)
	}
	return opts
}

// secret reads v each time it is called; nil for no reference. An empty
// value is an error: it would silently send no credential.
func (v *ValueFrom) secret(key string) promanalysis.Secret {
	if v == nil {
		return nil
	}
	return func() (string, error) {
		s, err := v.Read(key)
		if err == nil && s == "" {
			err = fmt.Errorf("%s: the value is empty", key)
		}
		return s, err
	}
}

func fileSecret(key, path string) promanalysis.Secret {
	if path == "" {
		return nil
	}
	return func() (string, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("%s: %w", key, err)
		}
		return strings.TrimSpace(string(b)), nil
	}
}
