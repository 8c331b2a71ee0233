package xds

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/sluicehq/sluice/internal/poll"
)

// staticTokens is a TokenVerifier that knows a fixed set of tokens.
type staticTokens map[string]Identity

func (s staticTokens) VerifyToken(_ context.Context, token string) (Identity, error) {
	if id, ok := s[token]; ok {
		return id, nil
	}
	return Identity{}, Refuse(ReasonTokenRejected, codes.Unauthenticated, "unknown token")
}

// A server that accepts client certificates and bearer tokens: every
// stream is verified by one of them, its node id must belong to the
// identity, and each refusal has its code, its message and its reason in
// the metric.
func TestAuthenticators(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	files := ca.serverFiles(t)
	files.ClientCertOptional = true
	reviews := KubernetesIdentity("cluster.local", "shop", "reviews", MethodToken)
	tokens := staticTokens{"good": reviews, "person": {}}
	reg := prometheus.NewRegistry()
	srv, err := New(Options{
		TLS:           &files,
		Authenticator: FirstOf(MutualTLS(), BearerToken(tokens)),
		Endpoints:     staticFor(t, "reviews"),
		Logger:        quiet,
		Registerer:    reg,
	})
	must(t, err)
	addr := serve(t, srv)

	dial, _ := tlsDialer(t, ca, addr, "spiffe://cluster.local/ns/shop/sa/ratings")

	tests := []struct {
		name   string
		cert   bool
		header []string // authorization values
		node   string
		code   codes.Code // OK: served
		want   string     // in the refusal
		reason string
	}{
		{name: "token, node id of its service account", header: []string{"Bearer good"}, node: reviews.SPIFFE + "/pod-1"},
		{name: "token, node id exactly the identity", header: []string{"bearer good"}, node: reviews.SPIFFE},
		{name: "certificate", cert: true, node: "spiffe://cluster.local/ns/shop/sa/ratings/pod-2"},
		{name: "certificate decides before a token", cert: true, header: []string{"Bearer good"}, node: reviews.SPIFFE, code: codes.PermissionDenied, want: "does not belong", reason: ReasonMismatch},
		{name: "no credentials", node: reviews.SPIFFE, code: codes.Unauthenticated, want: "no credentials", reason: ReasonNoCredentials},
		{name: "unknown token", header: []string{"Bearer forged"}, node: reviews.SPIFFE, code: codes.Unauthenticated, want: "unknown token", reason: ReasonTokenRejected},
		{name: "not a bearer token", header: []string{"Basic Z29vZA=="}, node: reviews.SPIFFE, code: codes.Unauthenticated, want: "Bearer <token>", reason: ReasonTokenRejected},
		{name: "two authorization headers", header: []string{"Bearer good", "Bearer good"}, node: reviews.SPIFFE, code: codes.Unauthenticated, want: "2 authorization headers", reason: ReasonTokenRejected},
		{name: "a token of no workload", header: []string{"Bearer person"}, node: reviews.SPIFFE, code: codes.PermissionDenied, want: "names no workload", reason: ReasonNotWorkload},
		{name: "a valid token claiming another service account", header: []string{"Bearer good"}, node: "spiffe://cluster.local/ns/shop/sa/ratings", code: codes.PermissionDenied, want: "does not belong", reason: ReasonMismatch},
		{name: "a node id that only starts like it", header: []string{"Bearer good"}, node: reviews.SPIFFE + "-evil", code: codes.PermissionDenied, want: "does not belong", reason: ReasonMismatch},
	}
	refusals := map[string]float64{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			for _, h := range tc.header {
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", h)
			}
			c := &adsClient{node: envoyNode(tc.node), follow: true}
			err := c.start(ctx, dial(tc.cert), envoyInitial)
			if tc.code == codes.OK {
				must(t, err)
				poll.Within(t, 10*time.Second, "the node connected", func() bool { return connected(srv, tc.node) })
				return
			}
			refusals[tc.reason]++
			if err == nil {
				err = <-c.done
			}
			if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %s naming %q", err, tc.code, tc.want)
			}
			if connected(srv, tc.node) {
				t.Fatalf("refused node %s is listed as connected", tc.node)
			}
		})
	}
	if got := refusedByReason(t, reg); !equalCounts(got, refusals) {
		t.Errorf("sluice_xds_refused_streams_total %v, want %v", got, refusals)
	}
}

