package xdsplane

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/xds"
)

// BenchmarkWave publishes a weight change of every one of 1,000 Rollouts
// from 10 workers at once, as the controller's reconcilers do when one
// commit moves them all: each op is one wave. publishes/wave counts the
// server's publishes of the whole set. No xDS client is connected:
// "whole" builds every publish's snapshots, "staged" is the controller's
// server (xds.Options.StageWithoutClients), which only checks them.
//
//	go test -run '^$' -bench Wave -benchtime 5x ./kube/xdsplane/
func BenchmarkWave(b *testing.B) {
	for _, stage := range []bool{false, true} {
		name := "whole"
		if stage {
			name = "staged"
		}
		b.Run(name, func(b *testing.B) { benchWave(b, stage) })
	}
}

func benchWave(b *testing.B, stage bool) {
	const rollouts, workers = 1000, 10
	reg := prometheus.NewRegistry()
	srv, err := xds.New(xds.Options{Logger: quiet, Registerer: reg, StageWithoutClients: stage})
	if err != nil {
		b.Fatal(err)
	}
	pl := NewPlane(b.Context(), srv, Options{AckWithoutClients: true})
	ctx := context.Background()
	ros := make([]*v1alpha1.Rollout, rollouts)
	plans := make([][2]plan.Plan, rollouts)
	for i := range rollouts {
		name := fmt.Sprintf("svc-%04d", i)
		ro, p30 := rolloutAt(b, "shop", name, name, 30, "1")
		_, p80 := rolloutAt(b, "shop", name, name, 80, "1")
		ros[i], plans[i] = ro, [2]plan.Plan{p30, p80}
		if err := pl.Publish(ctx, ro, p30); err != nil {
			b.Fatal(err)
		}
	}
	publishes := func() float64 {
		mfs, err := reg.Gather()
		if err != nil {
			b.Fatal(err)
		}
		total := 0.0
		for _, mf := range mfs {
			if mf.GetName() == "sluice_xds_publishes_total" {
				for _, m := range mf.GetMetric() {
					total += m.GetCounter().GetValue()
				}
			}
		}
		return total
	}
	before := publishes()
	b.ResetTimer()
	for n := range b.N {
		rv := strconv.Itoa(n + 2)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := w; i < rollouts; i += workers {
					ro := ros[i].DeepCopy()
					ro.ResourceVersion = rv
					if err := pl.Publish(ctx, ro, plans[i][(n+1)%2]); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
	}
	b.StopTimer()
	b.ReportMetric((publishes()-before)/float64(b.N), "publishes/wave")
}
