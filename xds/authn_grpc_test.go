package xds

import (
	"testing"
	"time"
)

// Real proxyless grpc-go clients (the xds:/// resolver with a bootstrap's
// "tls" channel credentials) without the right identity get nothing from
// a mutual-TLS server: one without a client certificate is refused at the
// handshake, one whose certificate names namespace a but whose node id
// claims namespace b is refused with PermissionDenied and counted; and
// neither ever counts for a service. The same client with its own node id
// is served (TestNodeSeesOnlyItsNamespace).
func TestGRPCClientsWithoutTheirIdentityAreRefused(t *testing.T) {
	t.Parallel()
	e := newMeshEnv(t, Authorization{})
	tests := []struct {
		name, cert, node, target string
		reason                   string // counted in sluice_xds_refused_streams_total; "": refused by TLS
	}{
		{name: "no client certificate", node: identity("a") + "/pod-1", target: "reviews"},
		{name: "a's certificate, b's node id", cert: identity("a"), node: identity("b") + "/pod-1", target: "ratings", reason: ReasonMismatch},
		{name: "a's certificate, a node id that only starts like a's", cert: identity("a"), node: identity("a") + "-evil", target: "reviews", reason: ReasonMismatch},
	}
	for _, tc := range tests {
		if _, err := e.grpcClientAs(t, tc.cert, tc.node, tc.target, 3*time.Second); err == nil {
			t.Errorf("%s: served", tc.name)
		}
	}
	want := map[string]float64{}
	for _, tc := range tests {
		if tc.reason != "" {
			want[tc.reason]++
		}
	}
	got := map[string]float64{}
	mfs, err := e.reg.Gather()
	must(t, err)
	for _, mf := range mfs {
		if mf.GetName() == "sluice_xds_refused_streams_total" {
			for _, m := range mf.GetMetric() {
				got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	for r, n := range want {
		// grpc-go retries a refused stream with backoff: at least once each.
		if got[r] < n {
			t.Errorf("refused streams by reason %v, want at least %v", got, want)
		}
	}
	for svc, v := range map[string]string{"a/reviews": e.reviews.Version, "b/ratings": e.ratings.Version} {
		if st := e.srv.Status(svc, v); st.Subscribed != 0 {
			t.Errorf("%s: %+v, want no node counted", svc, st)
		}
	}
}
