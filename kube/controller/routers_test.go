package controller

import (
	"context"
	"errors"
	"testing"

	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// answer is an Acknowledger that always says the same.
type answer struct {
	dp  engine.DataPlane
	err error
}

func (a answer) Acknowledgement(_ context.Context, _ *v1alpha1.Rollout, v string) (engine.DataPlane, error) {
	dp := a.dp
	dp.Version = v
	return dp, a.err
}

func TestAcknowledgers(t *testing.T) {
	ack := answer{dp: engine.DataPlane{State: engine.AckAcknowledged}}
	pending := answer{dp: engine.DataPlane{State: engine.AckPending}}
	nack := func(msg string) answer { return answer{dp: engine.DataPlane{State: engine.AckRejected, Message: msg}} }
	silent := engine.SilentNode{Name: "node-a"}
	proxies := answer{dp: engine.DataPlane{State: engine.AckPending, Subscribed: 3, Acked: 2, Silent: []engine.SilentNode{silent}}}
	failing := answer{err: errors.New("cache not synced")}
	for _, tc := range []struct {
		name string
		as   Acknowledgers
		want engine.DataPlane
		err  bool
	}{
		{"all acknowledge", Acknowledgers{ack, ack}, engine.DataPlane{State: engine.AckAcknowledged}, false},
		{"one pending", Acknowledgers{ack, pending}, engine.DataPlane{State: engine.AckPending}, false},
		{"rejections joined, over pending and errors", Acknowledgers{nack("a"), pending, failing, nack("b")},
			engine.DataPlane{State: engine.AckRejected, Message: "a; b"}, false},
		{"an error leaves it pending", Acknowledgers{ack, failing}, engine.DataPlane{State: engine.AckPending}, true},
		{"silent proxies reach the engine", Acknowledgers{proxies, ack},
			engine.DataPlane{State: engine.AckPending, Subscribed: 3, Acked: 2, Silent: []engine.SilentNode{silent}}, false},
		// The gateway holds the step: silent proxies must not let the
		// engine count it without them (and without the gateway).
		{"a router's pending hides them", Acknowledgers{proxies, pending}, engine.DataPlane{State: engine.AckPending}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.as.Acknowledgement(context.Background(), &v1alpha1.Rollout{}, "v1")
			tc.want.Version = "v1"
			if (err != nil) != tc.err {
				t.Fatalf("error %v, want error %v", err, tc.err)
			}
			if got.State != tc.want.State || got.Message != tc.want.Message || got.Subscribed != tc.want.Subscribed ||
				got.Acked != tc.want.Acked || len(got.Silent) != len(tc.want.Silent) || got.Version != "v1" {
				t.Errorf("answer %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestForRouter(t *testing.T) {
	gatewayOnly := &v1alpha1.Rollout{}
	gatewayOnly.Name = "gateway-only"
	gatewayOnly.Spec.Service.Routers = []v1alpha1.Router{{HTTPRoute: &v1alpha1.GatewayRouteRef{Name: "r"}}}
	both := gatewayOnly.DeepCopy()
	both.Name = "both"
	both.Spec.Service.Routers = append(both.Spec.Service.Routers, v1alpha1.Router{Istio: &v1alpha1.IstioRouter{}})
	for _, tc := range []struct {
		ro   *v1alpha1.Rollout
		want bool
	}{{&v1alpha1.Rollout{}, true}, {gatewayOnly, false}, {both, true}} {
		if got := UsesIstio(tc.ro); got != tc.want {
			t.Errorf("UsesIstio(routers %d) = %v, want %v", len(tc.ro.Spec.Service.Routers), got, tc.want)
		}
	}
	var published int
	p := NewAcceptedOnWrite(ForRouter{Uses: UsesIstio, Publisher: PublisherFunc(func(context.Context, *v1alpha1.Rollout, plan.Plan) error {
		published++
		return nil
	})})
	for _, ro := range []*v1alpha1.Rollout{gatewayOnly, both} {
		if err := p.Publish(context.Background(), ro, plan.Plan{Version: "v1"}); err != nil {
			t.Fatal(err)
		}
		if dp, _ := p.Acknowledgement(context.Background(), ro, "v1"); dp.State != engine.AckAcknowledged {
			t.Errorf("%d routers: %s, want acknowledged", len(ro.Spec.Service.Routers), dp.State)
		}
	}
	if published != 1 {
		t.Errorf("the Istio publisher ran %d times, want once: for the Rollout with an istio router only", published)
	}
}
