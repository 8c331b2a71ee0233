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
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

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

// issue returns PEM certificate and key for a leaf.
func (ca *testCA) issue(t *testing.T, serial int64, cn string, usage x509.ExtKeyUsage) (certPEM, keyPEM []byte) {
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
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	must(t, err)
	kb, err := x509.MarshalECPrivateKey(key)
	must(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	must(t, os.WriteFile(path, b, 0o600))
}

func TestMutualTLS(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
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
	srv, err := New(Options{TLS: &files, Endpoints: staticFor(t, "reviews"), Logger: quiet})
	must(t, err)
	addr := serve(t, srv)
	p := canaryPlan("reviews", 5, []string{"reviews"})
	must(t, srv.Publish(context.Background(), []plan.Plan{p}))

	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	cc, ck := ca.issue(t, 20, "sidecar", x509.ExtKeyUsageClientAuth)
	clientCert, err := tls.X509KeyPair(cc, ck)
	must(t, err)
	dial := func(withCert bool) *grpc.ClientConn {
		conf := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		if withCert {
			conf.Certificates = []tls.Certificate{clientCert}
		}
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(conf)))
		must(t, err)
		t.Cleanup(func() { _ = conn.Close() })
		return conn
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	good := &adsClient{node: envoyNode("mtls"), follow: true}
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
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{clientCert}, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12})
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
