package xds

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"
	grpcxds "google.golang.org/grpc/xds"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/xdstest"
	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/plan"
)

func TestAuthorizationCheck(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		grant Grant
		want  string // "" = valid
	}{
		{"namespace to services", Grant{From: GrantFrom{Namespace: "a"}, Services: []string{"b/ratings", "c/*", "standalone", "*"}}, ""},
		{"spiffe", Grant{From: GrantFrom{SPIFFE: "spiffe://td/ns/a/sa/x"}, Services: []string{"b/ratings"}}, ""},
		{"both from", Grant{From: GrantFrom{Namespace: "a", SPIFFE: "spiffe://td/x"}, Services: []string{"b/r"}}, "grants[0].from: set exactly one"},
		{"no from", Grant{Services: []string{"b/r"}}, "grants[0].from: set exactly one"},
		{"bad spiffe", Grant{From: GrantFrom{SPIFFE: "https://td/x"}, Services: []string{"b/r"}}, "grants[0].from.spiffe"},
		{"namespace pattern", Grant{From: GrantFrom{Namespace: "a*"}, Services: []string{"b/r"}}, "grants[0].from.namespace"},
		{"no services", Grant{From: GrantFrom{Namespace: "a"}}, "grants[0].services: name at least one"},
		{"partial wildcard", Grant{From: GrantFrom{Namespace: "a"}, Services: []string{"b/rev*"}}, "grants[0].services[0]"},
		{"empty namespace", Grant{From: GrantFrom{Namespace: "a"}, Services: []string{"/r"}}, "grants[0].services[0]"},
		{"empty name", Grant{From: GrantFrom{Namespace: "a"}, Services: []string{"ok", "b/"}}, "grants[0].services[1]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := Authorization{Grants: []Grant{tc.grant}}.Check("xds.authorization")
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Check: %v, want valid", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), "xds.authorization."+tc.want)):
				t.Errorf("Check: %v, want an error naming %q", err, tc.want)
			}
		})
	}
	if _, err := New(Options{Logger: quiet, Authorization: Authorization{Grants: []Grant{{}}}}); err == nil {
		t.Error("New accepted a malformed grant")
	}
}

func TestScopeOf(t *testing.T) {
	t.Parallel()
	a := KubernetesIdentity("td", "a", "app", MethodMTLS)
	b := KubernetesIdentity("td", "b", "app", MethodMTLS)
	workload, err := ParseSPIFFE("spiffe://td/frontend", MethodMTLS)
	must(t, err)
	grants := Authorization{Grants: []Grant{
		{From: GrantFrom{Namespace: "a"}, Services: []string{"b/ratings", "a/reviews"}},
		{From: GrantFrom{SPIFFE: b.SPIFFE}, Services: []string{"c/*"}},
		{From: GrantFrom{SPIFFE: workload.SPIFFE}, Services: []string{"*"}},
	}}
	type see struct {
		ns, name string
		want     bool
	}
	for _, tc := range []struct {
		name  string
		authz Authorization
		id    Identity
		sees  []see
	}{
		{"unauthenticated sees everything", Authorization{}, Identity{}, []see{{"a", "x", true}, {"", "x", true}}},
		{"own namespace and unnamed", Authorization{}, a, []see{{"a", "x", true}, {"", "x", true}, {"b", "ratings", false}}},
		{"a workload name sees unnamed", Authorization{}, workload, []see{{"", "x", true}, {"a", "x", false}}},
		{"namespace grant", grants, a, []see{{"b", "ratings", true}, {"b", "details", false}, {"a", "x", true}}},
		{"spiffe grant", grants, b, []see{{"c", "x", true}, {"b", "x", true}, {"a", "reviews", false}}},
		{"star grant", grants, workload, []see{{"q", "x", true}}},
		{"grants only", Authorization{GrantsOnly: true, Grants: grants.Grants}, a, []see{{"b", "ratings", true}, {"a", "reviews", true}, {"a", "x", false}, {"", "x", false}}},
		{"grants only, none", Authorization{GrantsOnly: true}, a, []see{{"a", "x", false}, {"", "x", false}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sc := tc.authz.scopeOf(tc.id)
			for _, s := range tc.sees {
				if got := sc.allows(s.ns, s.name); got != s.want {
					t.Errorf("%s sees %s/%s: %v, want %v (scope %s)", tc.id, s.ns, s.name, got, s.want, sc)
				}
			}
		})
	}
	// Equal scopes share a view; a redundant grant changes nothing.
	redundant := Authorization{Grants: []Grant{{From: GrantFrom{Namespace: "a"}, Services: []string{"a/reviews"}}}}
	if k1, k2 := (Authorization{}).scopeOf(a).key(), redundant.scopeOf(a).key(); k1 != k2 {
		t.Errorf("a grant of a service in the own namespace made another view: %s, %s", k1, k2)
	}
	if (Authorization{}).scopeOf(a).key() == (Authorization{}).scopeOf(b).key() {
		t.Error("two namespaces share a view")
	}
}

