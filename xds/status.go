package xds

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/rollout/engine"
)

// Status is the data plane's answer about one plan version of a service
// (or of one host).
type Status struct {
	// Service is the ServiceKey asked about; Host is set instead for a
	// host question.
	Service string
	Host    string
	// PlanVersion is the version asked about.
	PlanVersion string
	// Published is true if a generation in the tracker's history holds
	// this version; Current if the latest one of some group does.
	Published bool
	Current   bool
	// Subscribed counts the connected nodes (ADS streams) that subscribe
	// to a resource of the service; zero means no xDS client cares, and
	// the caller must fall back to other acknowledgement.
	Subscribed int
	// Acked counts the subscribed nodes that have applied this version:
	// every resource of the service they subscribe to, and everything
	// those resources lead to, is ACKed with this version's content.
	Acked int
	// Pending lists the subscribed nodes that have not yet applied the
	// version.
	Pending []NodeRef
	// Silent lists the pending nodes that have left a response unanswered
	// (neither ACK nor NACK), oldest first, with when it was sent; whether
	// they are stale is the caller's deadline to decide (stale.go).
	Silent []SilentNode
	// Rejected lists the nodes that NACKed this version's content, with
	// their error text.
	Rejected []Rejection
}

// NodeRef identifies one node's stream.
type NodeRef struct {
	ID      string
	Cluster string
	Group   Group
	// Stream is the server's stream id (negative for delta streams); two
	// processes that share a node id are told apart by it.
	Stream int64
}

func (n NodeRef) String() string {
	return fmt.Sprintf("%s (%s, stream %d)", n.ID, n.Group, n.Stream)
}

// Rejection is one NACK.
type Rejection struct {
	Node    NodeRef
	TypeURL string
	// Version is the rejected version of that type.
	Version string
	Message string
	At      time.Time
}

func (r Rejection) String() string {
	return fmt.Sprintf("node %s rejected %s version %s: %s", r.Node, r.TypeURL, r.Version, r.Message)
}

// NoClients reports whether no connected xDS client subscribes to the
// service, so the caller must use another acknowledgement.
func (s Status) NoClients() bool { return s.Subscribed == 0 }

// Converged reports whether every subscribed node applied the version and
// none rejected it. It is false with no subscribed nodes.
func (s Status) Converged() bool {
	return s.Subscribed > 0 && s.Acked == s.Subscribed && len(s.Rejected) == 0
}

// DataPlane converts the status into the engine's observation. A
// rejection wins over acknowledgement; with no subscribed node the state
// is pending, and the caller, seeing NoClients, decides whether another
// acknowledgement (an accepted VirtualService write) stands in for it.
func (s Status) DataPlane() engine.DataPlane {
	dp := engine.DataPlane{Version: s.PlanVersion, Subscribed: s.Subscribed, Acked: s.Acked, Silent: s.silentNodes()}
	switch {
	case len(s.Rejected) > 0:
		dp.State = engine.AckRejected
		dp.Message = s.Rejected[0].String()
	case s.Converged():
		dp.State = engine.AckAcknowledged
	}
	return dp
}

// Errors of Wait.
var (
	// ErrNoClients: no connected xDS client subscribes to the service.
	ErrNoClients = errors.New("no xDS client subscribes to the service")
	// ErrSuperseded: a different version of the plan was published while
	// waiting; the version waited for will never be in force.
	ErrSuperseded = errors.New("plan version superseded by a newer one")
)

// RejectedError is returned by Wait when a node NACKed the version.
type RejectedError struct{ Rejections []Rejection }

func (e *RejectedError) Error() string {
	msgs := make([]string, len(e.Rejections))
	for i, r := range e.Rejections {
		msgs[i] = r.String()
	}
	return "plan rejected: " + strings.Join(msgs, "; ")
}

// verdict is one stream's answer to one question.
type verdict uint8

const (
	notSubscribed verdict = iota
	pending
	acked
	rejected
	numVerdicts
)

