package xds

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/sluicehq/sluice/internal/poll"
	"github.com/sluicehq/sluice/rollout/plan"
)

// testCA issues certificates for the TLS tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "sluice test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	must(t, err)
	cert, err := x509.ParseCertificate(der)
	must(t, err)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns PEM certificate and key for a leaf; uris become URI SANs
// (a SPIFFE ID for a client).
func (ca *testCA) issue(t *testing.T, serial int64, cn string, usage x509.ExtKeyUsage, uris ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	for _, s := range uris {
		u, err := url.Parse(s)
		must(t, err)
		tmpl.URIs = append(tmpl.URIs, u)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	must(t, err)
	kb, err := x509.MarshalECPrivateKey(key)
	must(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

// serverFiles writes a server certificate (serial 10) and the CA as the
// client CA, for mutual TLS.
func (ca *testCA) serverFiles(t *testing.T) TLSFiles {
	t.Helper()
	dir := t.TempDir()
	files := TLSFiles{
		CertFile:     filepath.Join(dir, "server.pem"),
		KeyFile:      filepath.Join(dir, "server-key.pem"),
		ClientCAFile: filepath.Join(dir, "ca.pem"),
	}
	sc, sk := ca.issue(t, 10, "sluice", x509.ExtKeyUsageServerAuth)
	writeFile(t, files.CertFile, sc)
	writeFile(t, files.KeyFile, sk)
	writeFile(t, files.ClientCAFile, ca.pem)
	return files
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	must(t, os.WriteFile(path, b, 0o600))
}

func TestMutualTLS(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	files := ca.serverFiles(t)
	srv, err := New(Options{TLS: &files, Endpoints: staticFor(t, "reviews"), Logger: quiet})
	must(t, err)
	addr := serve(t, srv)
	p := canaryPlan("reviews", 5, []string{"reviews"})
	must(t, srv.Publish(context.Background(), []plan.Plan{p}))

	dial, withCert := tlsDialer(t, ca, addr, "spiffe://sluice.test/ns/shop/sa/reviews")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	good := &adsClient{node: envoyNode("spiffe://sluice.test/ns/shop/sa/reviews/pod-1"), follow: true}
	must(t, good.start(ctx, dial(true), envoyInitial))
	poll.Within(t, 10*time.Second, "the client subscribed over mTLS", func() bool { return srv.Status("reviews", p.Version).Subscribed == 1 })
	if _, err := srv.Wait(ctx, "reviews", p.Version); err != nil {
		t.Fatalf("Wait over mTLS: %v", err)
	}

	anonymous := &adsClient{node: envoyNode("anonymous"), follow: true}
	if err := anonymous.start(ctx, dial(false), envoyInitial); err == nil {
		if err := <-anonymous.done; err == nil {
			t.Fatal("a client without a certificate was served")
		}
	}

	// Rotation: new files on disk serve new handshakes.
	sc2, sk2 := ca.issue(t, 11, "sluice", x509.ExtKeyUsageServerAuth)
	writeFile(t, files.CertFile, sc2)
	writeFile(t, files.KeyFile, sk2)
	poll.Within(t, 10*time.Second, "the rotated certificate served", func() bool {
		conf := withCert.Clone()
		conf.NextProtos = []string{"h2"}
		conn, err := tls.Dial("tcp", addr, conf)
		if err != nil {
			t.Logf("dial: %v", err)
			return false
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64() == 11
	})
}

func TestTLSFilesRequired(t *testing.T) {
	t.Parallel()
	if _, err := New(Options{TLS: &TLSFiles{CertFile: "x.pem"}, Logger: quiet}); err == nil {
		t.Error("New accepted TLS without a key file")
	}
	if _, err := New(Options{TLS: &TLSFiles{CertFile: "/nonexistent.pem", KeyFile: "/nonexistent-key.pem"}, Logger: quiet}); err == nil {
		t.Error("New accepted missing certificate files")
	}
}

// With mutual TLS every stream is bound to its certificate's SPIFFE ID:
// a node id of another workload is refused, as is a certificate naming no
// workload, and neither stream ever counts for acknowledgement (a forged
// NACK from it changes nothing).
func TestNodeIdentity(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	files := ca.serverFiles(t)
	reg := prometheus.NewRegistry()
	srv, err := New(Options{TLS: &files, Endpoints: staticFor(t, "reviews"), Logger: quiet, Registerer: reg})
	must(t, err)
	addr := serve(t, srv)
	p := canaryPlan("reviews", 5, []string{"reviews"})
	must(t, srv.Publish(context.Background(), []plan.Plan{p}))
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	dial := func(uris ...string) *grpc.ClientConn {
		cc, ck := ca.issue(t, 30, "client", x509.ExtKeyUsageClientAuth, uris...)
		cert, err := tls.X509KeyPair(cc, ck)
		must(t, err)
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})))
		must(t, err)
		t.Cleanup(func() { _ = conn.Close() })
		return conn
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	refused := func(name string, c *adsClient, conn *grpc.ClientConn, want string) {
		t.Helper()
		err := c.start(ctx, conn, envoyInitial)
		if err == nil {
			err = <-c.done
		}
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want PermissionDenied naming %q", name, err, want)
		}
	}
	reviews := "spiffe://sluice.test/ns/shop/sa/reviews"
	refused("another workload's node id", &adsClient{node: envoyNode("spiffe://sluice.test/ns/shop/sa/ratings"), follow: true}, dial(reviews), "does not belong")
	refused("a node id that only starts like it", &adsClient{node: envoyNode(reviews + "-evil"), follow: true}, dial(reviews), "does not belong")
	refused("no SPIFFE ID", &adsClient{node: envoyNode(reviews), follow: true}, dial(), "no spiffe:// URI SAN")
	if st := srv.Status("reviews", p.Version); st.Subscribed != 0 {
		t.Fatalf("refused streams count: %+v", st)
	}
	good := &adsClient{node: envoyNode(reviews + "/pod-7"), follow: true}
	must(t, good.start(ctx, dial(reviews), envoyInitial))
	poll.Within(t, 10*time.Second, "the matching client subscribed", func() bool { return srv.Status("reviews", p.Version).Subscribed == 1 })
	if _, err := srv.Wait(ctx, "reviews", p.Version); err != nil {
		t.Fatalf("Wait with a matching identity: %v", err)
	}
	got := map[string]float64{}
	mfs, err := reg.Gather()
	must(t, err)
	for _, mf := range mfs {
		if mf.GetName() == "sluice_xds_refused_streams_total" {
			for _, m := range mf.GetMetric() {
				got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	if got[ReasonMismatch] != 2 || got[ReasonNoIdentity] != 1 {
		t.Errorf("refused streams by reason %v, want 2 node_id_mismatch and 1 no_identity", got)
	}
}

// tlsDialer dials addr trusting ca, with (true) or without a client
// certificate for spiffe issued by ca; withCert is the TLS configuration
// with the certificate.
func tlsDialer(t *testing.T, ca *testCA, addr, spiffe string) (dial func(withCert bool) *grpc.ClientConn, withCert *tls.Config) {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	cc, ck := ca.issue(t, 20, "sidecar", x509.ExtKeyUsageClientAuth, spiffe)
	clientCert, err := tls.X509KeyPair(cc, ck)
	must(t, err)
	withCert = &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{clientCert}, MinVersion: tls.VersionTLS12}
	dial = func(cert bool) *grpc.ClientConn {
		conf := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		if cert {
			conf = withCert.Clone()
		}
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(conf)))
		must(t, err)
		t.Cleanup(func() { _ = conn.Close() })
		return conn
	}
	return dial, withCert
}
