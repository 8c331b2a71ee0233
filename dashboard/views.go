package dashboard

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
)

// hostView is the traffic of one host: a bar per route.
type hostView struct {
	Name   string
	Port   uint32
	Routes []routeView
}

type routeView struct {
	Name string
	// Match says which requests take the route, in words.
	Match    string
	Segments []segment
	Mirror   string
	// Text is the route in words: the chart's text equivalent.
	Text string
}

// segment is one destination's share of a route's bar, in percent.
type segment struct {
	Subset, Revision string
	Weight           int32
	X                int32
	Class            string
}

// subsetClass colours a subset: stable, canary, or one of four for the
// extra revisions.
func subsetClass(name string, extras []string) string {
	switch name {
	case plan.Stable:
		return "s-stable"
	case plan.Canary:
		return "s-canary"
	}
	i := slices.Index(extras, name)
	if i < 0 {
		i = len(extras)
	}
	return "s-extra" + strconv.Itoa(i%4)
}

// trafficOf draws the plan in force; without one (a cluster keeps only
// status.traffic), the summary of the default route.
func trafficOf(ro rolloutapi.Rollout) []hostView {
	var extras []string
	revisions := map[string]string{}
	if p := ro.Plan; p != nil {
		for _, s := range p.Subsets {
			revisions[s.Name] = s.Revision
			if s.Name != plan.Stable && s.Name != plan.Canary {
				extras = append(extras, s.Name)
			}
		}
		var out []hostView
		for _, h := range p.Hosts {
			hv := hostView{Name: text(h.Name), Port: h.Port}
			for _, rt := range h.Routes {
				hv.Routes = append(hv.Routes, routeOf(rt, revisions, extras))
			}
			out = append(out, hv)
		}
		return out
	}
	tr := ro.Status.Traffic
	if tr.PlanVersion == "" {
		return nil
	}
	var dests []plan.Destination
	for _, s := range tr.Subsets {
		revisions[s.Name] = s.Revision
		if s.Weight > 0 {
			dests = append(dests, plan.Destination{Subset: s.Name, Weight: s.Weight})
		}
		if s.Name != plan.Stable && s.Name != plan.Canary {
			extras = append(extras, s.Name)
		}
	}
	if len(dests) == 0 {
		revisions[plan.Stable], revisions[plan.Canary] = ro.Status.StableRevision, ro.Status.CanaryRevision
		dests = []plan.Destination{{Subset: plan.Stable, Weight: tr.StableWeight}, {Subset: plan.Canary, Weight: tr.CanaryWeight}}
	}
	rt := plan.Route{Name: "default", Destinations: dests}
	if tr.MirrorPercent > 0 {
		rt.Mirror = &plan.Mirror{Subset: plan.Canary, Percent: tr.MirrorPercent}
	}
	hv := hostView{Name: "every host of " + ro.Name, Routes: []routeView{routeOf(rt, revisions, extras)}}
	for _, name := range tr.Routes {
		hv.Routes = append(hv.Routes, routeView{Name: text(name), Match: "the route's matches (not kept in status)",
			Segments: []segment{{Subset: plan.Canary, Revision: ro.Status.CanaryRevision, Weight: 100, Class: "s-canary"}},
			Text:     "route " + text(name) + ": canary 100%"})
	}
	return []hostView{hv}
}

func routeOf(rt plan.Route, revisions map[string]string, extras []string) routeView {
	v := routeView{Name: text(rt.Name), Match: matchText(rt.Match)}
	var x int32
	var parts []string
	for _, d := range rt.Destinations {
		if d.Weight <= 0 {
			continue
		}
		v.Segments = append(v.Segments, segment{Subset: text(d.Subset), Revision: text(revisions[d.Subset]), Weight: d.Weight, X: x, Class: subsetClass(d.Subset, extras)})
		x += d.Weight
		parts = append(parts, fmt.Sprintf("%s (%s) %d%%", text(d.Subset), text(revisions[d.Subset]), d.Weight))
	}
	v.Text = fmt.Sprintf("route %s, %s: %s", v.Name, v.Match, strings.Join(parts, ", "))
	if m := rt.Mirror; m != nil && m.Percent > 0 {
		v.Mirror = fmt.Sprintf("%d%% copied to %s", m.Percent, text(m.Subset))
		v.Text += "; mirror " + v.Mirror
	}
	return v
}

// matchText says which requests a route takes: its matches or'ed, each
// match's conditions and'ed.
func matchText(ms []plan.Match) string {
	if len(ms) == 0 {
		return "every other request"
	}
	var ors []string
	for _, m := range ms {
		var ands []string
		for _, h := range m.Headers {
			switch h.Kind {
			case plan.HeaderExact:
				ands = append(ands, "header "+h.Name+" = "+h.Value)
			case plan.HeaderPrefix:
				ands = append(ands, "header "+h.Name+" starts with "+h.Value)
			case plan.HeaderRegex:
				ands = append(ands, "header "+h.Name+" matches "+h.Value)
			case plan.HeaderPresent:
				ands = append(ands, "header "+h.Name+" present")
			case plan.HeaderAbsent:
				ands = append(ands, "header "+h.Name+" absent")
			}
		}
		if u := m.URI; u != nil {
			if u.Prefix {
				ands = append(ands, "path starts with "+u.Value)
			} else {
				ands = append(ands, "path = "+u.Value)
			}
		}
		for _, c := range m.Cookies {
			ands = append(ands, "cookie "+c.Name+" = "+c.Value)
		}
		ors = append(ors, strings.Join(ands, " and "))
	}
	return text(strings.Join(ors, " or "))
}

