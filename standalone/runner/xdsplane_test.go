package runner

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/plan"
)

// The plane publishes when a plan or an endpoint changed, and only then:
// once per change, never through the endpoint source's signal as well.
func TestXDSPlanePublishesChangesOnly(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	x := newXDS(t)
	plane := NewXDSPlane(ctx, x.srv, x.eps)
	p := testPlan("reviews", "v1")

	steps := []struct {
		what      string
		endpoints []string // set before the plans, if any
		pushed    float64  // publishes that pushed a change so far
		unchanged float64  // publishes that found nothing to push so far
	}{
		{"first publish", []string{"10.0.0.1:80"}, 1, 0},
		{"the same plan", nil, 1, 0},
		{"the same plan on the same endpoints", []string{"10.0.0.1:80"}, 1, 0},
		{"the same plan on other endpoints", []string{"10.0.0.2:80"}, 2, 0},
		{"and again", []string{"10.0.0.2:80"}, 2, 0},
	}
	for _, st := range steps {
		if st.endpoints != nil {
			if err := plane.SetEndpoints("", "reviews", "v1", st.endpoints); err != nil {
				t.Fatal(err)
			}
			// Anything the endpoint source signalled would publish by now.
			time.Sleep(50 * time.Millisecond)
		}
		if err := plane.SetPlans(ctx, []plan.Plan{p}); err != nil {
			t.Fatal(err)
		}
		if got := publishCount(t, x.reg, "pushed"); got != st.pushed {
			t.Errorf("%s: %v publishes pushed a change, want %v", st.what, got, st.pushed)
		}
		if got := publishCount(t, x.reg, "unchanged"); got != st.unchanged {
			t.Errorf("%s: %v publishes found nothing to push, want %v", st.what, got, st.unchanged)
		}
	}
}

// Observe answers from what it learnt until the server's status moves:
// a publish (or a proxy's answer) gives the next Observe the new state.
func TestXDSPlaneObserveFollowsTheServer(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	x := newXDS(t)
	plane := NewXDSPlane(ctx, x.srv, x.eps)
	plane.AckWithoutClients = true
	p := testPlan("reviews", "v1")
	for range 2 {
		if dp := plane.Observe(p); dp.State == engine.AckAcknowledged {
			t.Fatalf("before the publish: %+v", dp)
		}
	}
	if err := plane.SetPlans(ctx, []plan.Plan{p}); err != nil {
		t.Fatal(err)
	}
	if dp := plane.Observe(p); dp.State != engine.AckAcknowledged {
		t.Fatalf("after the publish, with no client subscribed: %+v, want acknowledged", dp)
	}
}

// testPlan is 100% of service to its stable revision.
func testPlan(service, revision string) plan.Plan {
	p := plan.Plan{Service: service,
		Subsets: []plan.Subset{{Name: plan.Stable, Revision: revision}},
		Hosts: []plan.Host{{Name: service, Port: 9080, Routes: []plan.Route{{
			Name: "primary", Destinations: []plan.Destination{{Subset: plan.Stable, Weight: 100}}}}}}}
	p.Seal()
	return p
}

// publishCount is the xDS server's count of publishes with one result
// ("pushed", "unchanged", "error"), or with any for "".
func publishCount(tb testing.TB, reg *prometheus.Registry, result string) float64 {
	tb.Helper()
	families, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	total := 0.0
	for _, f := range families {
		if f.GetName() != "sluice_xds_publishes_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && (result == "" || l.GetValue() == result) {
					total += m.GetCounter().GetValue()
				}
			}
		}
	}
	return total
}
