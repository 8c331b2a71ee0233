package xds

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
	"unsafe"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
)

func internTracker(t *testing.T) *tracker {
	t.Helper()
	m, err := newMetrics(nil)
	must(t, err)
	return newTracker(4, m, time.Now)
}

// same reports whether a and b share their bytes, not only their text.
func same(a, b string) bool { return a == b && unsafe.StringData(a) == unsafe.StringData(b) }

func TestInternRequest(t *testing.T) {
	t.Parallel()
	const route, cluster = "reviews.mesh:9080", "outbound|9080|canary|reviews.mesh"
	for _, tc := range []struct {
		name        string
		names       []string
		sent        *sentResponse
		version     string
		nonce       string
		shared      []bool // per name: the published copy
		sharedVer   bool
		sharedNonce bool
	}{
		{name: "published names", names: []string{route, cluster}, shared: []bool{true, true}},
		{name: "a client's own name stays its own", names: []string{route, "made-up"}, shared: []bool{true, false}},
		{name: "wildcard", names: []string{"*"}, shared: []bool{false}},
		{name: "an ACK takes the response's version and nonce", names: []string{route},
			sent: &sentResponse{nonce: "7", version: "v-abc"}, version: "v-abc", nonce: "7",
			shared: []bool{true}, sharedVer: true, sharedNonce: true},
		{name: "a NACK keeps the version it had", names: []string{route},
			sent: &sentResponse{nonce: "7", version: "v-new"}, version: "v-old", nonce: "7",
			shared: []bool{true}, sharedVer: false, sharedNonce: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tr := internTracker(t)
			gen := &generation{group: GroupEnvoy, view: allView}
			gen.hashes[kindRoute] = map[string]string{route: "h1"}
			gen.hashes[kindCluster] = map[string]string{cluster: "h2"}
			tr.publish(gen)
			published := map[string]string{}
			for _, m := range gen.hashes {
				for n := range m {
					published[n] = n
				}
			}
			// Decoded strings are copies of their own.
			req := &discoveryv3.DiscoveryRequest{
				TypeUrl:       strings.Clone(kindURL[kindRoute]),
				VersionInfo:   strings.Clone(tc.version),
				ResponseNonce: strings.Clone(tc.nonce),
			}
			for _, n := range tc.names {
				req.ResourceNames = append(req.ResourceNames, strings.Clone(n))
			}
			tr.mu.Lock()
			tr.intern(req, tc.sent)
			tr.mu.Unlock()
			if !same(req.GetTypeUrl(), kindURL[kindRoute]) {
				t.Error("type URL: not the shared copy")
			}
			for i, n := range req.GetResourceNames() {
				if n != tc.names[i] {
					t.Errorf("name %d: %q, want %q", i, n, tc.names[i])
				}
				if got := same(n, published[n]); got != tc.shared[i] {
					t.Errorf("name %q: shared %v, want %v", n, got, tc.shared[i])
				}
			}
			if _, ok := tr.names["made-up"]; ok {
				t.Error("a client's name entered the table")
			}
			if tc.sent == nil {
				return
			}
			if req.GetVersionInfo() != tc.version || same(req.GetVersionInfo(), tc.sent.version) != tc.sharedVer {
				t.Errorf("version %q: shared %v, want %v", req.GetVersionInfo(), !tc.sharedVer, tc.sharedVer)
			}
			if req.GetResponseNonce() != tc.nonce || same(req.GetResponseNonce(), tc.sent.nonce) != tc.sharedNonce {
				t.Errorf("nonce %q: shared %v, want %v", req.GetResponseNonce(), !tc.sharedNonce, tc.sharedNonce)
			}
		})
	}
}

// TestInternTableBounded: names no longer published leave the table once
// they outnumber the bound, and the current ones stay.
func TestInternTableBounded(t *testing.T) {
	t.Parallel()
	tr := internTracker(t)
	last := ""
	for i := range 5 * maxStaleNames {
		gen := &generation{group: GroupEnvoy, view: allView}
		last = fmt.Sprintf("route-%d", i)
		gen.hashes[kindRoute] = map[string]string{last: "h", "stays": "h"}
		tr.publish(gen)
		if len(tr.names) > maxStaleNames+2 {
			t.Fatalf("after %d publishes the table holds %d names; want at most %d", i+1, len(tr.names), maxStaleNames+2)
		}
	}
	for _, n := range []string{last, "stays"} {
		if _, ok := tr.names[n]; !ok {
			t.Errorf("%q, published now, is not in the table", n)
		}
	}
}

// TestIdentifiedNodeTrimmed: once a stream is identified its node keeps
// only its id and cluster (go-control-plane holds it for the stream's
// life), and a later request is still checked against that id.
func TestIdentifiedNodeTrimmed(t *testing.T) {
	t.Parallel()
	tr := internTracker(t)
	must(t, tr.OnStreamOpen(context.Background(), 1, ""))
	node := envoyNode("sidecar-1")
	node.UserAgentVersionType = &corev3.Node_UserAgentVersion{UserAgentVersion: "1.36.0"}
	node.Extensions = []*corev3.Extension{{Name: "envoy.filters.http.router", Category: "envoy.filters.http"}}
	node.ClientFeatures = []string{"envoy.lb.does_not_support_overprovisioning"}
	must(t, tr.OnStreamRequest(1, &discoveryv3.DiscoveryRequest{Node: node, TypeUrl: kindURL[kindCluster]}))
	want := &corev3.Node{Id: "sidecar-1", Cluster: envoyNode("sidecar-1").GetCluster()}
	if !proto.Equal(node, want) {
		t.Errorf("node after identification: %v; want %v", node, want)
	}
	if got := tr.nodes(); len(got) != 1 || got[0].Node.ID != "sidecar-1" || got[0].Node.Cluster != "test" {
		t.Errorf("nodes: %+v; want sidecar-1", got)
	}
	// go-control-plane fills in the kept node on requests without one.
	must(t, tr.OnStreamRequest(1, &discoveryv3.DiscoveryRequest{Node: node, TypeUrl: kindURL[kindListener]}))
	if err := tr.OnStreamRequest(1, &discoveryv3.DiscoveryRequest{Node: envoyNode("other"), TypeUrl: kindURL[kindListener]}); err == nil {
		t.Error("a request naming another node was accepted")
	}
}
