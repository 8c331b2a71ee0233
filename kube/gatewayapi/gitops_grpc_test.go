package gatewayapi

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/kube/workload"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// TestGitOpsApplyDoesNotFightGRPC is TestGitOpsApplyDoesNotFight for a
// GRPCRoute: mid-rollout the GitOps tool applies the route again with a
// new filter on an unmanaged rule and a changed filter on the managed
// one; Sluice answers with one write that keeps both, and from the GitOps
// apply to the end of quietWindow after that answer the spec is written
// once by each field manager, while the gateway keeps reporting status.
func TestGitOpsApplyDoesNotFightGRPC(t *testing.T) {
	c := env.Client(t)
	ns := kubetest.Namespace(t, c, "sluice-gw-gitops-grpc-")
	gitopsApply(t, c, userGRPCRoute(ns))
	key := client.ObjectKey{Namespace: ns, Name: "ratings"}
	router := v1alpha1.Router{GRPCRoute: &v1alpha1.GatewayRouteRef{Name: "ratings", Rules: []v1alpha1.GatewayRuleRef{{Name: "reads"}}}}
	ro := newRollout(ns, "ratings", "ratings:v1", 50051, router, setWeight(30), v1alpha1.CanaryStep{Pause: &v1alpha1.PauseStep{}})
	if err := c.Create(context.Background(), ro); err != nil {
		t.Fatal(err)
	}
	v1, _ := engine.DesiredRevision(&ro.Spec)

	api := runController(t, ns)
	chatty := playGateway(t, c, GRPCRoute, key)
	waitFor(t, "healthy", 20*time.Second, func() bool { return healthy(rolloutOf(t, c, ro)) })
	v2 := updateImage(t, c, ro, "ratings:v2")
	weighted := []string{
		fmt.Sprintf("%s:50051=70", workload.ServiceName("ratings", v1)),
		fmt.Sprintf("%s:50051=30", workload.ServiceName("ratings", v2)),
	}
	readsSends := func() bool {
		rules, err := rulesOf(routeOf(t, c, GRPCRoute, key))
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(rules, func(r rule) bool { return r.name() == "reads" })
		return i >= 0 && slices.Equal(grpcBackends(t, rules[i]), weighted)
	}
	waitFor(t, "paused at 30%", 20*time.Second, func() bool {
		st := rolloutOf(t, c, ro).Status
		return st.CurrentStepIndex != nil && *st.CurrentStepIndex == 1 && st.StepAcknowledgedAt != nil && readsSends()
	})

	edited := userGRPCRoute(ns)
	edited.Spec.Rules[2].Filters = append(edited.Spec.Rules[2].Filters, gatewayv1.GRPCRouteFilter{Type: gatewayv1.GRPCRouteFilterRequestHeaderModifier,
		RequestHeaderModifier: &gatewayv1.HTTPHeaderFilter{Set: []gatewayv1.HTTPHeader{{Name: "x-admin", Value: "1"}}}})
	edited.Spec.Rules[1].Filters[0].RequestHeaderModifier.Set[0].Value = "reads-v2"
	before := routeOf(t, c, GRPCRoute, key)
	rec := recordWrites(t, c, before)
	applied := api.applied.Load()
	gitopsApply(t, c, edited)
	waitFor(t, "the plan back in the route", 10*time.Second, readsSends)
	settled := routeOf(t, c, GRPCRoute, key)
	if g := settled.GetGeneration(); g != before.GetGeneration()+2 {
		t.Errorf("generation %d after the GitOps apply of generation %d: want exactly one write by Sluice after it", g, before.GetGeneration()+1)
	}
	twin := edited.DeepCopy()
	twin.Name = "ratings-as-declared"
	gitopsApply(t, c, twin)
	checkRawRoute(t, settled, routeOf(t, c, GRPCRoute, types.NamespacedName{Namespace: ns, Name: twin.Name}), "reads", weighted, "", nil)

	settle(api)
	checkNoFight(t, api, chatty, rec, applied)
}

// grpcBackends are a raw rule's backendRefs as name:port=weight.
func grpcBackends(t *testing.T, r rule) []string {
	t.Helper()
	var refs []gatewayv1.GRPCBackendRef
	if len(r["backendRefs"]) > 0 {
		if err := json.Unmarshal(r["backendRefs"], &refs); err != nil {
			t.Fatal(err)
		}
	}
	var out []string
	for _, b := range refs {
		w := int32(1)
		if b.Weight != nil {
			w = *b.Weight
		}
		port := int32(0)
		if b.Port != nil {
			port = int32(*b.Port)
		}
		out = append(out, fmt.Sprintf("%s:%d=%d", b.Name, port, w))
	}
	return out
}
