package prometheus

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// provider applies the operator's policy to a metric's provider: the
// configured provider it names (or the default one), or nil for the
// template's own address where template addresses are allowed. The
// template's own auth, TLS and headers go with its own address only, so a
// configured credential never travels to an address a template chose, and
// a template cannot add a header (a tenant, say) to a configured
// provider's requests.
func (p *Measurer) provider(prov *v1alpha1.PrometheusProvider) (*Provider, error) {
	own := ownSettings(prov)
	switch {
	case prov.Name != "" && prov.Address != "":
		return nil, fmt.Errorf("provider %q and address %q exclude each other", prov.Name, prov.Address)
	case prov.Address == "" && len(own) > 0:
		return nil, fmt.Errorf("%s set without address: they are for a template's own server; a configured provider brings its own", strings.Join(own, ", "))
	case prov.Address != "" && !p.opts.AllowTemplateAddresses:
		return nil, fmt.Errorf("address %q: templates may not choose their own Prometheus here (prometheus.allowTemplateAddresses is off); name a configured provider instead (configured: %s)", prov.Address, p.names())
	case prov.Address != "":
		return nil, nil
	case prov.Name == "":
		c, ok := p.providers[DefaultProvider]
		if !ok {
			return nil, fmt.Errorf("the metric names no provider and no provider %q is configured (prometheus.address or prometheus.providers; configured: %s)", DefaultProvider, p.names())
		}
		return c, nil
	}
	c, ok := p.providers[prov.Name]
	if !ok {
		return nil, fmt.Errorf("prometheus provider %q is not configured (configured: %s)", prov.Name, p.names())
	}
	return c, nil
}

// ownSettings lists the fields of prov that describe a server of the
// template's own.
func ownSettings(prov *v1alpha1.PrometheusProvider) []string {
	var out []string
	for _, f := range []struct {
		name string
		set  bool
	}{{"auth", prov.Auth != nil}, {"tls", prov.TLS != nil}, {"headers", len(prov.Headers) > 0}, {"insecureSkipVerify", prov.InsecureSkipVerify}} {
		if f.set {
			out = append(out, f.name)
		}
	}
	return out
}

func (p *Measurer) names() string {
	if len(p.providers) == 0 {
		return "none"
	}
	return strings.Join(slices.Sorted(maps.Keys(p.providers)), ", ")
}

// CheckRun reports each metric of run whose provider this Measurer will
// not serve (a provider not configured, an address where template
// addresses are off), so that the run can fail as it starts instead of
// after its metrics' error limits. Credentials are not read here.
func (p *Measurer) CheckRun(run *v1alpha1.AnalysisRun) error {
	var problems []string
	for _, m := range run.Spec.Metrics {
		if m.Provider.Prometheus == nil {
			continue // analysis.Step reports it
		}
		if _, err := p.provider(m.Provider.Prometheus); err != nil {
			problems = append(problems, fmt.Sprintf("metric %s: %v", m.Name, err))
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}
