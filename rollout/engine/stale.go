package engine

import (
	"fmt"
	"strings"
	"time"

	"github.com/sluicehq/sluice/internal/untrusted"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// Silent proxies: a node that was sent the plan in force and has neither
// ACKed nor NACKed it for spec.dataPlane.ackDeadlineSeconds is stale. The
// adapter reports since when each node has been silent; the engine, which
// has the time and the spec, decides. Stale nodes are always reported
// (status.traffic.staleNodes, an Event when they appear); with the Hold
// policy (the default) they keep the step waiting, with Exclude the step
// counts once every other node has applied the plan and at least one has.
// docs/engine.md explains the default.

// maxStaleNames bounds the node ids kept in status.
const (
	maxStaleNames   = 5
	maxNodeNameText = 253
)

func (s *stepper) ackDeadline() time.Duration {
	if d := s.ro.Spec.DataPlane.AckDeadlineSeconds; d != nil && *d > 0 {
		return time.Duration(*d) * time.Second
	}
	return 30 * time.Second
}

func (s *stepper) silentPolicy() v1alpha1.SilentProxyPolicy {
	if s.ro.Spec.DataPlane.SilentProxies == v1alpha1.SilentExclude {
		return v1alpha1.SilentExclude
	}
	return v1alpha1.SilentHold
}

// stale returns the silent nodes past the deadline at now, oldest first.
func stale(dp DataPlane, deadline time.Duration, now time.Time) []SilentNode {
	var out []SilentNode
	for _, n := range dp.Silent {
		if !now.Before(n.Since.Add(deadline)) {
			out = append(out, n)
		}
	}
	return out
}

// judgeStale records the stale nodes of an observation of the plan in
// force and returns the observation as the engine counts it: with
// Exclude, a pending answer whose only missing nodes are stale is
// acknowledged.
func (s *stepper) judgeStale(dp DataPlane) DataPlane {
	tr := &s.st.Traffic
	if dp.State == AckRejected {
		return dp
	}
	if dp.State == AckAcknowledged {
		tr.StaleNodes = nil
		return dp
	}
	old := tr.StaleNodes
	late := stale(dp, s.ackDeadline(), s.now)
	if len(late) == 0 {
		tr.StaleNodes = nil
		return dp
	}
	sn := &v1alpha1.StaleNodesStatus{Count: int32(len(late))}
	for _, n := range late[:min(len(late), maxStaleNames)] {
		sn.Nodes = append(sn.Nodes, untrusted.Text(n.Name, maxNodeNameText))
	}
	exclude := s.silentPolicy() == v1alpha1.SilentExclude && dp.Acked > 0 && dp.Acked+len(late) == dp.Subscribed
	sn.Excluded = exclude
	tr.StaleNodes = sn
	if old == nil || old.Count != sn.Count || old.Excluded != sn.Excluded {
		s.event(EventWarning, v1alpha1.ReasonStaleProxies, "%s", staleMessage(sn, s.silentPolicy(), s.ackDeadline(), tr.PlanVersion))
	}
	if exclude {
		dp.State = AckAcknowledged
	}
	return dp
}

// staleMessage says which nodes are stale and what the step does.
func staleMessage(sn *v1alpha1.StaleNodesStatus, policy v1alpha1.SilentProxyPolicy, deadline time.Duration, version string) string {
	names := strings.Join(sn.Nodes, ", ")
	if more := int(sn.Count) - len(sn.Nodes); more > 0 {
		names += fmt.Sprintf(" and %d more", more)
	}
	what := "holding the step until they answer or go away (spec.dataPlane.silentProxies: Hold)"
	switch {
	case sn.Excluded:
		what = "the step counts without them (spec.dataPlane.silentProxies: Exclude); they may still route by an older plan"
	case policy == v1alpha1.SilentExclude:
		what = "holding the step: Exclude counts a step only when every other node, and at least one, has applied the plan"
	}
	return fmt.Sprintf("%d data-plane node(s) silent for more than %s on plan %s: %s; %s", sn.Count, deadline, version, names, what)
}

// staleWakeAt is when the next silent node of the last observation turns
// stale, so the engine is asked again then.
func (s *stepper) staleWakeAt() (time.Time, bool) {
	dp, tr := s.in.Observations.DataPlane, &s.st.Traffic
	if dp.Version == "" || dp.Version != tr.PlanVersion || dp.State != AckPending {
		return time.Time{}, false
	}
	for _, n := range dp.Silent {
		if at := n.Since.Add(s.ackDeadline()); at.After(s.now) {
			return at, true
		}
	}
	return time.Time{}, false
}
