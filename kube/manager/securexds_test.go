package manager_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/interop/grpc_testing"
	grpcxds "google.golang.org/grpc/xds"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/internal/grpcecho"
	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/internal/xdstest"
	"github.com/sluicehq/sluice/kube/manager"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/xds"
)

// callCredsEnv is the switch grpc-go reads, once at start, before it
// accepts call_creds in an xDS bootstrap (examples/proxyless-grpc).
const callCredsEnv = "GRPC_EXPERIMENTAL_XDS_BOOTSTRAP_CALL_CREDS"

// `sluice controller` with its default xDS security — TLS from its own CA
// (xds.tls.mode selfSigned), projected service-account tokens verified
// with the API server's TokenReview — against real proxyless grpc-go
// clients configured as examples/proxyless-grpc says: a bootstrap with
// "tls" channel credentials trusting the CA bundle Sluice publishes in
// its ConfigMap, and "jwt_token_file" call credentials reading a token
// the API server issued for audience sluice.dev/xds. That client gets
// its routes and is served; one without the token, and one whose token
// names another service account than its node id, get nothing, and the
// controller counts both refusals by reason.
//
// grpc-go takes call_creds only with GRPC_EXPERIMENTAL_XDS_BOOTSTRAP_CALL_CREDS
// set when it starts, so the test runs itself again in a process that
// has it.
func TestControllerSecureXDSByDefault(t *testing.T) {
	if os.Getenv(callCredsEnv) != "true" {
		if testing.Short() {
			t.Skip("runs the test binary again")
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestControllerSecureXDSByDefault$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), callCredsEnv+"=true")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("the test with %s=true: %v\n%s", callCredsEnv, err, out)
		}
		t.Logf("with %s=true:\n%s", callCredsEnv, lastLines(string(out), 8))
		return
	}
	admin, ctrlCfg := cluster(t)
	ctx := context.Background()
	ns := kubetest.Namespace(t, admin, "securexds-")
	host := "reviews." + ns + ".svc.cluster.local"

	ip := podIP(t)
	backends := map[string]*grpcecho.Backend{}
	for _, tag := range []string{"v1", "v2"} {
		b, err := grpcecho.Start(grpcecho.Options{Service: "reviews", Version: tag, Host: ip})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Stop)
		backends[tag] = b
	}
	k := &kubelet{c: admin, ns: ns, backends: backends, applied: map[string]string{}}
	bg, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { k.run(bg) })
	t.Cleanup(func() { stop(); wg.Wait() })

	// Nothing about xDS security is configured but a name the test can
	// dial the server by (the Service's names are the default).
	cfg, err := manager.ParseConfig(fmt.Appendf(nil, `namespace: %s
stateDir: %s
watchNamespaces: [%s]
leaderElection: {enabled: false}
istio: {enabled: false}
http: {metricsAddress: "0", probeAddress: "0", webhookAddress: "0"}
xds:
  address: 127.0.0.1:0
  replicaName: %s
  tls:
    selfSigned: {dnsNames: [localhost]}
reconcile:
  ackPollInterval: 200ms
`, controllerNamespace, t.TempDir(), ns, ns))
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(lis.Addr().String())
	reg := prometheus.NewRegistry()
	c, err := manager.New(manager.Options{Config: cfg, RestConfig: ctrlCfg, Log: logger(ns), Registerer: reg,
		XDSListener: lis, SkipNameValidation: true})
	if err != nil {
		lis.Close()
		t.Fatal(err)
	}
	kubetest.Start(t, "controller", c)

	for _, sa := range []string{"reviews", "ratings"} {
		if err := admin.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa}}); err != nil {
			t.Fatal(err)
		}
	}
	ro := staleRollout(ns, host, "", []v1alpha1.CanaryStep{{SetWeight: new(int32(50))}})
	if err := admin.Create(ctx, ro); err != nil {
		t.Fatal(err)
	}
	key := types.NamespacedName{Namespace: ns, Name: "reviews"}
	poll.Until(t, "v1's plan published", func() bool {
		return admin.Get(ctx, key, ro) == nil && ro.Status.Traffic.PlanVersion != ""
	})

	// What a pod would mount: the CA bundle's ConfigMap and a projected
	// token for Sluice's audience.
	var bundle corev1.ConfigMap
	poll.Until(t, "the CA bundle published", func() bool {
		return admin.Get(ctx, client.ObjectKey{Namespace: controllerNamespace, Name: "sluice-xds-ca"}, &bundle) == nil && bundle.Data["ca.crt"] != ""
	})
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.crt")
	writeTestFile(t, caFile, bundle.Data["ca.crt"])
	tokenFile := filepath.Join(dir, "token")
	writeTestFile(t, tokenFile, audienceToken(t, admin, ns, "reviews", "sluice.dev/xds"))

	reviews := "spiffe://cluster.local/ns/" + ns + "/sa/reviews"
	server := "localhost:" + port
	good := proxylessClient(t, server, caFile, tokenFile, reviews+"/reviews-pod-1", host)
	calls, err := callWithin(good, 60*time.Second)
	if err != nil {
		t.Fatalf("the token-authenticated client over TLS: %v", err)
	}
	if got := xdstest.Calls(t, good, 10); got["v1"] != 10 {
		t.Errorf("served by %v, want v1 (first call %v)", got, calls)
	}
	poll.Until(t, "v1 acknowledged by the authenticated client", func() bool {
		return admin.Get(ctx, key, ro) == nil && ro.Status.Phase == v1alpha1.PhaseHealthy &&
			ro.Status.Traffic.AcknowledgedVersion == ro.Status.Traffic.PlanVersion
	})

	refused := []struct {
		name, token, node, reason string
	}{
		{"no token", "", reviews + "/anonymous", xds.ReasonNoCredentials},
		{"reviews' token, ratings' node id", tokenFile, "spiffe://cluster.local/ns/" + ns + "/sa/ratings/pod-1", xds.ReasonMismatch},
	}
	for _, tc := range refused {
		cl := proxylessClient(t, server, caFile, tc.token, tc.node, host)
		if _, err := callWithin(cl, 5*time.Second); err == nil {
			t.Errorf("%s: served", tc.name)
		}
		poll.Until(t, tc.name+" counted as refused", func() bool { return refusedStreams(t, reg)[tc.reason] > 0 })
	}
}

