package gatewayapi

import (
	"testing"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// The publisher answers on the write only for a Rollout that names no
// route: a route's gateways answer later, in its status.
func TestAcknowledgesOnWriteWithoutRoutes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		routers []v1alpha1.Router
		want    bool
	}{
		{name: "Istio alone", want: true},
		{name: "an HTTPRoute", routers: []v1alpha1.Router{{HTTPRoute: &v1alpha1.GatewayRouteRef{Name: "web"}}}, want: false},
		{name: "a GRPCRoute beside Istio", routers: []v1alpha1.Router{{Istio: &v1alpha1.IstioRouter{}}, {GRPCRoute: &v1alpha1.GatewayRouteRef{Name: "rpc"}}}, want: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ro := &v1alpha1.Rollout{}
			ro.Spec.Service.Routers = tc.routers
			if got := (&Publisher{}).AcknowledgesOnWrite(ro); got != tc.want {
				t.Errorf("AcknowledgesOnWrite %v, want %v", got, tc.want)
			}
		})
	}
}
