package istio

import (
	"strings"
	"testing"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/sluicehq/sluice/rollout/plan"
)

const revC = "rev-c" // an extra revision

// jasonPlan is bookinfo's reviews during a rollout with an extra
// revision: stable and canary at 50/50, end-user jason on the extra
// revision "jason", as the engine plans it (its subset at 0 in the
// weighted route).
func jasonPlan() plan.Plan {
	p := plan.Plan{Service: "reviews", Namespace: ns, Subsets: []plan.Subset{
		{Name: plan.Stable, Revision: revA}, {Name: plan.Canary, Revision: revB}, {Name: "jason", Revision: revC}}}
	toJason := route("revision-jason", dest("jason", 100))
	toJason.Match = []plan.Match{{Headers: []plan.HeaderMatch{{Name: "end-user", Kind: plan.HeaderExact, Value: "jason"}}}}
	p.Hosts = []plan.Host{{Name: "reviews", Port: 9080, Routes: []plan.Route{
		toJason, route("primary", dest(plan.Stable, 50), dest(plan.Canary, 50), dest("jason", 0))}}}
	p.Seal()
	return p
}

// An extra revision's subset goes into the DestinationRule next to stable
// and canary, selecting its revision, and its match route ahead of the
// weighted one; once the plan drops it, the subset goes too, also when
// the write is based on the live object, and a subset of that name that
// Git declares gets Git's version back.
func TestExtraRevisionSubsets(t *testing.T) {
	t.Parallel()
	declaredDR := drYAML(t, bookinfoDR)
	declaredDR.Spec.Subsets = append(declaredDR.Spec.Subsets, &networking.Subset{Name: "ratings", Labels: map[string]string{"version": "v9"}})
	in := func(p plan.Plan) Input {
		return Input{Plan: p, VirtualService: vsYAML(t, bookinfoVS), Routes: []string{"reviews"}, DestinationRule: declaredDR}
	}
	first, err := Render(in(jasonPlan()), Live{})
	if err != nil {
		t.Fatal(err)
	}
	// Git's debug route stays as declared; jason's route goes ahead of
	// the split, which gives his subset nothing.
	vs := &first.VirtualService.Spec
	if got, want := routeJSON(t, vs.Http[0]), routeJSON(t, vsYAML(t, bookinfoVS).Spec.Http[0]); got != want {
		t.Errorf("debug route %s, want it as declared: %s", got, want)
	}
	equalSpec(t, &networking.VirtualService{Hosts: vs.Hosts, Http: vs.Http[1:]}, httpYAML("[reviews]", `
- name: reviews-revision-jason
  match: [{headers: {end-user: {exact: jason}}}]
  route: [{destination: {host: reviews, subset: jason}, weight: 100}]
- name: reviews
  route:
  - {destination: {host: reviews, subset: stable}, weight: 50}
  - {destination: {host: reviews, subset: canary}, weight: 50}
  - {destination: {host: reviews, subset: jason}}
`))
	equalSpec(t, &first.DestinationRule.Spec, reviewsDR("v1", `
- {name: canary, labels: {sluice.dev/revision: rev-b}}
- {name: ratings, labels: {version: v9}}
- {name: jason, labels: {sluice.dev/revision: rev-c}}
`))
	if got := first.DestinationRule.Annotations[AnnotationExtraSubsets]; got != `["jason"]` {
		t.Errorf("%s = %q, want [\"jason\"]", AnnotationExtraSubsets, got)
	}

	// Someone edits v1; the rollout is aborted: all to stable, no jason.
	live := written(first, "7")
	live.DestinationRule.Spec.Subsets[0].Labels = map[string]string{"version": "v1-patched"}
	next, err := Render(in(stableOnly("reviews")), live)
	if err != nil {
		t.Fatal(err)
	}
	if next.DestinationRule.ResourceVersion != "7" {
		t.Fatalf("the write is not based on the live object (resourceVersion %q)", next.DestinationRule.ResourceVersion)
	}
	equalSpec(t, &next.DestinationRule.Spec, reviewsDR("v1-patched", `
- {name: canary, labels: {sluice.dev/revision: rev-a}}
- {name: ratings, labels: {version: v9}}
`))
	if _, ok := next.DestinationRule.Annotations[AnnotationExtraSubsets]; ok {
		t.Error("the extra-subsets record outlived the extra subsets")
	}
	if findRoute(next.VirtualService.Spec.Http, "reviews-revision-jason") != nil {
		t.Error("jason's route outlived his revision")
	}

	// Git declares a subset named like the extra revision: the plan's
	// selects the extra revision while it runs, Git's is back after.
	declaredDR.Spec.Subsets = append(declaredDR.Spec.Subsets, &networking.Subset{Name: "jason", Labels: map[string]string{"version": "v2"}})
	first, err = Render(in(jasonPlan()), Live{})
	if err != nil {
		t.Fatal(err)
	}
	if got := subsetLabels(first.DestinationRule.Spec.Subsets, "jason"); got["sluice.dev/revision"] != revC || len(got) != 1 {
		t.Errorf("while jason runs his subset selects %v, want only the extra revision", got)
	}
	next, err = Render(in(stableOnly("reviews")), written(first, "8"))
	if err != nil {
		t.Fatal(err)
	}
	if got := subsetLabels(next.DestinationRule.Spec.Subsets, "jason"); got["version"] != "v2" || len(got) != 1 {
		t.Errorf("after jason's revision: subset jason selects %v, want Git's version: v2", got)
	}
}

