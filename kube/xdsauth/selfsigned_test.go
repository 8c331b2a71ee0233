package xdsauth_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"testing"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/kube/xdsauth"
	"github.com/sluicehq/sluice/xds"
)

// The CA is created once and kept across restarts; the serving
// certificate is renewed at two thirds of its life; a new CA is
// published beside the old one before it signs, so a client that
// follows the ConfigMap keeps connecting through every rotation, while
// one that never reloads its bundle is cut off only when the new CA
// signs. A follower replica, which only reads the Secret, serves the
// same CA. The clock is the test's, for the server and the clients'
// certificate checks alike.
func TestSelfSignedRotation(t *testing.T) {
	t.Parallel()
	cs := clientset(t)
	ns := kubetest.Namespace(t, env.Client(t), "xdsauth-ca-")
	ctx := context.Background()
	start := time.Now()
	clk := &clock{now: start}
	lifetimes := xdsauth.Lifetimes{CA: 30 * time.Hour, Serving: 6 * time.Hour, Propagation: time.Hour}
	replica := func() *xdsauth.SelfSigned {
		return &xdsauth.SelfSigned{
			Client: cs, Namespace: ns, SecretName: "sluice-xds-ca", ConfigMapName: "sluice-xds-ca",
			DNSNames: xdsauth.ServiceDNSNames("sluice-xds", ns), Lifetimes: lifetimes,
			Resync: 20 * time.Millisecond, Now: clk.Now, Log: logr.Discard(),
		}
	}
	leader, follower := replica(), replica()
	reconcile := func() {
		t.Helper()
		if err := leader.Writer().Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
	}
	reconcile()
	secret := func() (string, []byte) {
		t.Helper()
		s, err := cs.CoreV1().Secrets(ns).Get(ctx, "sluice-xds-ca", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return s.ResourceVersion, s.Data["ca.crt"]
	}
	rv, ca1 := secret()

	// A restarted leader reuses the CA: the Secret is not even written.
	restarted := replica()
	if err := restarted.Writer().Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if rv2, _ := secret(); rv2 != rv {
		t.Fatalf("a restarted leader rewrote the CA Secret (resourceVersion %s, then %s)", rv, rv2)
	}

	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- follower.Start(runCtx) }()
	t.Cleanup(func() { cancel(); <-done })
	_, addr := serveXDS(t, xds.Options{TLS: &xds.TLSFiles{GetCertificate: follower.GetCertificate}})

	serverName := "sluice-xds." + ns + ".svc.cluster.local"
	handshake := func(roots *x509.CertPool) (*x509.Certificate, error) {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{
			RootCAs: roots, ServerName: serverName, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12, Time: clk.Now,
		})
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0], nil
	}
	mustServe := func(what string, roots *x509.CertPool) *x509.Certificate {
		t.Helper()
		var leaf *x509.Certificate
		poll.Within(t, 10*time.Second, what, func() bool {
			var err error
			leaf, err = handshake(roots)
			return err == nil
		})
		return leaf
	}
	old := bundle(t, cs, ns)
	leaf1 := mustServe("the follower serves a certificate of the CA", old)

	clk.Set(start.Add(5 * time.Hour)) // past two thirds of 6h
	leaf2 := mustServe("a renewed serving certificate", old)
	if leaf2.SerialNumber.Cmp(leaf1.SerialNumber) == 0 || !leaf2.NotBefore.After(leaf1.NotBefore) {
		t.Fatalf("serving certificate not renewed at 5h of 6h (serial %s, then %s)", leaf1.SerialNumber, leaf2.SerialNumber)
	}

	clk.Set(start.Add(21 * time.Hour)) // past two thirds of the CA's 30h
	reconcile()
	staged := bundle(t, cs, ns)
	if n := countCerts(t, cs, ns); n != 2 {
		t.Fatalf("bundle with a staged CA has %d certificates, want the current and the next", n)
	}
	if _, err := handshake(old); err != nil {
		t.Fatalf("a staged CA must not sign yet: a client with the old bundle is refused: %v", err)
	}

	clk.Set(start.Add(22*time.Hour + time.Minute)) // past the hour of propagation
	reconcile()
	poll.Within(t, 10*time.Second, "the follower serves a certificate of the new CA", func() bool {
		_, err := handshake(old)
		return err != nil
	})
	leaf3 := mustServe("a client following the ConfigMap trusts the new CA", bundle(t, cs, ns))
	if leaf3.Issuer.String() == leaf2.Issuer.String() {
		t.Fatalf("after promotion the serving certificate is still issued by %s", leaf3.Issuer)
	}
	if _, err := handshake(staged); err != nil {
		t.Fatalf("the bundle published while the new CA was staged must trust it: %v", err)
	}
	if _, cur := secret(); string(cur) == string(ca1) {
		t.Fatal("the Secret's signing CA did not change")
	}

	clk.Set(start.Add(31 * time.Hour)) // the old CA has expired
	reconcile()
	if n := countCerts(t, cs, ns); n != 1 {
		t.Fatalf("bundle after the old CA expired has %d certificates, want 1", n)
	}
	mustServe("serving after the old CA left the bundle", bundle(t, cs, ns))
}

func countCerts(t *testing.T, cs kubernetes.Interface, ns string) int {
	t.Helper()
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(context.Background(), "sluice-xds-ca", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rest := []byte(cm.Data["ca.crt"]); ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return n
		}
		n++
	}
}

// A Secret that is not a Sluice CA is never replaced: clients may trust
// what it holds.
func TestSelfSignedKeepsForeignSecret(t *testing.T) {
	t.Parallel()
	cs := clientset(t)
	ns := kubetest.Namespace(t, env.Client(t), "xdsauth-foreign-")
	ctx := context.Background()
	s, _ := selfSignedCA(t, cs, ns, nil)
	sec, err := cs.CoreV1().Secrets(ns).Get(ctx, "sluice-xds-ca", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sec.Data["ca.key"] = []byte("not a key")
	if _, err := cs.CoreV1().Secrets(ns).Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Writer().Reconcile(ctx); err == nil {
		t.Fatal("Reconcile accepted a Secret whose key does not parse")
	}
	after, err := cs.CoreV1().Secrets(ns).Get(ctx, "sluice-xds-ca", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if string(after.Data["ca.key"]) != "not a key" {
		t.Fatal("the unreadable CA Secret was overwritten")
	}
}