// meshEnv is a mutual-TLS server with two namespaces: a/reviews (host
// reviews) and b/ratings (host ratings), each with real backends.
type meshEnv struct {
	srv     *Server
	reg     *prometheus.Registry
	addr    string
	ca      *testCA
	files   TLSFiles
	reviews plan.Plan
	ratings plan.Plan
}

func newMeshEnv(t *testing.T, authz Authorization) *meshEnv {
	t.Helper()
	e := &meshEnv{ca: newTestCA(t), reg: prometheus.NewRegistry()}
	e.files = e.ca.serverFiles(t)
	eps := NewStatic()
	for _, s := range []struct{ ns, name string }{{"a", "reviews"}, {"b", "ratings"}} {
		must(t, eps.Set(s.ns, s.name, revStable, xdstest.Backend(t, "127.0.0.1", s.name+"-stable")))
		must(t, eps.Set(s.ns, s.name, revCanary, xdstest.Backend(t, "127.0.0.1", s.name+"-canary")))
	}
	var err error
	e.srv, err = New(Options{TLS: &e.files, Endpoints: eps, Logger: quiet, Authorization: authz, Registerer: e.reg})
	must(t, err)
	e.addr = serve(t, e.srv)
	e.reviews = inNamespace("a", canaryPlan("reviews", 0, []string{"reviews"}))
	e.ratings = inNamespace("b", canaryPlan("ratings", 0, []string{"ratings"}))
	must(t, e.srv.Publish(context.Background(), []plan.Plan{e.reviews, e.ratings}))
	return e
}

func inNamespace(ns string, p plan.Plan) plan.Plan {
	return edit(p, func(p *plan.Plan) { p.Namespace = ns })
}

// identity is a Kubernetes workload's SPIFFE ID in the test trust domain.
func identity(ns string) string { return "spiffe://sluice.test/ns/" + ns + "/sa/app" }

