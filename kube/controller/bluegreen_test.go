package controller

import (
	"context"
	"slices"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// blueGreenReviews is bookinfo's reviews Rollout released blue/green in
// controller mode: a preview for requests with x-preview: yes, pre- and
// post-promotion analysis, manual promotion, and the old revision kept
// 30 s after the switch.
func blueGreenReviews(ns string) *v1alpha1.Rollout {
	ro := bookinfoReviews(ns)
	analysis := &v1alpha1.AnalysisStep{Templates: []v1alpha1.TemplateRef{{Name: "success-rate"}}}
	ro.Spec.Strategy = v1alpha1.Strategy{BlueGreen: &v1alpha1.BlueGreenStrategy{
		Preview:               v1alpha1.PreviewSpec{Match: []v1alpha1.RouteMatch{{Headers: []v1alpha1.HeaderMatch{{Name: "x-preview", Exact: ptr.To("yes")}}}}},
		PrePromotionAnalysis:  analysis,
		PostPromotionAnalysis: analysis.DeepCopy(),
	}}
	ro.Spec.ScaleDownDelaySeconds = ptr.To[int32](30)
	return ro
}

// openRun is the AnalysisRun of kind still running.
func (h *harness) openRun(kind v1alpha1.AnalysisKind) *v1alpha1.AnalysisRun {
	h.t.Helper()
	for _, st := range h.ro.Status.Analysis {
		if st.Kind == kind && !st.Terminated {
			run := &v1alpha1.AnalysisRun{}
			if err := h.c.Get(context.Background(), types.NamespacedName{Namespace: h.key.Namespace, Name: st.Name}, run); err != nil {
				h.t.Fatalf("AnalysisRun %s: %v", st.Name, err)
			}
			return run
		}
	}
	h.t.Fatalf("no running %s analysis in status %+v", kind, h.ro.Status.Analysis)
	return nil
}

// TestBlueGreenInTheCluster is blue/green in controller mode, through the
// Istio writer: the new revision at full scale before its preview, the
// preview route for x-preview: yes only, pre-promotion analysis, the
// switch to 100% at promote with the old ReplicaSet still at full scale,
// then either post-promotion success (the old revision kept for the
// scale-down delay, then scaled to 0) or failure (everything back on the
// old revision, which never lost a replica; the new one scaled down).
func TestBlueGreenInTheCluster(t *testing.T) {
	for _, postFails := range []bool{false, true} {
		name := map[bool]string{false: "promoted, old revision kept for the scale-down delay", true: "post-promotion failure switches back"}[postFails]
		t.Run(name, func(t *testing.T) {
			h := harnessOf(t, blueGreenReviews)
			h.withIstio()
			h.drive("healthy on v1", healthy)
			v1 := h.ro.Status.StableRevision
			v2 := h.setImage("bookinfo/reviews:v3")

			h.drive("pre-promotion analysis on the preview", h.stepIs(1))
			h.wantReplicas(v2, 3) // full scale before the preview
			h.wantReplicas(v1, 3)
			vs, _ := h.istioObjects()
			if got, want := httpRoutes(vs), []string{"reviews-preview: x-preview=yes → canary=100", "reviews: → stable=100 canary=0"}; !slices.Equal(got, want) {
				t.Fatalf("VirtualService routes with the preview %v, want %v", got, want)
			}
			h.finishRun(h.openRun(v1alpha1.AnalysisPrePromotion), v1alpha1.AnalysisSuccessful, "")
			h.drive("waiting for promote", h.stepIs(2))
			if h.ro.Status.Phase != v1alpha1.PhasePaused {
				t.Fatalf("before promote: phase %s, want Paused", h.ro.Status.Phase)
			}
			h.wantCanaryWeight(0)

			h.command("promote-1", v1alpha1.CommandPromote)
			h.drive("switched, post-promotion analysis", h.stepIs(4))
			h.wantCanaryWeight(100)
			vs, _ = h.istioObjects()
			if got := httpRoutes(vs); !slices.Contains(got, "reviews: → stable=0 canary=100") {
				t.Fatalf("VirtualService routes after the switch %v, want all to the canary", got)
			}
			h.wantReplicas(v1, 3) // the way back stays open

			if postFails {
				h.finishRun(h.openRun(v1alpha1.AnalysisPostPromotion), v1alpha1.AnalysisFailed, "success-rate 0.91 < 0.99")
				h.mustReconcile()
				h.markAvailable()
				h.mustReconcile()
				st := h.ro.Status
				if st.Abort == nil || st.Abort.Reason != v1alpha1.ReasonAnalysisFailed || st.Phase != v1alpha1.PhaseDegraded || st.StableRevision != v1 {
					t.Fatalf("after the failed post-promotion run: phase %s, abort %+v, stable %s; want Degraded by %s on %s",
						st.Phase, st.Abort, st.StableRevision, v1alpha1.ReasonAnalysisFailed, v1)
				}
				h.wantCanaryWeight(0)
				vs, _ = h.istioObjects()
				if got := httpRoutes(vs); !slices.Equal(got, []string{"reviews: → stable=100"}) {
					t.Fatalf("VirtualService routes after switching back %v, want all to stable and no preview", got)
				}
				h.wantReplicas(v1, 3)
				h.wantReplicas(v2, 0)
				return
			}

			h.finishRun(h.openRun(v1alpha1.AnalysisPostPromotion), v1alpha1.AnalysisSuccessful, "")
			h.drive("promoted", healthy)
			if h.ro.Status.StableRevision != v2 {
				t.Fatalf("stable %s after promotion, want %s", h.ro.Status.StableRevision, v2)
			}
			sd := h.ro.Status.ScaleDown
			if sd == nil || sd.Revision != v1 || !sd.At.Time.Equal(h.now.Add(30*time.Second)) {
				t.Fatalf("status.scaleDown %+v, want %s at %s", sd, v1, h.now.Add(30*time.Second))
			}
			h.wantReplicas(v1, 3)
			h.now = h.now.Add(29 * time.Second)
			h.mustReconcile()
			h.wantReplicas(v1, 3) // still inside the delay
			h.now = h.now.Add(2 * time.Second)
			h.mustReconcile()
			h.wantReplicas(v1, 0)
			h.wantReplicas(v2, 3)
			if _, ok := h.ev.find("Normal ScaledDown"); !ok {
				t.Errorf("no ScaledDown event in %v", h.ev.all())
			}
		})
	}
}
