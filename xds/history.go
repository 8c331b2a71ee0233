package xds

import (
	"math"
	"slices"
)

// history is what the tracker remembers of one snapshot's (group and
// view) last generations: enough to tell which plan version the content a
// node ACKed belongs to, even when the node answers late.
//
// It keeps the latest generation whole and, for the older ones, only what
// changed: per resource the runs of generations during which it had one
// hash, and per owner the runs during which it had one share of the
// snapshot (plan version, resources and closures). A publish that changes
// one service adds a few runs, not a copy of every service's hashes and
// shares, so memory follows the number of resources and changes, not
// resources × generations; and a question about one owner reads that
// owner's runs instead of every generation.
//
// Generations are numbered by the tracker's publish sequence, shared by
// all histories, so a number never names two generations.
type history struct {
	latest *generation
	// seqs are the sequence numbers of the remembered generations, oldest
	// first, at most kept of them.
	seqs []uint64
	kept int
	// types maps a type version to the newest generation holding it.
	types [numKinds]map[string]uint64
	res   [numKinds]map[string][]hashRun
	// owners' runs are shared: a new generation whose share of an owner
	// equals the previous one extends its run and keeps its ownerInfo.
	owners map[ownerKey][]ownerRun
	// sinceSweep counts publishes since runs that ended before the oldest
	// remembered generation were last dropped.
	sinceSweep int
}

// current marks a run that the latest generation still holds.
const current = math.MaxUint64

// hashRun is a resource's hash over the generations from..to (inclusive).
type hashRun struct {
	hash     string
	from, to uint64
}

// ownerRun is an owner's share over the generations from..to.
type ownerRun struct {
	info     *ownerInfo
	from, to uint64
}

func newHistory(kept int) *history {
	h := &history{kept: kept, owners: map[ownerKey][]ownerRun{}}
	for k := range numKinds {
		h.types[k] = map[string]uint64{}
		h.res[k] = map[string][]hashRun{}
	}
	return h
}

// first is the oldest remembered generation's number.
func (h *history) first() uint64 {
	if len(h.seqs) == 0 {
		return current
	}
	return h.seqs[0]
}

// add records gen as generation seq (greater than any before), closing
// the runs it does not continue, and forgets what only generations beyond
// the bound held.
func (h *history) add(gen *generation, seq uint64) {
	var prev *generation
	if h.latest != nil {
		prev = h.latest
	}
	for k := range numKinds {
		var old map[string]string
		if prev != nil {
			old = prev.hashes[k]
		}
		runs := h.res[k]
		for name, hash := range gen.hashes[k] {
			if oh, ok := old[name]; ok {
				if oh == hash {
					continue
				}
				closeRun(runs[name], seq)
			}
			runs[name] = append(runs[name], hashRun{hash: hash, from: seq, to: current})
		}
		for name := range old {
			if _, ok := gen.hashes[k][name]; !ok {
				closeRun(runs[name], seq)
			}
		}
		h.types[k][gen.versions[k]] = seq
	}
	for o, info := range gen.owners {
		runs := h.owners[o]
		if n := len(runs); n > 0 && runs[n-1].to == current {
			if sameShare(runs[n-1].info, info) {
				continue
			}
			runs[n-1].to = seq - 1
		}
		h.owners[o] = append(runs, ownerRun{info: info, from: seq, to: current})
	}
	if prev != nil {
		for o := range prev.owners {
			if _, ok := gen.owners[o]; !ok {
				if runs := h.owners[o]; len(runs) > 0 && runs[len(runs)-1].to == current {
					runs[len(runs)-1].to = seq - 1
				}
			}
		}
	}
	h.latest = gen
	h.seqs = append(h.seqs, seq)
	if len(h.seqs) > h.kept {
		h.seqs = slices.Delete(h.seqs, 0, len(h.seqs)-h.kept)
	}
	// Dropping runs is a pass over every resource, so it is done once per
	// kept publishes: memory stays within about twice the bound.
	if h.sinceSweep++; h.sinceSweep >= h.kept {
		h.sweep()
	}
}