// query is a question (owner, version) prepared against the history, per
// group: the owner's resources in the latest generation holding that
// version (whose shape decides what a node must have), every content hash
// each resource has had at that version, and the listener closures as
// indexes, so that judging a stream is a few slice and map lookups.
type query struct {
	owner   ownerKey
	version string
	// groups holds the question per snapshot (group and view); a view
	// without the owner has none, so its nodes never count for it.
	groups map[snapKey]*prepared
	// published / current as in Status.
	published, current bool
	// superseded: every group's latest generation holds another version
	// of the owner, or none. These three are read from the view of
	// everything, which is always published.
	superseded bool
}

type prepared struct {
	ids []resID
	// accept[i] lists the hashes ids[i] had in generations holding the
	// version; empty when the version was never published.
	accept [][]string
	// closure[i] lists, for a listener ids[i], the indexes of everything
	// its client must also have.
	closure [][]int
}

func (t *tracker) newQuery(owner ownerKey, version string) *query {
	q := &query{owner: owner, version: version, groups: map[snapKey]*prepared{}, superseded: true}
	for g, h := range t.hist {
		reference := g.view == allView
		runs := h.owners[owner]
		first := h.first()
		// The newest remembered run of the owner at this version.
		var ref *ownerRun
		for i := len(runs) - 1; i >= 0 && runs[i].to >= first; i-- {
			if runs[i].info.planVersion == version {
				ref = &runs[i]
				q.current = q.current || (reference && ref.to == current)
				break
			}
		}
		var latest *ownerInfo
		if h.latest != nil {
			latest = h.latest.owners[owner]
		}
		var info *ownerInfo
		switch {
		case ref != nil:
			q.published = q.published || reference
			info = ref.info
		case latest != nil:
			// Never held this version: nodes of the owner still count as
			// subscribed (and pending), judged against the current shape.
			info = latest
		default:
			continue
		}
		if reference && latest != nil && latest.planVersion == version {
			q.superseded = false
		}
		p := &prepared{}
		// Sorted already; read-only here.
		p.ids = info.owned
		index := make(map[resID]int, len(p.ids))
		for i, id := range p.ids {
			index[id] = i
		}
		p.accept = make([][]string, len(p.ids))
		p.closure = make([][]int, len(p.ids))
		for i, id := range p.ids {
			for _, c := range info.needs(id.name) {
				if j, ok := index[c]; ok && id.kind == kindListener {
					p.closure[i] = append(p.closure[i], j)
				}
			}
		}
		// Every hash each resource had while the owner's share was at
		// this version, in the generations remembered.
		for _, r := range runs {
			if r.to < first || r.info.planVersion != version {
				continue
			}
			for i, id := range p.ids {
				if r.info.owns(id) {
					p.accept[i] = h.hashesIn(id.kind, id.name, r.from, min(r.to, h.seqs[len(h.seqs)-1]), p.accept[i])
				}
			}
		}
		q.groups[g] = p
	}
	return q
}

// judge answers the query for one stream. The rejection, if any, is
// returned with it.
func (t *tracker) judge(s *stream, q *query) (verdict, *Rejection) {
	if !s.known {
		return notSubscribed, nil
	}
	p := q.groups[s.key()]
	if p == nil {
		return notSubscribed, nil
	}
	// need marks the resources this stream must have applied: those it
	// subscribes to and, for a listener, everything its client will need
	// even before it asks for it; without that, a node that has ACKed
	// only the listener would look done.
	need := t.scratch[:0]
	for range p.ids {
		need = append(need, false)
	}
	t.scratch = need
	subscribed := false
	for i, id := range p.ids {
		if s.kinds[id.kind].subscribes(id.name) {
			need[i], subscribed = true, true
			for _, j := range p.closure[i] {
				need[j] = true
			}
		}
	}
	if !subscribed {
		return notSubscribed, nil
	}
	for k := range numKinds {
		ks := s.kinds[k]
		if ks == nil || ks.nack == nil {
			continue
		}
		var mine []string
		relevant := false
		for i, id := range p.ids {
			if !need[i] || id.kind != k {
				continue
			}
			mine = append(mine, id.name)
			if h, ok := ks.nack.hash(id.name); ok && slices.Contains(p.accept[i], h) {
				relevant = true
			}
		}
		if relevant && nackConcerns(ks.nack, mine) {
			return rejected, &Rejection{
				Node:    s.ref(),
				TypeURL: kindURL[k],
				Version: ks.nack.version,
				Message: ks.nack.message,
				At:      ks.nack.at,
			}
		}
	}
	for i, id := range p.ids {
		if !need[i] {
			continue
		}
		h, ok := t.acked(s, id.kind, id.name)
		if !ok || !slices.Contains(p.accept[i], h) {
			return pending, nil
		}
	}
	return acked, nil
}

