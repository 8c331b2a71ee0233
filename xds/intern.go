package xds

import discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"

// Every stream's requests repeat the same strings: the type URL, the names
// of the resources it subscribes to, the version and nonce it answers. The
// decoded request is kept (go-control-plane's watch holds the last one of
// each type, its subscription keys the names, and so does the tracker's
// kindState), so each stream would otherwise hold its own copy of each, a
// few hundred bytes per stream that thousands of streams repeat. The
// tracker swaps them for one shared copy before anything keeps the
// request. Only names of published resources are shared: a client's made-up
// names are left as they came, so what a client sends cannot grow the table.

// maxStaleNames is how many names no longer published the table may hold
// before it is rebuilt from the current generations.
const maxStaleNames = 1024

// internNames adds a new generation's resource names to the table, and
// rebuilds the table when names added since the last rebuild outnumber
// both maxStaleNames and half of the table, so names of resources no longer
// published do not pile up. Caller holds mu.
func (t *tracker) internNames(gen *generation) {
	if t.names == nil {
		t.names = map[string]string{}
	}
	for k := range numKinds {
		for name := range gen.hashes[k] {
			if _, ok := t.names[name]; !ok {
				t.names[name] = name
				t.namesAdded++
			}
		}
	}
	if t.namesAdded <= maxStaleNames || t.namesAdded <= len(t.names)/2 {
		return
	}
	t.names = map[string]string{}
	for _, h := range t.hist {
		if h.latest == nil {
			continue
		}
		for k := range numKinds {
			for name := range h.latest.hashes[k] {
				t.names[name] = name
			}
		}
	}
	t.namesAdded = 0
}

// intern replaces a SotW request's type URL and resource names with the
// shared copies, in place, and its version and nonce with those of the
// response it answers (sent), when it answers one. Caller holds mu.
func (t *tracker) intern(req *discoveryv3.DiscoveryRequest, sent *sentResponse) {
	if k, ok := kindOf(req.GetTypeUrl()); ok {
		req.TypeUrl = kindURL[k]
	}
	for i, n := range req.GetResourceNames() {
		if c, ok := t.names[n]; ok {
			req.ResourceNames[i] = c
		}
	}
	if sent == nil {
		return
	}
	if req.GetVersionInfo() == sent.version {
		req.VersionInfo = sent.version
	}
	if req.GetResponseNonce() == sent.nonce {
		req.ResponseNonce = sent.nonce
	}
}
