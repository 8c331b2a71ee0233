// Package prometheus takes analysis measurements from Prometheus over its
// HTTP API with client_golang's api/v1 client and prometheus/common's model
// types; the HTTP client adds bearer-token or basic auth, custom headers and
// TLS settings (CA, client certificate, server name). It is the
// adapter around the pure analysis.Step: it does I/O and nothing else, and
// every failure becomes the measurement's Err.
//
// Credentials are never read here: Secret references are handed to a
// SecretResolver, so the Kubernetes adapter can read Secrets and the
// standalone runner its own files.
package prometheus

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/sluicehq/sluice/analysis"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// SecretResolver returns credential values.
type SecretResolver interface {
	// SecretValue returns the value under ref.Key of the Secret ref.Name
	// in namespace.
	SecretValue(ctx context.Context, namespace string, ref v1alpha1.SecretKeyRef) (string, error)
}

// Options configure a Measurer.
type Options struct {
	// Providers are the Prometheus servers of the operator's
	// configuration, by unique name (the configuration checks them): a
	// template names one (provider.prometheus.name) and never sees its
	// address' credentials. A template that names none and gives no
	// address uses DefaultProvider.
	Providers []Provider
	// AllowTemplateAddresses lets a template query an address of its own
	// (provider.prometheus.address), with credentials from Secrets only.
	// Off, such a metric fails to measure: a template's author could
	// otherwise make the controller send requests anywhere it can reach.
	AllowTemplateAddresses bool
	// Secrets resolves the auth and TLS references of a template's own
	// address; with none, a metric that has any fails to measure.
	Secrets SecretResolver
	// UserAgent is sent with every query; default "sluice".
	UserAgent string
}

// DefaultProvider is the provider of templates that name none and give no
// address.
const DefaultProvider = "default"

// Provider is a Prometheus server of the operator's configuration with
// the credentials, TLS settings and headers sent to it and to no other
// host.
type Provider struct {
	Name    string
	Address string
	// BearerToken, when set, is sent as Authorization: Bearer.
	BearerToken Secret
	// BasicUsername with BasicPassword is sent as basic auth.
	BasicUsername string
	BasicPassword Secret
	// CA, Cert and Key return PEM: the authorities that sign the server's
	// certificate (nil: the system's roots) and a client certificate.
	CA, Cert, Key      Secret
	ServerName         string
	InsecureSkipVerify bool
	Headers            []v1alpha1.HTTPHeader
}

// Secret returns a credential's current value. It is called for every
// measurement, so that a rotated file or variable takes effect at once.
type Secret func() (string, error)

// Measurer queries Prometheus. It implements analysis.Measurer and is safe
// for concurrent use. Clients are kept per distinct configuration
// (address, credentials, TLS, headers) so connections are reused.
type Measurer struct {
	opts      Options
	providers map[string]*Provider
	mu        sync.Mutex
	clients   map[string]*client
}

type client struct {
	api  v1.API
	http *http.Client
}

// maxClients bounds the client cache; past it the cache starts afresh
// (credentials that rotate would otherwise pile up clients).
const maxClients = 64

// New returns a Measurer.
func New(opts Options) *Measurer {
	if opts.UserAgent == "" {
		opts.UserAgent = "sluice"
	}
	providers := make(map[string]*Provider, len(opts.Providers))
	for i := range opts.Providers {
		providers[opts.Providers[i].Name] = &opts.Providers[i]
	}
	return &Measurer{opts: opts, providers: providers, clients: map[string]*client{}}
}

// Close releases idle connections.
func (p *Measurer) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.clients {
		c.http.CloseIdleConnections()
	}
	clear(p.clients)
}

// Measure runs the query of q: an instant query at q.At, or for a compare
// metric two range queries over the window ending at q.At.
func (p *Measurer) Measure(ctx context.Context, q analysis.Query) analysis.Result {
	res := analysis.Result{Metric: q.Metric, Index: q.Index}
	timeout := cmp.Or(q.Timeout, analysis.DefaultTimeout)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := p.client(ctx, q)
	if err != nil {
		res.Err = err
		return res
	}
	if q.Compare != nil {
		res.Stable, res.Canary, res.Err = p.compare(ctx, c, q, timeout)
		return res
	}
	v, _, err := c.api.Query(ctx, q.Query, q.At, v1.WithTimeout(timeout))
	if err != nil {
		res.Err = queryError(ctx, err, timeout)
		return res
	}
	res.Value, res.Err = convert(v)
	return res
}