// nackConcerns decides whether a rejected response concerns these
// resources. A response carries many resources and the client rejects it
// as a whole; when the error text names resources of that response but
// none of ours, another service's resource was at fault and ours were
// applied, so the NACK must not stop our rollout. Error text that names
// none of them is attributed to everyone in the response.
func nackConcerns(n *nackState, mine []string) bool {
	for _, m := range mine {
		if strings.Contains(n.message, m) {
			return true
		}
	}
	concerns := true
	n.each(func(other string) bool {
		if !slices.Contains(mine, other) && strings.Contains(n.message, other) {
			concerns = false
		}
		return concerns
	})
	return concerns
}

func (s *stream) ref() NodeRef {
	return NodeRef{ID: s.node.GetId(), Cluster: s.node.GetCluster(), Group: s.group, Stream: s.id}
}

// status answers a query over all streams.
func (t *tracker) status(q *query) Status {
	st := Status{PlanVersion: q.version, Published: q.published, Current: q.current}
	ids := make([]int64, 0, len(t.streams))
	for id := range t.streams {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		s := t.streams[id]
		v, rej := t.judge(s, q)
		st.count(s, v, rej)
	}
	t.addSilent(&st)
	return st
}

// count adds one stream's verdict (and rejection) to the status.
func (st *Status) count(s *stream, v verdict, rej *Rejection) {
	switch v {
	case notSubscribed:
		return
	case acked:
		st.Acked++
	case pending:
		st.Pending = append(st.Pending, s.ref())
	case rejected:
		st.Rejected = append(st.Rejected, *rej)
	}
	st.Subscribed++
}

func (t *tracker) statusOf(owner ownerKey, version string) Status {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.status(t.newQuery(owner, version))
}

// watch keeps a query's answer current as streams change, so a waiter is
// woken by counts rather than recomputing every stream on every ACK.
type watch struct {
	q        *query
	verdicts map[int64]verdict
	counts   [numVerdicts]int
	// changed is closed and replaced whenever the counts or the query
	// change.
	changed chan struct{}
}

func (t *tracker) addWatch(owner ownerKey, version string) *watch {
	t.mu.Lock()
	defer t.mu.Unlock()
	w := &watch{changed: make(chan struct{})}
	t.watches[w] = struct{}{}
	w.q = t.newQuery(owner, version)
	w.verdicts = make(map[int64]verdict, len(t.streams))
	for _, s := range t.streams {
		w.update(t, s)
	}
	return w
}

func (t *tracker) removeWatch(w *watch) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.watches, w)
}

func (w *watch) update(t *tracker, s *stream) {
	v, _ := t.judge(s, w.q)
	old := w.verdicts[s.id]
	if v == old {
		return
	}
	if old != notSubscribed {
		w.counts[old]--
	}
	if v != notSubscribed {
		w.counts[v]++
	}
	if v == notSubscribed {
		delete(w.verdicts, s.id)
	} else {
		w.verdicts[s.id] = v
	}
	w.signal()
}

func (w *watch) forget(id int64) {
	if v, ok := w.verdicts[id]; ok {
		delete(w.verdicts, id)
		w.counts[v]--
		w.signal()
	}
}

