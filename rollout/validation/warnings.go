package validation

import (
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Warning is a setting that is valid but does not do everything its author
// may expect on every data plane. `sluice validate` prints warnings without
// failing; they never reject a commit.
type Warning struct {
	// Field is the path of the setting, e.g.
	// spec.strategy.canary.steps[4].setMirror.
	Field string
	// Message says what does not happen, and where.
	Message string
}

// MirrorWarning is the warning of a setMirror step: proxyless gRPC clients
// have no request mirroring, so the xDS translator sends them none
// (docs/xds.md, "What proxyless gRPC does not get").
const MirrorWarning = "mirroring is done by Envoy (Sluice's xDS, Istio sidecars, Gateway API gateways) only: proxyless gRPC clients are sent no mirror policy, " +
	"so their requests are never copied to the canary and an analysis of mirrored traffic sees none of them"

// Affinity warnings: where a session key cannot pin a session
// (docs/api.md, SessionAffinity, "What each data plane gives").
const (
	CookieAffinityGRPCWarning = "proxyless gRPC clients send no cookies and ignore cookie hash policies: their RPCs follow the weights but no session is pinned; " +
		"use sessionAffinity.header for gRPC clients"
	HeaderAffinityIstioWarning = "through Istio sidecars (the VirtualService Sluice writes in controller mode) weights are applied before any hash (istio#9764): " +
		"sessions are not pinned; they are for Envoy and proxyless gRPC clients of Sluice's xDS"
	CookieAffinityIstioWarning = "through Istio sidecars (the VirtualService Sluice writes in controller mode) only users drawn for the canary are pinned " +
		"(the canary sets the cookie to its revision); users drawn for stable are drawn again at every request"
)

// RolloutWarnings lists the warnings of a Rollout, in field order: the
// affinity and mirror warnings above, and the setWeight steps the replicas
// router cannot run exactly with spec.replicas (replicas.go).
func RolloutWarnings(r *v1alpha1.Rollout) []Warning {
	var ws []Warning
	if a := r.Spec.Service.SessionAffinity; a != nil {
		ap := field.NewPath("spec", "service", "sessionAffinity")
		istio := r.Spec.Template != nil && r.Spec.Service.UsesIstio()
		switch {
		case a.Cookie != nil:
			ws = append(ws, Warning{Field: ap.Child("cookie").String(), Message: CookieAffinityGRPCWarning})
			if istio {
				ws = append(ws, Warning{Field: ap.Child("cookie").String(), Message: CookieAffinityIstioWarning})
			}
		case a.Header != nil && istio:
			ws = append(ws, Warning{Field: ap.Child("header").String(), Message: HeaderAffinityIstioWarning})
		}
	}
	ws = append(ws, gatewayWarnings(&r.Spec)...)
	p := field.NewPath("spec", "strategy")
	if c := r.Spec.Strategy.Canary; c != nil {
		ws = append(ws, mirrorWarnings(p.Child("canary", "steps"), c.Steps)...)
		ws = append(ws, replicasWarnings(&r.Spec, p.Child("canary", "steps"))...)
	}
	if d := r.Spec.Strategy.DarkRelease; d != nil {
		ws = append(ws, mirrorWarnings(p.Child("darkRelease", "steps"), d.Steps)...)
	}
	return ws
}

// mirrorWarnings warns at each step that mirrors a share of requests; a
// step setting the mirror to 0 removes it and needs no warning.
func mirrorWarnings(p *field.Path, steps []v1alpha1.CanaryStep) []Warning {
	var ws []Warning
	for i, s := range steps {
		if m := s.SetMirror; m != nil && m.Percent > 0 {
			ws = append(ws, Warning{Field: p.Index(i).Child("setMirror").String(), Message: MirrorWarning})
		}
	}
	return ws
}