// reviewsDR is bookinfoDR's spec as rendered: v1's labels, the stable
// subset with its traffic policy, then the subsets given.
func reviewsDR(v1, subsets string) string {
	return `
host: reviews
trafficPolicy:
  loadBalancer: {simple: LEAST_REQUEST}
subsets:
- {name: v1, labels: {version: ` + v1 + `}}
- name: stable
  labels: {sluice.dev/revision: rev-a}
  trafficPolicy:
    connectionPool:
      http: {http1MaxPendingRequests: 10}
` + strings.TrimLeft(subsets, "\n")
}

// With nothing declared, Sluice's own DestinationRule has the extra
// subset after stable and canary, and loses it with the plan's.
func TestExtraRevisionSubsetsOwned(t *testing.T) {
	t.Parallel()
	d, err := Render(Input{Plan: jasonPlan()}, Live{})
	if err != nil {
		t.Fatal(err)
	}
	equalSpec(t, &d.DestinationRule.Spec, `
host: reviews.bookinfo.svc.cluster.local
subsets:
- {name: stable, labels: {sluice.dev/revision: rev-a}}
- {name: canary, labels: {sluice.dev/revision: rev-b}}
- {name: jason, labels: {sluice.dev/revision: rev-c}}
`)
	live := written(d, "3")
	d, err = Render(Input{Plan: stableOnly("reviews")}, live)
	if err != nil {
		t.Fatal(err)
	}
	if got := subsetLabels(d.DestinationRule.Spec.Subsets, "jason"); got != nil {
		t.Errorf("after jason's revision his subset selects %v, want no subset", got)
	}
}

func subsetLabels(subsets []*networking.Subset, name string) map[string]string {
	for _, s := range subsets {
		if s.Name == name {
			return s.Labels
		}
	}
	return nil
}

// The objects that hold an extra revision carry the Rollout's Git
// provenance and plan version, as they do for the canary, and keep it
// when the plan drops the revision.
func TestExtraRevisionProvenance(t *testing.T) {
	t.Parallel()
	prov := map[string]string{"sluice.dev/git-commit": "0123abcd", "sluice.dev/git-path": "apps/reviews.yaml"}
	p := jasonPlan()
	d, err := Render(Input{Plan: p, Annotations: prov}, Live{})
	if err != nil {
		t.Fatal(err)
	}
	if subsetLabels(d.DestinationRule.Spec.Subsets, "jason") == nil {
		t.Fatal("no subset jason")
	}
	after, err := Render(Input{Plan: stableOnly("reviews"), Annotations: map[string]string{"sluice.dev/git-commit": "4567cdef"}}, written(d, "4"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		what   string
		d      *Desired
		commit string
	}{{"with jason", d, "0123abcd"}, {"after jason", after, "4567cdef"}} {
		for _, m := range []interface {
			GetName() string
			GetAnnotations() map[string]string
		}{c.d.VirtualService, c.d.DestinationRule} {
			if a := m.GetAnnotations(); a["sluice.dev/git-commit"] != c.commit || a[AnnotationPlanVersion] == "" {
				t.Errorf("%s: %s annotations %v, want commit %s and the plan version", c.what, m.GetName(), a, c.commit)
			}
		}
	}
}
