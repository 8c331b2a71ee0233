package runner

import (
	"encoding/json"
	"strings"

	"github.com/sluicehq/sluice/gitsync"
	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
	"github.com/sluicehq/sluice/xds"
)

// DataPlaneDetailer is a DataPlane that can tell how each proxy answered a
// plan, for the dashboard (XDSPlane is one).
type DataPlaneDetailer interface {
	Detail(p plan.Plan) rolloutapi.DataPlaneDetail
}

// Detail is how each xDS client answered the plan's version.
func (x *XDSPlane) Detail(p plan.Plan) rolloutapi.DataPlaneDetail {
	st := x.srv.Status(xds.ServiceKey(p.Namespace, p.Service), p.Version)
	return dataPlaneDetail(st, x.srv.Nodes())
}

// dataPlaneDetail turns the xDS server's answer into the API's. The server
// lists the pending and rejecting streams but only counts those that
// applied the version; they are named when every other known stream is one
// of them, which is exact, and left unnamed otherwise.
func dataPlaneDetail(st xds.Status, nodes []xds.NodeStatus) rolloutapi.DataPlaneDetail {
	out := rolloutapi.DataPlaneDetail{PlanVersion: st.PlanVersion, Subscribed: st.Subscribed, Acked: st.Acked}
	silent := map[int64]xds.SilentNode{}
	for _, s := range st.Silent {
		silent[s.Node.Stream] = s
	}
	answered := map[int64]bool{}
	for _, n := range st.Pending {
		answered[n.Stream] = true
		p := proxyOf(n)
		if s, ok := silent[n.Stream]; ok {
			since := s.Since
			p.Since = &since
		}
		out.Pending = append(out.Pending, p)
	}
	for _, r := range st.Rejected {
		answered[r.Node.Stream] = true
		p := proxyOf(r.Node)
		at := r.At
		p.At, p.Error, p.TypeURL = &at, rolloutapi.ErrorText(r.Message), r.TypeURL
		out.Rejected = append(out.Rejected, p)
	}
	var acked []rolloutapi.Proxy
	for _, n := range nodes {
		if !answered[n.Node.Stream] {
			acked = append(acked, proxyOf(n.Node))
		}
	}
	if len(acked) == st.Acked {
		out.AckedProxies = acked
	}
	return out
}

func proxyOf(n xds.NodeRef) rolloutapi.Proxy {
	return rolloutapi.Proxy{Node: rolloutapi.NodeText(n.ID), Cluster: rolloutapi.NodeText(n.Cluster), Stream: n.Stream}
}

// Changed is closed at the next change of what the API reads: every pass
// replaces the views of the Rollouts it stepped, at once, and a pass
// after a change of the Git source's state (a push rejected, say) signals
// too (rolloutapi.Watcher).
func (r *Runner) Changed() <-chan struct{} {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.changed
}

// detail gathers what the runner knows of a Rollout beyond its status.
func (r *Runner) detail(key string, v view) *rolloutapi.Detail {
	d := &rolloutapi.Detail{}
	if dd, ok := r.o.Plane.(DataPlaneDetailer); ok && v.plan != nil {
		dp := dd.Detail(*v.plan)
		d.DataPlane = &dp
	}
	d.Analysis = r.runDetails(key, &v.ro.Status)
	gs := r.o.Source.State()
	if g := v.ro.Status.Git; g != nil && gs.Applied != nil && gs.Applied.Commit.SHA == g.Commit {
		c := gs.Applied.Commit
		author, msg := rolloutapi.CommitText(c.Author, c.Message)
		d.Commit = &rolloutapi.Commit{SHA: c.SHA, Author: author, Message: msg, Time: c.Time}
	}
	if rc, ok := rejectedCommit(gs); ok {
		d.Rejected = []rolloutapi.RejectedCommit{rc}
	}
	return d
}

// runDetails reads each run's measurements: from the analysis driver while
// it holds the run, else as last persisted.
func (r *Runner) runDetails(key string, st *v1alpha1.RolloutStatus) []rolloutapi.RunDetail {
	var stored map[string]json.RawMessage
	var out []rolloutapi.RunDetail
	for _, run := range st.Analysis {
		_, saved, ok := r.o.Analysis.Observe(run.Name)
		if !ok || saved == nil {
			if stored == nil {
				var err error
				if stored, err = r.o.Store.Runs(key); err != nil {
					stored = map[string]json.RawMessage{}
				}
			}
			saved = stored[run.Name]
		}
		var ar v1alpha1.AnalysisRun
		if len(saved) == 0 || json.Unmarshal(saved, &ar) != nil {
			continue
		}
		out = append(out, rolloutapi.RunDetailOf(&ar))
	}
	return out
}

// rejectedCommit is the commit the source rejected, until a later one
// applies (the last good commit stays in force).
func rejectedCommit(gs gitsync.State) (rolloutapi.RejectedCommit, bool) {
	ge := gs.Rejected
	if ge == nil {
		return rolloutapi.RejectedCommit{}, false
	}
	rc := rolloutapi.RejectedCommit{SHA: ge.Commit, At: gs.RejectedAt}
	for _, p := range ge.Problems {
		rc.Problems = append(rc.Problems, rolloutapi.ErrorText(p.String()))
	}
	if len(rc.Problems) == 0 && ge.Err != nil {
		rc.Error = rolloutapi.ErrorText(strings.TrimSpace(ge.Err.Error()))
	}
	return rc, true
}
