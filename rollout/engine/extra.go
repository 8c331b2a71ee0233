package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Extra revisions run next to stable and canary for part of a rollout:
// an experiment, a fresh baseline of stable, a version pinned for some
// users. status.extraRevisions lists the ones the current step runs (its
// target, so their subsets reach the data plane at 0% before any traffic,
// as the canary's does) and the ones still routed while a step is held;
// the plan routes them from the traffic in force. Promotion and abort stop
// them all.

// extraRoutePrefix names an extra revision's match route.
const extraRoutePrefix = "revision-"

// routedExtra is an extra revision as a plan routes it.
type routedExtra struct {
	name, revision string
	weight         int32
	match          []v1alpha1.RouteMatch
}

// routedExtras lists the plan's extra subsets: every extra revision in
// status that has not ended, with the weight and match of the traffic t
// (none when t does not route it yet, or any more).
func routedExtras(st *v1alpha1.RolloutStatus, t traffic) []routedExtra {
	if t.full || !t.active {
		return nil
	}
	var out []routedExtra
	for _, x := range st.ExtraRevisions {
		if x.Ended {
			continue
		}
		r := routedExtra{name: x.Name, revision: x.Revision}
		if e, ok := t.extra(x.Name); ok && extraRevision(st, e.spec) == x.Revision {
			r.weight, r.match = e.spec.Weight, e.spec.Match
		}
		out = append(out, r)
	}
	return out
}

// extraRevision is the revision an extra runs: its backend's version in
// standalone mode; in controller mode a hash of the template it derives
// from, its name and its images, so even a plain copy of stable (a
// baseline) runs as a revision, and ReplicaSet, of its own.
func extraRevision(st *v1alpha1.RolloutStatus, r *v1alpha1.RevisionStep) string {
	if r.Backend != nil {
		return r.Backend.Version
	}
	if r.Template == nil {
		return ""
	}
	base := st.StableRevision
	if r.Template.From == v1alpha1.RevisionFromCanary {
		base = st.CanaryRevision
	}
	b, err := json.Marshal(struct {
		Base, Name string
		Images     map[string]string
	}{base, r.Name, r.Template.Images})
	if err != nil {
		panic(fmt.Sprintf("engine: marshal extra revision: %v", err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:5])
}

// syncExtras rewrites status.extraRevisions for the routed traffic and the
// current step's target, keeping what earlier steps recorded of a
// revision's duration, and ends the revisions whose duration ran out.
func (s *stepper) syncExtras(routed traffic) {
	st := &s.st
	if !s.rolling() || st.CurrentStepIndex == nil || routed.full {
		st.ExtraRevisions = nil
		return
	}
	i := min(int(*st.CurrentStepIndex), len(s.steps))
	target := s.foldAt(i + 1)
	if target.full {
		target.extras = nil
	}
	var want []extraTraffic
	for _, e := range append(slices.Clone(target.extras), routed.extras...) {
		if !slices.ContainsFunc(want, func(w extraTraffic) bool { return w.spec.Name == e.spec.Name }) {
			want = append(want, e)
		}
	}
	prev := st.ExtraRevisions
	st.ExtraRevisions = nil
	for _, e := range want {
		x := v1alpha1.ExtraRevisionStatus{
			Name:     e.spec.Name,
			Revision: extraRevision(st, e.spec),
			Backend:  e.spec.Backend.DeepCopy(),
			Template: e.spec.Template.DeepCopy(),
			Since:    int32(e.since),
		}
		if s.ro.Spec.Replicas != nil {
			x.Replicas = 1
			if e.spec.Replicas != nil {
				x.Replicas = *e.spec.Replicas
			}
		}
		if j := slices.IndexFunc(prev, func(p v1alpha1.ExtraRevisionStatus) bool {
			return p.Name == x.Name && p.Revision == x.Revision && p.Since == x.Since
		}); j >= 0 {
			x.EndsAt, x.Ended = prev[j].EndsAt, prev[j].Ended
		}
		if d := e.spec.Duration; d != nil && x.EndsAt == nil {
			// The duration counts from the acknowledgement of the step
			// that set it; a later step implies that one was.
			switch {
			case i > e.since:
				x.EndsAt = mt(s.now.Add(d.Duration))
			case i == e.since && st.StepAcknowledgedAt != nil:
				x.EndsAt = mt(st.StepAcknowledgedAt.Add(d.Duration))
			}
		}
		if x.EndsAt != nil && !x.Ended && !s.now.Before(x.EndsAt.Time) {
			x.Ended = true
			s.event(EventNormal, v1alpha1.ReasonRevisionEnded, "extra revision %s (%s) ended after %s", x.Name, x.Revision, e.spec.Duration.Duration)
		}
		st.ExtraRevisions = append(st.ExtraRevisions, x)
	}
}

// expireExtras ends the extra revisions whose duration ran out, before
// the steps are advanced: whether the plan in force is acknowledged is
// judged against the plan this Step publishes, which no longer routes to
// them (syncExtras keeps them ended).
func (s *stepper) expireExtras() {
	for i := range s.st.ExtraRevisions {
		x := &s.st.ExtraRevisions[i]
		if x.EndsAt != nil && !x.Ended && !s.now.Before(x.EndsAt.Time) {
			x.Ended = true
			after := ""
			if d := s.extraDuration(x); d > 0 {
				after = " after " + d.String()
			}
			s.event(EventNormal, v1alpha1.ReasonRevisionEnded, "extra revision %s (%s) ended%s", x.Name, x.Revision, after)
		}
	}
}

// extraDuration is the duration the step that set x gave it.
func (s *stepper) extraDuration(x *v1alpha1.ExtraRevisionStatus) time.Duration {
	for _, e := range s.foldAt(min(int(x.Since), len(s.steps)) + 1).extras {
		if e.spec.Name == x.Name && e.spec.Duration != nil {
			return e.spec.Duration.Duration
		}
	}
	return 0
}

// subsetKnown reports whether the data plane has acknowledged a plan with
// the named subset selecting revision, and every plan since kept it.
func (s *stepper) subsetKnown(name, revision string) bool {
	for _, sub := range s.st.Traffic.Subsets {
		if sub.Name == name && sub.Revision == revision {
			return sub.Acknowledged
		}
	}
	return false
}

// extrasWarm reports whether every extra revision that t sends traffic to
// is known to the data plane.
func (s *stepper) extrasWarm(t traffic) bool {
	for _, e := range t.extras {
		if e.spec.Weight == 0 && len(e.spec.Match) == 0 {
			continue
		}
		if !s.subsetKnown(e.spec.Name, extraRevision(&s.st, e.spec)) {
			return false
		}
	}
	return true
}

// extrasReady reports whether every extra revision that t sends traffic
// to has an available replica (controller mode).
func (s *stepper) extrasReady(t traffic) bool {
	if s.ro.Spec.Replicas == nil {
		return true
	}
	w := s.in.Observations.Workload
	for _, e := range t.extras {
		if e.spec.Weight == 0 && len(e.spec.Match) == 0 {
			continue
		}
		if w == nil || w.ExtraAvailable[extraRevision(&s.st, e.spec)] < 1 {
			return false
		}
	}
	return true
}

// extraSubsets is the subset name → revision of every extra revision in
// status, for analysis arguments.
func extraSubsets(st *v1alpha1.RolloutStatus) map[string]string {
	out := map[string]string{}
	for _, x := range st.ExtraRevisions {
		out[x.Name] = x.Revision
	}
	return out
}
