package engine

import (
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// BenchmarkStep is one Step of a controller-mode canary in the states a
// reconcile meets most: waiting for the data plane, inside an acknowledged
// pause, and held by the readiness gate. ns/op is the engine's share of a
// reconcile.
//
//	go test ./rollout/engine -run '^$' -bench Step -benchmem
func BenchmarkStep(b *testing.B) {
	steps := []v1alpha1.CanaryStep{simWeight(10), simPause(time.Minute), simWeight(50), simPause(time.Minute), simWeight(80)}
	ready, short := &Workload{StableAvailable: 10, CanaryAvailable: 10}, &Workload{StableAvailable: 10, CanaryAvailable: 1}
	// at is the Rollout at 10% in its 1 min pause, then the pause's end
	// observed with w (10 of 10 available: 50% published; 1 of 10: 50%
	// held back), then acks more Steps with all replicas available.
	at := func(b *testing.B, w *Workload, acks int) *repro {
		t := &testing.T{}
		r := newRepro(t, v1alpha1.Strategy{Canary: &v1alpha1.CanaryStrategy{Steps: steps}}).controller(10)
		r.step(Observations{Workload: ready})
		r.pushTemplate("v2")
		r.step(Observations{Workload: ready})
		r.step(r.with(r.ack(), ready))
		r.step(r.with(r.ack(), ready))
		r.later(time.Minute).step(r.with(r.ack(), w))
		for range acks {
			r.later(time.Second).step(r.with(r.ack(), ready))
		}
		return r
	}
	cases := []struct {
		name string
		w    *Workload
		acks int
		want string // in the status message
		obs  func(r *repro) Observations
	}{
		{"waiting-for-ack", ready, 0, "waiting for the data plane", func(r *repro) Observations { return Observations{Workload: ready} }},
		{"acknowledged-pause", ready, 1, "left", func(r *repro) Observations { return r.with(r.ack(), ready) }},
		{"held-for-readiness", short, 0, "waiting for canary replicas", func(r *repro) Observations { return Observations{Workload: short} }},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			r := at(b, tc.w, tc.acks)
			if !strings.Contains(r.ro.Status.Message, tc.want) {
				b.Fatalf("setup: %s %q, want %q", r.ro.Status.Phase, r.ro.Status.Message, tc.want)
			}
			in := Input{Rollout: r.ro.DeepCopy(), Observations: tc.obs(r), Now: r.now.Add(time.Second)}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Step(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