// watchStatus is status(w.q) from the verdicts the watch keeps, so a
// waiter on thousands of nodes does not judge them all again.
func (t *tracker) watchStatus(w *watch) Status {
	st := Status{PlanVersion: w.q.version, Published: w.q.published, Current: w.q.current}
	for id, v := range w.verdicts {
		st.Subscribed++
		switch v {
		case acked:
			st.Acked++
		case pending:
			st.Pending = append(st.Pending, t.streams[id].ref())
		case rejected:
			if _, rej := t.judge(t.streams[id], w.q); rej != nil {
				st.Rejected = append(st.Rejected, *rej)
			}
		}
	}
	slices.SortFunc(st.Pending, func(a, b NodeRef) int { return cmp.Compare(a.Stream, b.Stream) })
	slices.SortFunc(st.Rejected, func(a, b Rejection) int { return cmp.Compare(a.Node.Stream, b.Node.Stream) })
	t.addSilent(&st)
	return st
}

// rebuild re-prepares the query after a publish and re-judges every
// stream.
func (w *watch) rebuild(t *tracker) {
	w.q = t.newQuery(w.q.owner, w.q.version)
	for _, s := range t.streams {
		w.update(t, s)
	}
	w.signal()
}

func (w *watch) signal() {
	close(w.changed)
	w.changed = make(chan struct{})
}

// wait blocks until the watched version converges, is rejected, loses all
// its subscribers, is superseded, or ctx ends.
func (t *tracker) wait(ctx context.Context, owner ownerKey, version string) (Status, error) {
	w := t.addWatch(owner, version)
	defer t.removeWatch(w)
	for {
		t.mu.Lock()
		subscribed := w.counts[pending] + w.counts[acked] + w.counts[rejected]
		done, superseded, changed := w.counts[pending] == 0, w.q.superseded, w.changed
		var st Status
		finished := subscribed == 0 || w.counts[rejected] > 0 || done || superseded
		if finished {
			st = t.watchStatus(w)
		}
		t.mu.Unlock()
		switch {
		case !finished:
		case len(st.Rejected) > 0:
			return st, &RejectedError{Rejections: st.Rejected}
		case superseded:
			return st, ErrSuperseded
		case st.Subscribed == 0:
			return st, ErrNoClients
		case st.Converged():
			return st, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			t.mu.Lock()
			st = t.watchStatus(w)
			t.mu.Unlock()
			return st, fmt.Errorf("waiting for %d of %d nodes: %w", len(st.Pending), st.Subscribed, ctx.Err())
		}
	}
}

// NodeStatus is what one node's stream has subscribed to and applied.
type NodeStatus struct {
	Node  NodeRef
	Delta bool
	Types []TypeStatus
}

// TypeStatus is a stream's state for one resource type.
type TypeStatus struct {
	TypeURL string
	// Wildcard or the subscribed names.
	Wildcard bool
	Names    []string
	// AckedVersion is the type version last ACKed (SotW) or the last
	// response version ACKed (delta).
	AckedVersion string
	// Rejection is the last NACK not followed by an ACK.
	Rejection *Rejection
}

func (t *tracker) nodes() []NodeStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []NodeStatus
	for _, s := range t.streams {
		if !s.known {
			continue
		}
		ns := NodeStatus{Node: s.ref(), Delta: s.delta}
		for k, ks := range s.kinds {
			if ks == nil {
				continue
			}
			ts := TypeStatus{TypeURL: kindURL[k], Wildcard: ks.wildcard, AckedVersion: ks.ackVersion}
			for n := range ks.names {
				ts.Names = append(ts.Names, n)
			}
			slices.Sort(ts.Names)
			if n := ks.nack; n != nil {
				ts.Rejection = &Rejection{Node: ns.Node, TypeURL: kindURL[k], Version: n.version, Message: n.message, At: n.at}
			}
			ns.Types = append(ns.Types, ts)
		}
		out = append(out, ns)
	}
	slices.SortFunc(out, func(a, b NodeStatus) int { return cmp.Compare(a.Node.Stream, b.Node.Stream) })
	return out
}