// conn is a raw ADS connection with a client certificate naming id.
func (e *meshEnv) conn(t *testing.T, id string) *grpc.ClientConn {
	t.Helper()
	cc, ck := e.ca.issue(t, 40, "client", x509.ExtKeyUsageClientAuth, id)
	cert, err := tls.X509KeyPair(cc, ck)
	must(t, err)
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.cert)
	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})))
	must(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// grpcClient is a real proxyless gRPC client of xds:///target whose own
// xDS client talks mutual TLS with a certificate naming id, as grpc-go's
// bootstrap "tls" channel credentials do. It returns the first call's
// error: nil once the route works.
func (e *meshEnv) grpcClient(t *testing.T, id, target string, wait time.Duration) (grpc_testing.TestServiceClient, error) {
	t.Helper()
	return e.grpcClientAs(t, id, id+"/pod-1", target, wait)
}

// grpcClientAs is grpcClient with a certificate naming certID (none when
// empty) and a node id of its own.
func (e *meshEnv) grpcClientAs(t *testing.T, certID, nodeID, target string, wait time.Duration) (grpc_testing.TestServiceClient, error) {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "ca.pem"), e.ca.pem)
	creds := map[string]string{"ca_certificate_file": filepath.Join(dir, "ca.pem")}
	if certID != "" {
		cc, ck := e.ca.issue(t, 50, "client", x509.ExtKeyUsageClientAuth, certID)
		writeFile(t, filepath.Join(dir, "cert.pem"), cc)
		writeFile(t, filepath.Join(dir, "key.pem"), ck)
		creds["certificate_file"] = filepath.Join(dir, "cert.pem")
		creds["private_key_file"] = filepath.Join(dir, "key.pem")
	}
	type server struct {
		URI      string           `json:"server_uri"`
		Creds    []map[string]any `json:"channel_creds"`
		Features []string         `json:"server_features"`
	}
	bootstrap, err := json.Marshal(struct {
		Servers []server          `json:"xds_servers"`
		Node    map[string]string `json:"node"`
	}{
		Servers: []server{{URI: e.addr, Features: []string{"xds_v3"}, Creds: []map[string]any{{"type": "tls", "config": creds}}}},
		Node:    map[string]string{"id": nodeID, "cluster": "echo"},
	})
	must(t, err)
	rb, err := grpcxds.NewXDSResolverWithConfigForTesting(bootstrap)
	must(t, err)
	conn, err := grpc.NewClient("xds:///"+target, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(rb))
	must(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c := grpc_testing.NewTestServiceClient(conn)
	_, err = c.UnaryCall(ctx, &grpc_testing.SimpleRequest{}, grpc.WaitForReady(true))
	return c, err
}

// seen records the resource names a raw client was sent, per kind, and
// the virtual hosts of the route configurations.
type seen struct {
	mu     sync.Mutex
	names  [numKinds]map[string]bool
	vhosts map[string]bool
}

func (s *seen) record(resp *discoveryv3.DiscoveryResponse) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, _ := kindOf(resp.GetTypeUrl())
	if s.names[k] == nil {
		s.names[k] = map[string]bool{}
	}
	if s.vhosts == nil {
		s.vhosts = map[string]bool{}
	}
	for _, a := range resp.GetResources() {
		if k == kindRoute {
			rc := &routev3.RouteConfiguration{}
			if err := a.UnmarshalTo(rc); err == nil {
				s.names[k][rc.GetName()] = true
				for _, vh := range rc.GetVirtualHosts() {
					s.vhosts[vh.GetName()] = true
				}
			}
			continue
		}
		var n struct{ Name string }
		// Listeners and clusters have a name, endpoints a cluster name.
		if m, err := a.UnmarshalNew(); err == nil {
			b, _ := json.Marshal(m)
			_ = json.Unmarshal(b, &n)
			if n.Name == "" {
				var cla struct {
					ClusterName string `json:"cluster_name"`
				}
				_ = json.Unmarshal(b, &cla)
				n.Name = cla.ClusterName
			}
		}
		s.names[k][n.Name] = true
	}
	return ""
}

