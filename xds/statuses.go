package xds

import "slices"

// Statuses is Status for many services at once: versions maps a
// ServiceKey to the plan version asked about, and the answer has one
// Status per key. It judges each node only against the services it
// subscribes to, so asking about every service a server routes costs
// about one Status per node rather than one per service and node: what a
// report of thousands of services to thousands of proxyless clients
// needs.
func (s *Server) Statuses(versions map[string]string) map[string]Status {
	asks := make(map[ownerKey]string, len(versions))
	for svc, v := range versions {
		asks[serviceOwner(svc)] = v
	}
	got := s.tracker.statuses(asks)
	out := make(map[string]Status, len(versions))
	for svc := range versions {
		owner := serviceOwner(svc)
		st := got[owner]
		s.asStaged(&st, owner)
		st.Service = svc
		out[svc] = st
	}
	return out
}

// statuses answers every question in one pass over the streams. An index
// from (group, kind, resource name) to the questions owning that resource
// picks each stream's candidates: those it names, or, for a kind it
// subscribes to by wildcard, every question with resources of that kind.
// judge then decides as it does for status, so the answers are the same.
func (t *tracker) statuses(asks map[ownerKey]string) map[ownerKey]Status {
	t.mu.Lock()
	defer t.mu.Unlock()
	qs := make([]*query, 0, len(asks))
	out := make(map[ownerKey]Status, len(asks))
	index := map[snapKey]*[numKinds]map[string][]int{}
	for owner, version := range asks {
		q := t.newQuery(owner, version)
		out[owner] = Status{PlanVersion: version, Published: q.published, Current: q.current}
		for g, p := range q.groups {
			ix := index[g]
			if ix == nil {
				ix = &[numKinds]map[string][]int{}
				for k := range numKinds {
					ix[k] = map[string][]int{}
				}
				index[g] = ix
			}
			for _, id := range p.ids {
				ix[id.kind][id.name] = append(ix[id.kind][id.name], len(qs))
			}
		}
		qs = append(qs, q)
	}
	ids := make([]int64, 0, len(t.streams))
	for id, s := range t.streams {
		if s.known && index[s.key()] != nil {
			ids = append(ids, id)
		}
	}
	// In stream order, as status lists Pending and Rejected.
	slices.Sort(ids)
	// seen[i] is 1 + the position in ids of the last stream that took
	// question i as a candidate.
	seen := make([]int, len(qs))
	var cands []int
	for n, id := range ids {
		s := t.streams[id]
		ix := index[s.key()]
		cands = cands[:0]
		take := func(is []int) {
			for _, i := range is {
				if seen[i] != n+1 {
					seen[i] = n + 1
					cands = append(cands, i)
				}
			}
		}
		for k, ks := range s.kinds {
			switch {
			case ks == nil:
			case ks.wildcard:
				for _, is := range ix[k] {
					take(is)
				}
			default:
				for name := range ks.names {
					take(ix[k][name])
				}
			}
		}
		for _, i := range cands {
			st := out[qs[i].owner]
			v, rej := t.judge(s, qs[i])
			st.count(s, v, rej)
			out[qs[i].owner] = st
		}
	}
	for o, st := range out {
		t.addSilent(&st)
		out[o] = st
	}
	return out
}