// A token over plaintext is refused: the client has just shown it to
// whoever is listening.
func TestBearerTokenNeedsTLS(t *testing.T) {
	t.Parallel()
	id := KubernetesIdentity("cluster.local", "shop", "reviews", MethodToken)
	srv, err := New(Options{Authenticator: BearerToken(staticTokens{"good": id}), Logger: quiet})
	must(t, err)
	addr := serve(t, srv)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	must(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer good")
	c := &adsClient{node: envoyNode(id.SPIFFE), follow: true}
	err = c.start(ctx, conn, envoyInitial)
	if err == nil {
		err = <-c.done
	}
	if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "only over TLS") {
		t.Fatalf("token over plaintext: %v, want Unauthenticated", err)
	}
}

func connected(srv *Server, nodeID string) bool {
	for _, n := range srv.Nodes() {
		if n.Node.ID == nodeID {
			return true
		}
	}
	return false
}

func refusedByReason(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	got := map[string]float64{}
	mfs, err := reg.Gather()
	must(t, err)
	for _, mf := range mfs {
		if mf.GetName() == "sluice_xds_refused_streams_total" {
			for _, m := range mf.GetMetric() {
				if v := m.GetCounter().GetValue(); v > 0 {
					got[m.GetLabel()[0].GetValue()] = v
				}
			}
		}
	}
	return got
}

func equalCounts(a, b map[string]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestParseSPIFFE(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in     string
		ok     bool
		ns, sa string
	}{
		{"spiffe://cluster.local/ns/shop/sa/reviews", true, "shop", "reviews"},
		{"spiffe://example.org/checkout", true, "", ""},
		{"spiffe://example.org/ns/shop/sa/reviews/extra", true, "", ""},
		{"spiffe://example.org", false, "", ""},
		{"spiffe://example.org/", false, "", ""},
		{"spiffe://example.org/a//b", false, "", ""},
		{"spiffe://example.org/a/", false, "", ""},
		{"spiffe://user@example.org/a", false, "", ""},
		{"spiffe://example.org:443/a", false, "", ""},
		{"spiffe://example.org/a?x=1", false, "", ""},
		{"https://example.org/a", false, "", ""},
		{"spiffe:///a", false, "", ""},
	}
	for _, tc := range tests {
		id, err := ParseSPIFFE(tc.in, MethodMTLS)
		if (err == nil) != tc.ok {
			t.Errorf("ParseSPIFFE(%q) error %v, want ok=%v", tc.in, err, tc.ok)
			continue
		}
		if tc.ok && (id.Namespace != tc.ns || id.ServiceAccount != tc.sa || id.SPIFFE != tc.in) {
			t.Errorf("ParseSPIFFE(%q) = %+v", tc.in, id)
		}
	}
}

func FuzzParseSPIFFE(f *testing.F) {
	for _, s := range []string{"spiffe://cluster.local/ns/a/sb/b", "spiffe://x/y", "spiffe://x/%2F", "spiffe://x/ns//sa/b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseSPIFFE(s, MethodMTLS)
		if err != nil {
			return
		}
		// An accepted ID is the input itself, and a Kubernetes one is
		// rebuilt exactly from its parts: no second reading of a path.
		if id.SPIFFE != s || !strings.HasPrefix(s, "spiffe://") {
			t.Fatalf("ParseSPIFFE(%q) = %+v", s, id)
		}
		if id.Namespace != "" {
			rebuilt := strings.SplitN(strings.TrimPrefix(s, "spiffe://"), "/", 2)[0]
			if k := KubernetesIdentity(rebuilt, id.Namespace, id.ServiceAccount, MethodMTLS); k.SPIFFE != s {
				t.Fatalf("ParseSPIFFE(%q) parts rebuild %q", s, k.SPIFFE)
			}
		}
	})
}
