package plan

import (
	"strings"
	"testing"
)

func valid() Plan {
	p := Plan{
		Service: "reviews",
		Subsets: []Subset{{Name: Stable, Revision: "v1"}, {Name: Canary, Revision: "v2"}},
		Hosts: []Host{{Name: "reviews", Port: 9080, Routes: []Route{
			{Name: "header-jason", Match: []Match{{Headers: []HeaderMatch{{Name: "end-user", Kind: HeaderExact, Value: "jason"}}}}, Destinations: []Destination{{Subset: Canary, Weight: 100}}},
			{Name: "primary", Destinations: []Destination{{Subset: Stable, Weight: 95}, {Subset: Canary, Weight: 5}}, Mirror: &Mirror{Subset: Canary, Percent: 10}},
		}}},
	}
	p.Seal()
	return p
}

func TestCheck(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		mutate func(*Plan)
		want   string // empty: valid
	}{
		{"valid", func(*Plan) {}, ""},
		{"weights do not sum to 100", func(p *Plan) { p.Hosts[0].Routes[1].Destinations[1].Weight = 6 }, "sum to 101"},
		{"negative weight", func(p *Plan) {
			p.Hosts[0].Routes[1].Destinations = []Destination{{Subset: Stable, Weight: 110}, {Subset: Canary, Weight: -10}}
		}, "out of 0..100"},
		{"unknown subset", func(p *Plan) { p.Hosts[0].Routes[0].Destinations[0].Subset = "preview" }, `unknown subset "preview"`},
		{"subset without revision", func(p *Plan) { p.Subsets[1].Revision = "" }, "no revision"},
		{"last route has a match", func(p *Plan) { p.Hosts[0].Routes = p.Hosts[0].Routes[:1] }, "must catch everything"},
		{"host without routes", func(p *Plan) { p.Hosts[0].Routes = nil }, "no routes"},
		{"no hosts", func(p *Plan) { p.Hosts = nil }, "no hosts"},
		{"mirror percent zero", func(p *Plan) { p.Hosts[0].Routes[1].Mirror.Percent = 0 }, "mirror percent 0"},
		{"mirror to unknown subset", func(p *Plan) { p.Hosts[0].Routes[1].Mirror.Subset = "x" }, "mirror to unknown subset"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := valid()
			tc.mutate(&p)
			p.Seal()
			err := p.Check()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Check() = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Check() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestVersionIsContentHash(t *testing.T) {
	t.Parallel()
	a, b := valid(), valid()
	if a.Version == "" || a.Version != b.Version {
		t.Fatalf("equal plans have versions %q and %q", a.Version, b.Version)
	}
	b.Hosts[0].Routes[1].Destinations[0].Weight, b.Hosts[0].Routes[1].Destinations[1].Weight = 90, 10
	b.Seal()
	if a.Version == b.Version {
		t.Fatal("a weight change kept the version")
	}
	// Editing without sealing is caught.
	a.Hosts[0].Routes[1].Destinations[0].Weight, a.Hosts[0].Routes[1].Destinations[1].Weight = 90, 10
	if err := a.Check(); err == nil || !strings.Contains(err.Error(), "call Seal") {
		t.Fatalf("Check() of an unsealed edit = %v", err)
	}
}

func TestWeightAndRevision(t *testing.T) {
	t.Parallel()
	p := valid()
	if got := p.Hosts[0].Weight(Canary); got != 5 {
		t.Fatalf("Weight(canary) = %d, want 5 (from the default route, not the header route)", got)
	}
	if got := p.Revision(Canary); got != "v2" {
		t.Fatalf("Revision(canary) = %q", got)
	}
	if got := p.Revision("preview"); got != "" {
		t.Fatalf("Revision(unknown) = %q", got)
	}
}