// proxylessClient is a grpc-go client of xds:///target whose xDS client
// uses examples/proxyless-grpc's bootstrap: TLS trusting caFile, the
// token file as call credentials (none when empty), node id.
func proxylessClient(t *testing.T, server, caFile, tokenFile, node, target string) grpc_testing.TestServiceClient {
	t.Helper()
	srv := map[string]any{
		"server_uri":      server,
		"channel_creds":   []map[string]any{{"type": "tls", "config": map[string]string{"ca_certificate_file": caFile}}},
		"server_features": []string{"xds_v3"},
	}
	if tokenFile != "" {
		srv["call_creds"] = []map[string]any{{"type": "jwt_token_file", "config": map[string]string{"jwt_token_file": tokenFile}}}
	}
	bootstrap, err := json.Marshal(map[string]any{
		"xds_servers": []any{srv},
		"node":        map[string]any{"id": node, "cluster": "reviews", "metadata": map[string]string{"sluice.dev/proxy": "grpc"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := grpcxds.NewXDSResolverWithConfigForTesting(bootstrap)
	if err != nil {
		t.Fatalf("bootstrap %s: %v", bootstrap, err)
	}
	conn, err := grpc.NewClient("xds:///"+target, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(rb))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return grpc_testing.NewTestServiceClient(conn)
}

// callWithin makes one call, waiting for the routes up to d.
func callWithin(c grpc_testing.TestServiceClient, d time.Duration) (*grpc_testing.SimpleResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return c.UnaryCall(ctx, &grpc_testing.SimpleRequest{}, grpc.WaitForReady(true))
}

// audienceToken is a token the API server issues for sa and audience (TokenRequest), as the
// kubelet does for a projected volume.
func audienceToken(t *testing.T, c client.Client, ns, sa, audience string) string {
	t.Helper()
	req := &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{Audiences: []string{audience}, ExpirationSeconds: new(int64(600))}}
	acct := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa}}
	if err := c.SubResource("token").Create(context.Background(), acct, req); err != nil {
		t.Fatalf("token for %s/%s: %v", ns, sa, err)
	}
	return req.Status.Token
}

func writeTestFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

// refusedStreams is sluice_xds_refused_streams_total by reason.
func refusedStreams(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "sluice_xds_refused_streams_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" {
					got[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	return got
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}