func (p *Measurer) compare(ctx context.Context, c *client, q analysis.Query, timeout time.Duration) (stable, canary []float64, err error) {
	r := v1.Range{Start: q.At.Add(-q.Compare.Window), End: q.At, Step: q.Compare.Step}
	for _, side := range []struct {
		name  string
		query string
		dst   *[]float64
	}{{"stable", q.Compare.Stable, &stable}, {"canary", q.Compare.Canary, &canary}} {
		v, _, err := c.api.QueryRange(ctx, side.query, r, v1.WithTimeout(timeout))
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", side.name, queryError(ctx, err, timeout))
		}
		if *side.dst, err = samples(v); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", side.name, err)
		}
	}
	return stable, canary, nil
}

// queryError words a failed query: Prometheus' own message for a query it
// rejected (e.g. "bad_data: 1:14: parse error: ..."), a timeout as such.
func queryError(ctx context.Context, err error, timeout time.Duration) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("query timed out after %s", timeout)
	}
	return fmt.Errorf("query failed: %w", err)
}

// convert turns an instant query's result into an analysis.Value. Series
// are ordered by their labels, so `result[0]` of a multi-series vector is
// the same series every time.
func convert(v model.Value) (analysis.Value, error) {
	switch v := v.(type) {
	case *model.Scalar:
		return analysis.Value{Scalar: true, Values: []float64{float64(v.Value)}}, nil
	case model.Vector:
		sorted := slices.Clone(v)
		slices.SortFunc(sorted, func(a, b *model.Sample) int { return strings.Compare(a.Metric.String(), b.Metric.String()) })
		out := analysis.Value{Values: make([]float64, 0, len(sorted))}
		for _, s := range sorted {
			if s.Histogram != nil {
				return analysis.Value{}, fmt.Errorf("series %s is a native histogram, not a number; use histogram_quantile or histogram_count", s.Metric)
			}
			out.Values = append(out.Values, float64(s.Value))
		}
		return out, nil
	case model.Matrix:
		return analysis.Value{}, errors.New("the query returns a range vector; use an instant vector, e.g. rate(x[5m]) rather than x[5m]")
	case nil:
		return analysis.Value{}, errors.New("the query returned nothing")
	}
	return analysis.Value{}, fmt.Errorf("the query returns a %s, not a number or an instant vector", v.Type())
}

// samples pools the values of every series of a range query, in label
// order, then time order.
func samples(v model.Value) ([]float64, error) {
	m, ok := v.(model.Matrix)
	if !ok {
		return nil, fmt.Errorf("a range query returned a %s, want a matrix", v.Type())
	}
	sorted := slices.Clone(m)
	slices.SortFunc(sorted, func(a, b *model.SampleStream) int { return strings.Compare(a.Metric.String(), b.Metric.String()) })
	var out []float64
	for _, s := range sorted {
		if len(s.Histograms) > 0 {
			return nil, fmt.Errorf("series %s is a native histogram, not a number", s.Metric)
		}
		for _, pt := range s.Values {
			out = append(out, float64(pt.Value))
		}
	}
	return out, nil
}

// client returns the client for q's provider, building it on first use.
func (p *Measurer) client(ctx context.Context, q analysis.Query) (*client, error) {
	prov := q.Provider
	if prov == nil {
		return nil, errors.New("metric has no prometheus provider")
	}
	s, err := p.settings(ctx, q.Namespace, prov)
	if err != nil {
		return nil, err
	}
	key := s.cacheKey()
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.clients[key]; ok {
		return c, nil
	}
	hc, err := s.httpClient(p.opts.UserAgent)
	if err != nil {
		return nil, err
	}
	ac, err := api.NewClient(api.Config{Address: s.address, Client: hc})
	if err != nil {
		return nil, fmt.Errorf("prometheus address %q: %w", s.address, err)
	}
	if len(p.clients) >= maxClients {
		for _, c := range p.clients {
			c.http.CloseIdleConnections()
		}
		clear(p.clients)
	}
	c := &client{api: v1.NewAPI(ac), http: hc}
	p.clients[key] = c
	return c, nil
}