func closeRun(runs []hashRun, seq uint64) {
	if n := len(runs); n > 0 && runs[n-1].to == current {
		runs[n-1].to = seq - 1
	}
}

// sameShare reports whether two shares of an owner are the same, so the
// run of the first may go on.
func sameShare(a, b *ownerInfo) bool {
	if a == b {
		return true
	}
	return a.planVersion == b.planVersion && slices.Equal(a.owned, b.owned) &&
		slices.EqualFunc(a.closure, b.closure, sameNeeds)
}

// sweep drops the runs that ended before the oldest remembered
// generation, and the type versions only such generations held.
func (h *history) sweep() {
	h.sinceSweep = 0
	first := h.first()
	for k := range numKinds {
		for name, runs := range h.res[k] {
			if runs = dropEnded(runs, first, func(r hashRun) uint64 { return r.to }); len(runs) == 0 {
				delete(h.res[k], name)
			} else {
				h.res[k][name] = runs
			}
		}
		for v, seq := range h.types[k] {
			if seq < first {
				delete(h.types[k], v)
			}
		}
	}
	for o, runs := range h.owners {
		if runs = dropEnded(runs, first, func(r ownerRun) uint64 { return r.to }); len(runs) == 0 {
			delete(h.owners, o)
		} else {
			h.owners[o] = runs
		}
	}
}

// dropEnded removes the leading runs that ended before first; runs are
// in order, so those are a prefix. The slice is copied when it shrinks,
// so the dropped runs are freed.
func dropEnded[R any](runs []R, first uint64, end func(R) uint64) []R {
	i := 0
	for i < len(runs) && end(runs[i]) < first {
		i++
	}
	if i == 0 {
		return runs
	}
	return slices.Clone(runs[i:])
}

// hashAt is the resource's hash in generation seq.
func (h *history) hashAt(k kind, name string, seq uint64) (string, bool) {
	runs := h.res[k][name]
	for i := len(runs) - 1; i >= 0; i-- {
		if r := runs[i]; r.from <= seq {
			return r.hash, seq <= r.to
		}
	}
	return "", false
}

// hashesIn lists every hash the resource had in the generations from..to
// that are still remembered.
func (h *history) hashesIn(k kind, name string, from, to uint64, into []string) []string {
	from = max(from, h.first())
	for _, r := range h.res[k][name] {
		if r.from <= to && r.to >= from && !slices.Contains(into, r.hash) {
			into = append(into, r.hash)
		}
	}
	return into
}

// each calls f with every resource of kind k in generation seq.
func (h *history) each(k kind, seq uint64, f func(name, hash string) bool) {
	for name := range h.res[k] {
		if hash, ok := h.hashAt(k, name, seq); ok && !f(name, hash) {
			return
		}
	}
}

// content names one type version's resources in a history, for an ACK or
// a NACK that named only the version (state of the world). It stays
// readable after the version leaves the history, for the resources that
// did not change since.
type content struct {
	h       *history
	k       kind
	version string
	// seq is the generation the version was last seen in when it was
	// answered; the history's own record wins while it has one, since
	// the same content may be published again.
	seq uint64
}

func (t *tracker) contentOf(key snapKey, k kind, version string) content {
	h := t.hist[key]
	if h == nil {
		return content{}
	}
	return content{h: h, k: k, version: version, seq: h.types[k][version]}
}

func (c content) at() uint64 {
	if c.h == nil {
		return 0
	}
	if seq, ok := c.h.types[c.k][c.version]; ok {
		return seq
	}
	return c.seq
}

// hash is the named resource's hash in the content.
func (c content) hash(name string) (string, bool) {
	seq := c.at()
	if seq == 0 {
		return "", false
	}
	return c.h.hashAt(c.k, name, seq)
}

// each calls f with every resource of the content.
func (c content) each(f func(name, hash string) bool) {
	if seq := c.at(); seq != 0 {
		c.h.each(c.k, seq, f)
	}
}
