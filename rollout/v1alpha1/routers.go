package v1alpha1

// The router kinds a spec uses, answered once for the engine, the
// validation and the controller. No routers means Istio alone, as before
// routers existed.

// UsesIstio reports whether the plan is written to Istio.
func (s *ServiceSpec) UsesIstio() bool {
	if len(s.Routers) == 0 {
		return true
	}
	for _, r := range s.Routers {
		if r.Istio != nil {
			return true
		}
	}
	return false
}

// UsesGatewayAPI reports whether the plan is written to a Gateway API
// route (HTTPRoute or GRPCRoute).
func (s *ServiceSpec) UsesGatewayAPI() bool {
	for _, r := range s.Routers {
		if r.HTTPRoute != nil || r.GRPCRoute != nil {
			return true
		}
	}
	return false
}

// UsesReplicas reports whether the spec has no router but replica counts:
// a single replicas router and nothing else.
func (s *ServiceSpec) UsesReplicas() bool {
	if len(s.Routers) != 1 {
		return false
	}
	r := s.Routers[0]
	return r.Replicas != nil && r.Istio == nil && r.HTTPRoute == nil && r.GRPCRoute == nil
}
