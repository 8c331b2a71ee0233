package xds

import (
	"cmp"
	"slices"
	"time"

	"github.com/sluicehq/sluice/rollout/engine"
)

// Silent proxies. A node that subscribes and then never answers would
// hold a step for ever: it is neither acknowledged nor rejected. The
// tracker notes, per stream and type, since when a response has been
// left unanswered; Status lists the pending nodes that are silent with
// that time, and the engine, which knows the Rollout's deadline and the
// time, decides which are stale and whether they hold the step
// (spec.dataPlane, docs/engine.md). The server keeps no deadline itself,
// so one tracker serves Rollouts with different deadlines.

// SilentNode is a pending node with an unanswered response.
type SilentNode struct {
	Node NodeRef
	// Since is when the oldest unanswered response was sent.
	Since time.Time
}

// silentSince is since when the stream has left a response unanswered,
// zero if it has answered everything.
func (s *stream) silentSince() time.Time {
	var since time.Time
	for _, ks := range s.kinds {
		if ks != nil && !ks.silentSince.IsZero() && (since.IsZero() || ks.silentSince.Before(since)) {
			since = ks.silentSince
		}
	}
	return since
}

// addSilent fills st.Silent from st.Pending. Caller holds mu.
func (t *tracker) addSilent(st *Status) {
	st.Silent = nil
	for _, n := range st.Pending {
		s := t.streams[n.Stream]
		if s == nil {
			continue
		}
		if since := s.silentSince(); !since.IsZero() {
			st.Silent = append(st.Silent, SilentNode{Node: n, Since: since})
		}
	}
	slices.SortFunc(st.Silent, func(a, b SilentNode) int {
		return cmp.Or(a.Since.Compare(b.Since), cmp.Compare(a.Node.Stream, b.Node.Stream))
	})
}

// silentNodes is Silent as the engine observes it.
func (s Status) silentNodes() []engine.SilentNode {
	if len(s.Silent) == 0 {
		return nil
	}
	out := make([]engine.SilentNode, len(s.Silent))
	for i, n := range s.Silent {
		out[i] = engine.SilentNode{Name: n.Node.ID, Since: n.Since}
	}
	return out
}