func (s *seen) sorted(k kind) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for n := range s.names[k] {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// A node sees only its own namespace's services: real grpc-go clients
// reach their namespace's host and not the other's, an Envoy-like client
// subscribing to everything is sent only its namespace's listeners,
// routes (virtual hosts), clusters and endpoints, and each node counts
// only for its own service.
func TestNodeSeesOnlyItsNamespace(t *testing.T) {
	t.Parallel()
	e := newMeshEnv(t, Authorization{})

	a, err := e.grpcClient(t, identity("a"), "reviews", 20*time.Second)
	if err != nil {
		t.Fatalf("a's client of its own reviews: %v", err)
	}
	if got := xdstest.Calls(t, a, 10); got["reviews-stable"] != 10 {
		t.Errorf("a's client served by %v, want reviews-stable", got)
	}
	if _, err := e.grpcClient(t, identity("a"), "ratings", 3*time.Second); err == nil {
		t.Error("a's client reached b's ratings")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var sb seen
	envoyB := &adsClient{node: envoyNode(identity("b") + "/sidecar"), follow: true, reject: sb.record}
	must(t, envoyB.start(ctx, e.conn(t, identity("b")), envoyInitial))
	poll.Within(t, 10*time.Second, "b's sidecar applied ratings", func() bool {
		st := e.srv.Status("b/ratings", e.ratings.Version)
		// Only b's sidecar counts: a's client asked for ratings in vain.
		return st.Converged() && st.Acked == 1 && len(sb.sorted(kindEndpoint)) > 0
	})
	if got := sb.sorted(kindCluster); !slices.Equal(got, []string{"b/ratings|v1", "b/ratings|v2"}) {
		t.Errorf("b's sidecar got clusters %v, want b/ratings' only", got)
	}
	if got := sb.sorted(kindEndpoint); !slices.Equal(got, []string{"b/ratings|v1", "b/ratings|v2"}) {
		t.Errorf("b's sidecar got endpoints %v", got)
	}
	if got := sb.sorted(kindListener); len(got) != 1 {
		t.Errorf("b's sidecar got listeners %v, want the one of port 9080", got)
	}
	sb.mu.Lock()
	if sb.vhosts["reviews"] || !sb.vhosts["ratings"] {
		t.Errorf("b's sidecar got virtual hosts %v, want ratings only", sb.vhosts)
	}
	sb.mu.Unlock()

	for svc, want := range map[string]int{"a/reviews": 1, "b/ratings": 1} {
		v := map[string]string{"a/reviews": e.reviews.Version, "b/ratings": e.ratings.Version}[svc]
		if st := e.srv.Status(svc, v); st.Subscribed != want || !st.Converged() {
			t.Errorf("%s: %+v, want %d subscribed node, converged", svc, st, want)
		}
	}
	// Two views, one per namespace, each a snapshot per group.
	e.srv.pub.Lock()
	views := len(e.srv.views)
	e.srv.pub.Unlock()
	if views != 2 {
		t.Errorf("%d views, want 2", views)
	}
}

// A grant widens the view: a's nodes see b/ratings too, and answer for it.
func TestGrantWidensTheView(t *testing.T) {
	t.Parallel()
	e := newMeshEnv(t, Authorization{Grants: []Grant{{From: GrantFrom{Namespace: "a"}, Services: []string{"b/ratings"}}}})
	c, err := e.grpcClient(t, identity("a"), "ratings", 20*time.Second)
	if err != nil {
		t.Fatalf("a's client of granted ratings: %v", err)
	}
	if got := xdstest.Calls(t, c, 10); got["ratings-stable"] != 10 {
		t.Errorf("served by %v, want ratings-stable", got)
	}
	poll.Within(t, 10*time.Second, "a's client counts for b/ratings", func() bool {
		st := e.srv.Status("b/ratings", e.ratings.Version)
		return st.Subscribed == 1 && st.Converged()
	})
	// b has no grant: its view is b's own.
	if _, err := e.grpcClient(t, identity("b"), "reviews", 3*time.Second); err == nil {
		t.Error("b's client reached a's reviews without a grant")
	}
}

// A node of namespace b cannot stop a's rollout: a NACK of everything it
// receives, with text naming a's resources, leaves a's status as it was,
// while the same NACK does count against b's own service. A stream that
// later names another node is refused.
func TestForgedNackFromAnotherNamespaceChangesNothing(t *testing.T) {
	t.Parallel()
	e := newMeshEnv(t, Authorization{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	good := &adsClient{node: envoyNode(identity("a") + "/sidecar"), follow: true}
	must(t, good.start(ctx, e.conn(t, identity("a")), envoyInitial))
	poll.Within(t, 10*time.Second, "a's sidecar applied reviews", func() bool {
		return e.srv.Status("a/reviews", e.reviews.Version).Converged()
	})

	rogue := &adsClient{node: envoyNode(identity("b") + "/rogue"), reject: func(*discoveryv3.DiscoveryResponse) string {
		return "rogue NACK of a/reviews|v2 and 9080 <script>"
	}}
	// It asks for a's resources by name and for everything.
	initial := map[kind][]string{kindListener: nil, kindCluster: {"a/reviews|v1", "a/reviews|v2"}, kindRoute: {"9080"}, kindEndpoint: {"a/reviews|v2"}}
	must(t, rogue.start(ctx, e.conn(t, identity("b")), initial))
	poll.Within(t, 10*time.Second, "the rogue's NACK counts against b's ratings", func() bool {
		return len(e.srv.Status("b/ratings", e.ratings.Version).Rejected) > 0
	})
	st := e.srv.Status("a/reviews", e.reviews.Version)
	if st.Subscribed != 1 || !st.Converged() || len(st.Rejected) != 0 {
		t.Errorf("a/reviews after b's forged NACK: %+v, want 1 node, converged, no rejection", st)
	}
	// A real proxyless client of a, connected after the forged NACK, is
	// served a's routes, and its ACK is what counts.
	ga, err := e.grpcClient(t, identity("a"), "reviews", 20*time.Second)
	if err != nil {
		t.Fatalf("a's grpc-go client after b's forged NACK: %v", err)
	}
	if got := xdstest.Calls(t, ga, 10); got["reviews-stable"] != 10 {
		t.Errorf("a's grpc-go client served by %v, want reviews-stable", got)
	}
	poll.Within(t, 10*time.Second, "a's two nodes applied reviews, no rejection", func() bool {
		st := e.srv.Status("a/reviews", e.reviews.Version)
		return st.Subscribed == 2 && st.Converged() && len(st.Rejected) == 0
	})
	st = e.srv.Status("a/reviews", e.reviews.Version)
	if dp := st.DataPlane(); dp.State != engine.AckAcknowledged {
		t.Errorf("a's observation %+v, want Acknowledged", dp)
	}

	// Another node id on the same stream is refused.
	must(t, rogue.stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: kindURL[kindCluster], Node: envoyNode(identity("a") + "/x")}))
	select {
	case err := <-rogue.done:
		for errors.Is(err, io.EOF) || err == nil {
			// The loop's Send saw the end; Recv has the status, after
			// any responses still buffered.
			_, err = rogue.stream.Recv()
		}
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("stream naming another node: %v, want PermissionDenied", err)
		}
	case <-ctx.Done():
		t.Fatal("a stream naming another node id was kept")
	}
}

// Views are built when a namespace's first node comes and dropped with
// its last; delta clients get their view too.
func TestViewLifecycle(t *testing.T) {
	t.Parallel()
	e := newMeshEnv(t, Authorization{})
	views := func() int {
		e.srv.pub.Lock()
		defer e.srv.pub.Unlock()
		return len(e.srv.views)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var conns []*grpc.ClientConn
	for i := range 3 {
		conn := e.conn(t, identity("a"))
		conns = append(conns, conn)
		c := &deltaClient{node: envoyNode(identity("a") + "/pod-" + string(rune('0'+i)))}
		must(t, c.start(ctx, conn, [numKinds]map[string]string{}))
	}
	poll.Within(t, 10*time.Second, "three delta nodes applied a/reviews", func() bool {
		st := e.srv.Status("a/reviews", e.reviews.Version)
		return st.Subscribed == 3 && st.Converged()
	})
	if n := views(); n != 1 {
		t.Errorf("%d views for one namespace, want 1", n)
	}
	if st := e.srv.Status("b/ratings", e.ratings.Version); st.Subscribed != 0 {
		t.Errorf("a's delta nodes count for b/ratings: %+v", st)
	}
	// A publish reaches the view.
	next := inNamespace("a", canaryPlan("reviews", 30, []string{"reviews"}))
	must(t, e.srv.Publish(ctx, []plan.Plan{next, e.ratings}))
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if st, err := e.srv.Wait(wctx, "a/reviews", next.Version); err != nil || st.Acked != 3 {
		t.Errorf("after a publish: %+v, %v", st, err)
	}
	for _, c := range conns {
		must(t, c.Close())
	}
	poll.Within(t, 10*time.Second, "the view dropped with its last stream", func() bool { return views() == 0 })
	e.srv.tracker.mu.Lock()
	for key := range e.srv.tracker.hist {
		if key.view != allView {
			t.Errorf("tracker still holds generations of %v", key)
		}
	}
	e.srv.tracker.mu.Unlock()
}
