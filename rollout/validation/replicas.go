package validation

import (
	"fmt"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// The replicas router (spec.service.routers: [{replicas: {}}]) is no router
// at all: one Service selects the pods of both revisions, so the canary's
// share of the traffic is its share of the pods. This file holds the one
// rounding rule the engine scales by and `sluice validate` warns about,
// and what the router refuses.

// ReplicasRouter reports whether the spec routes with the replicas router,
// which stands alone (validateRouters refuses it beside others).
func ReplicasRouter(s *v1alpha1.RolloutSpec) bool { return s.Service.UsesReplicas() }

// ReplicaSplit is how the replicas router runs a canary weight with
// spec.replicas pods: the canary gets replicas × weight / 100 pods, rounded
// to the nearest (halves up), but at least one once the weight is above 0
// and at most replicas − 1 below 100, so neither revision is left without
// pods before promotion; stable gets the rest. With one replica, any
// weight between 0 and 100 runs one pod of each (50%). Weight 0 runs no
// canary pod (any pod would get requests), 100 runs no stable pod.
func ReplicaSplit(replicas, weight int32) (canary, stable int32) {
	r := max(replicas, 0)
	switch {
	case r == 0:
		return 0, 0
	case weight <= 0:
		return 0, r
	case weight >= 100:
		return r, 0
	}
	c := min(max((r*weight+50)/100, 1), max(r-1, 1))
	return c, max(r-c, 1)
}

// AchievedWeight is the canary's share of the pods in percent, rounded to
// the nearest (halves up): the weight the replicas router really runs.
func AchievedWeight(canary, stable int32) int32 {
	if canary+stable <= 0 {
		return 0
	}
	return (200*canary + canary + stable) / (2 * (canary + stable))
}

// ExactReplicas is the least replica count, at least replicas, with which
// the replicas router runs weight exactly.
func ExactReplicas(replicas, weight int32) int32 {
	if weight <= 0 || weight >= 100 {
		return max(replicas, 1)
	}
	step := 100 / gcd(weight, 100)
	return max((replicas+step-1)/step*step, step)
}

func gcd(a, b int32) int32 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// Messages of what the replicas router refuses: a Service spreads
// connections over every pod it selects and knows nothing of requests.
const (
	msgReplicasRoutes   = "the replicas router splits traffic by pod counts behind one Service, which cannot send matching requests to one revision; use setWeight steps, or a router (istio, httpRoute, grpcRoute) for header routes"
	msgReplicasMirror   = "the replicas router splits traffic by pod counts behind one Service, which cannot copy requests; mirroring needs a router (istio)"
	msgReplicasRevision = "the replicas router runs the stable and canary revisions behind one Service: an extra revision's pods would be selected by it too and take a share of every request; extra revisions need a router"
	msgReplicasPreview  = "a preview sends matching requests or hosts to the new revision, which pod counts behind one Service cannot express; use a canary strategy, or a router for blue/green"
	msgReplicasDark     = "a dark release sends matching requests to the new revision, which pod counts behind one Service cannot express; use a canary strategy, or a router for dark releases"
	msgReplicasAffinity = "a Service spreads connections over the pods of both revisions: sessions cannot be pinned to one with the replicas router"
	msgReplicasPolicy   = "timeouts, retries and faults are carried onto the routes a router writes; the replicas router writes none, so they would never apply"
	msgReplicasIstio    = "the replicas router writes no Istio objects; remove it, or route with the istio router"
	msgReplicasLabels   = "with the replicas router the Service named spec.service.name selects the pods of both revisions by the template's labels (the pods of each carry them, plus their revision's)"
)

// validateReplicasRouter refuses, with the replicas router, every setting
// that replica counts cannot express, each at its own field.
func validateReplicasRouter(s *v1alpha1.RolloutSpec, p *field.Path) field.ErrorList {
	if !ReplicasRouter(s) {
		return nil
	}
	var errs field.ErrorList
	if s.Template != nil && len(s.Template.Labels) == 0 {
		errs = append(errs, field.Required(p.Child("template", "metadata", "labels"), msgReplicasLabels))
	}
	sp := p.Child("service")
	if s.Service.VirtualService != nil {
		errs = append(errs, field.Forbidden(sp.Child("virtualService"), msgReplicasIstio))
	}
	if s.Service.DestinationRule != nil {
		errs = append(errs, field.Forbidden(sp.Child("destinationRule"), msgReplicasIstio))
	}
	if s.Service.Policy != nil {
		errs = append(errs, field.Forbidden(sp.Child("policy"), msgReplicasPolicy))
	}
	if s.Service.SessionAffinity != nil {
		errs = append(errs, field.Forbidden(sp.Child("sessionAffinity"), msgReplicasAffinity))
	}
	st, stp := &s.Strategy, p.Child("strategy")
	if st.BlueGreen != nil {
		errs = append(errs, field.Forbidden(stp.Child("blueGreen", "preview"), msgReplicasPreview))
	}
	if st.DarkRelease != nil {
		errs = append(errs, field.Forbidden(stp.Child("darkRelease", "match"), msgReplicasDark))
	}
	if st.Canary != nil {
		for i, step := range st.Canary.Steps {
			ip := stp.Child("canary", "steps").Index(i)
			switch {
			case step.SetHeaderRoute != nil:
				errs = append(errs, field.Forbidden(ip.Child("setHeaderRoute"), msgReplicasRoutes))
			case step.SetMirror != nil:
				errs = append(errs, field.Forbidden(ip.Child("setMirror"), msgReplicasMirror))
			case step.SetRevision != nil:
				errs = append(errs, field.Forbidden(ip.Child("setRevision"), msgReplicasRevision))
			}
		}
	}
	return errs
}

// replicasWarnings warns at each setWeight step that spec.replicas cannot
// run exactly with the replicas router, naming the weight it runs instead.
func replicasWarnings(s *v1alpha1.RolloutSpec, p *field.Path) []Warning {
	if !ReplicasRouter(s) || s.Replicas == nil || s.Strategy.Canary == nil {
		return nil
	}
	r := *s.Replicas
	var ws []Warning
	for i, step := range s.Strategy.Canary.Steps {
		if step.SetWeight == nil {
			continue
		}
		w := *step.SetWeight
		c, st := ReplicaSplit(r, w)
		got := AchievedWeight(c, st)
		if got == w {
			continue
		}
		msg := fmt.Sprintf("setWeight %d with spec.replicas %d runs %d canary and %d stable pods: %d%% of the traffic, not %d%% "+
			"(the replicas router approximates weights by pod counts)", w, r, c, st, got, w)
		if n := ExactReplicas(r, w); n != r {
			msg += fmt.Sprintf("; %d replicas would run it exactly", n)
		}
		ws = append(ws, Warning{Field: p.Index(i).Child("setWeight").String(), Message: msg})
	}
	return ws
}