// planeView is how the proxies answered the plan in force.
type planeView struct {
	// Detailed is true when the backend named the proxies.
	Detailed     bool
	PlanVersion  string
	AckedVersion string
	State        string
	Subscribed   int
	Acked        int
	AckedNamed   bool
	AckedProxies []proxyView
	Pending      []proxyView
	Rejected     []proxyView
	// Stale are the stale nodes status names (the first few of
	// StaleCount); Excluded when the step went on without them.
	Stale         []string
	StaleCount    int32
	StaleExcluded bool
	Rejection     string
	Subsets       []v1alpha1.SubsetStatus
	// Replica names the controller replica whose proxies the detail
	// lists, when it lists one replica's only.
	Replica string
}

type proxyView struct {
	Node, Cluster string
	Stream        int64
	Since, At     *time.Time
	Error, Type   string
	Stale         bool
}

func planeOf(ro rolloutapi.Rollout) planeView {
	tr := ro.Status.Traffic
	v := planeView{PlanVersion: tr.PlanVersion, AckedVersion: tr.AcknowledgedVersion, State: ackState(tr),
		Rejection: text(tr.Rejection), Subsets: tr.Subsets}
	if sn := tr.StaleNodes; sn != nil {
		v.StaleCount, v.StaleExcluded = sn.Count, sn.Excluded
		for _, n := range sn.Nodes {
			v.Stale = append(v.Stale, text(n))
		}
	}
	if ro.Detail == nil || ro.Detail.DataPlane == nil {
		return v
	}
	dp := ro.Detail.DataPlane
	v.Detailed, v.Subscribed, v.Acked, v.Replica = true, dp.Subscribed, dp.Acked, text(dp.Replica)
	v.AckedNamed = dp.AckedProxies != nil || dp.Acked == 0
	conv := func(ps []rolloutapi.Proxy) []proxyView {
		var out []proxyView
		for _, p := range ps {
			out = append(out, proxyView{Node: text(p.Node), Cluster: text(p.Cluster), Stream: p.Stream, Since: p.Since, At: p.At,
				Error: text(p.Error), Type: typeName(p.TypeURL), Stale: slices.Contains(v.Stale, text(p.Node))})
		}
		return out
	}
	v.AckedProxies, v.Pending, v.Rejected = conv(dp.AckedProxies), conv(dp.Pending), conv(dp.Rejected)
	return v
}

// typeName shortens an xDS type URL to its message name.
func typeName(u string) string {
	if i := strings.LastIndexByte(u, '.'); i >= 0 {
		return u[i+1:]
	}
	return u
}

// runView is one analysis run.
type runView struct {
	Name, Kind, Phase, Message string
	Terminated                 bool
	Started, Completed         *time.Time
	Metrics                    []metricView
}

type metricView struct {
	Name, Phase, LastValue, Message       string
	Successful, Failed, Inconclusive, Err int32
	Success, Failure                      string
	Compare, DryRun                       bool
	Chart                                 *chart
}

// analysisOf lists the runs newest first, each metric with its chart when
// the backend has the measurements.
func analysisOf(ro rolloutapi.Rollout) []runView {
	details := map[string]rolloutapi.RunDetail{}
	if ro.Detail != nil {
		for _, d := range ro.Detail.Analysis {
			details[d.Name] = d
		}
	}
	var out []runView
	for _, r := range slices.Backward(ro.Status.Analysis) {
		rv := runView{Name: r.Name, Kind: string(r.Kind), Phase: string(r.Phase), Message: text(r.Message), Terminated: r.Terminated}
		if r.StartedAt != nil {
			rv.Started = &r.StartedAt.Time
		}
		if r.CompletedAt != nil {
			rv.Completed = &r.CompletedAt.Time
		}
		det := details[r.Name]
		for _, m := range r.Metrics {
			mv := metricView{Name: text(m.Name), Phase: string(m.Phase), LastValue: text(m.LastValue), Message: text(m.Message),
				Successful: m.Successful, Failed: m.Failed, Inconclusive: m.Inconclusive, Err: m.Error}
			if i := slices.IndexFunc(det.Metrics, func(x rolloutapi.MetricDetail) bool { return x.Name == m.Name }); i >= 0 {
				md := det.Metrics[i]
				mv.Success, mv.Failure, mv.Compare, mv.DryRun = text(md.SuccessCondition), text(md.FailureCondition), md.Compare, md.DryRun
				mv.Chart = metricChart(r.Name, md)
			}
			rv.Metrics = append(rv.Metrics, mv)
		}
		out = append(out, rv)
	}
	return out
}
