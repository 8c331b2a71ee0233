package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/kube/istio"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// What AcceptedOnWrite makes of each outcome of the write it wraps: an
// accepted write acknowledges, a refusal of the content rejects with the
// reason and is no publish failure, anything else fails the publish and
// leaves the version pending.
func TestAcceptedOnWrite(t *testing.T) {
	t.Parallel()
	refused := &istio.RejectedError{Err: errors.New(`no HTTP route named "primary" in VirtualService shop/reviews`)}
	tests := []struct {
		name       string
		writeErr   error
		wantErr    bool
		want       engine.AckState
		wantReason string
	}{
		{"accepted", nil, false, engine.AckAcknowledged, ""},
		{"refused for its content", fmt.Errorf("writing plan to Istio: %w", refused), false, engine.AckRejected, `no HTTP route named "primary"`},
		{"API server unreachable", errors.New("connection refused"), true, engine.AckPending, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := NewAcceptedOnWrite(PublisherFunc(func(context.Context, *v1alpha1.Rollout, plan.Plan) error { return tc.writeErr }))
			ro := newRollout("shop", "reviews", "reviews:v1")
			p := plan.Plan{Namespace: "shop", Service: "reviews"}
			p.Seal()
			err := a.Publish(context.Background(), ro, p)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Publish: %v, want error %v", err, tc.wantErr)
			}
			dp, err := a.Acknowledgement(context.Background(), ro, p.Version)
			if err != nil {
				t.Fatal(err)
			}
			if dp.Version != p.Version || dp.State != tc.want || !strings.Contains(dp.Message, tc.wantReason) {
				t.Errorf("acknowledgement %+v, want %q for %s with a message containing %q", dp, tc.want, p.Version, tc.wantReason)
			}
			if dp, _ := a.Acknowledgement(context.Background(), ro, "0123456789abcdef"); dp.State != engine.AckPending {
				t.Errorf("a version never written: %+v, want pending", dp)
			}
		})
	}
}

// A plan the Istio writer refuses (here: any plan sending 50% to the
// canary) is a NACK for the engine: the next reconcile acts on
// spec.rollback.onNack with the reason in status, and no reconcile fails
// with PublishFailed.
func TestIstioRefusalActsLikeANack(t *testing.T) {
	for _, onNack := range []v1alpha1.FailureAction{v1alpha1.ActionAbort, v1alpha1.ActionPause} {
		t.Run(string(onNack), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, setWeight(10), setWeight(50), pauseUntilPromoted())
			h.refresh()
			h.ro.Spec.Rollback.OnNack = onNack
			if err := h.c.Update(context.Background(), h.ro); err != nil {
				t.Fatal(err)
			}
			const reason = "http route primary: weights do not fit the declared routes"
			writes := 0
			istioWriter := NewAcceptedOnWrite(PublisherFunc(func(_ context.Context, _ *v1alpha1.Rollout, p plan.Plan) error {
				writes++
				if p.Hosts[0].Weight(plan.Canary) == 50 {
					return fmt.Errorf("writing plan %s to Istio: %w", p.Version, &istio.RejectedError{Err: errors.New(reason)})
				}
				return nil
			}))
			h.r.Publisher, h.r.Acknowledger = Publishers{istioWriter, h.plane}, istioWriter

			h.drive("healthy on v1", healthy)
			h.setImage("checkout:v2")
			h.drive("refused at 50%", func(ro *v1alpha1.Rollout) bool { return ro.Status.Traffic.Rejection != "" })
			st := h.ro.Status
			if st.CurrentStepIndex == nil || *st.CurrentStepIndex != 1 {
				t.Errorf("refused at step %s, want the 50%% step (2/4)", st.StepDisplay)
			}
			if !strings.Contains(st.Traffic.Rejection, reason) {
				t.Errorf("status.traffic.rejection %q, want the writer's reason", st.Traffic.Rejection)
			}
			switch onNack {
			case v1alpha1.ActionAbort:
				if st.Phase != v1alpha1.PhaseDegraded || st.Abort == nil || st.Abort.Reason != v1alpha1.ReasonNack || !strings.Contains(st.Abort.Message, reason) {
					t.Errorf("phase %s, abort %+v; want Degraded by %s with the reason", st.Phase, st.Abort, v1alpha1.ReasonNack)
				}
				if w := h.plan().Hosts[0].Weight(plan.Canary); w != 0 {
					t.Errorf("after the abort the canary gets %d%%, want 0", w)
				}
			case v1alpha1.ActionPause:
				if st.Phase != v1alpha1.PhasePaused {
					t.Errorf("phase %s, want Paused", st.Phase)
				}
			}
			// Later reconciles write again (the declarations may have
			// changed) and never fail for the refusal.
			before := writes
			h.mustReconcile()
			h.mustReconcile()
			if writes == before {
				t.Error("no write after the refusal")
			}
			if c := findCondition(h.ro, ConditionReconciled); c == nil || c.Status != metav1.ConditionTrue {
				t.Errorf("Reconciled condition %+v, want True: a refusal is the data plane's answer, not a failed publish", c)
			}
			if _, ok := h.ev.find("Warning " + v1alpha1.ReasonNack); !ok {
				t.Errorf("no Warning %s event in %v", v1alpha1.ReasonNack, h.ev.all())
			}
		})
	}
}
