package xdsauth_test

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
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/kube/xdsauth"
	"github.com/sluicehq/sluice/xds"
)

// xds.tls.mode certManager: the xDS server serves the certificate of a
// kubernetes.io/tls Secret that cert-manager keeps. Until the Secret
// exists no handshake succeeds; once it does, a client trusting its CA
// connects; a renewal written into the Secret is served from the next
// read on, without a restart; a Secret that stops parsing keeps the last
// good certificate and says which keys are wrong.
func TestCertManagerSecret(t *testing.T) {
	t.Parallel()
	cs := clientset(t)
	ns := kubetest.Namespace(t, env.Client(t), "xdsauth-certmanager-")
	ctx := context.Background()
	ca := newIssuer(t)
	serverName := "sluice-xds." + ns + ".svc"

	sc := &xdsauth.SecretCertificate{Client: cs, Namespace: ns, Name: "sluice-xds-tls", Log: logr.Discard()}
	_, addr := serveXDS(t, xds.Options{TLS: &xds.TLSFiles{GetCertificate: sc.GetCertificate}})
	handshake := func() (*big.Int, error) {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr,
			&tls.Config{RootCAs: ca.pool, ServerName: serverName, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12})
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber, nil
	}

	if err := sc.Read(ctx); err == nil || !strings.Contains(err.Error(), "sluice-xds-tls") {
		t.Errorf("reading a Secret that does not exist: %v, want an error naming it", err)
	}
	if _, err := handshake(); err == nil {
		t.Error("a handshake succeeded before there was a certificate")
	}

	crt, key := ca.issue(t, 1, serverName)
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "sluice-xds-tls"},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: crt, corev1.TLSPrivateKeyKey: key, "ca.crt": ca.pem},
	}
	sec, err := cs.CoreV1().Secrets(ns).Create(ctx, sec, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mustRead(t, sc)
	if serial, err := handshake(); err != nil || serial.Int64() != 1 {
		t.Fatalf("handshake with cert-manager's certificate: serial %v, %v; want serial 1", serial, err)
	}

	// cert-manager renews: same Secret, new certificate.
	crt, key = ca.issue(t, 2, serverName)
	sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey] = crt, key
	if sec, err = cs.CoreV1().Secrets(ns).Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	mustRead(t, sc)
	if serial, err := handshake(); err != nil || serial.Int64() != 2 {
		t.Fatalf("handshake after the renewal: serial %v, %v; want serial 2", serial, err)
	}

	// A broken Secret: the last good certificate stays.
	sec.Data[corev1.TLSPrivateKeyKey] = []byte("not a key")
	if _, err = cs.CoreV1().Secrets(ns).Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := sc.Read(ctx); err == nil || !strings.Contains(err.Error(), corev1.TLSPrivateKeyKey) {
		t.Errorf("reading a broken Secret: %v, want an error naming %s", err, corev1.TLSPrivateKeyKey)
	}
	if serial, err := handshake(); err != nil || serial.Int64() != 2 {
		t.Errorf("handshake after a broken renewal: serial %v, %v; want the last good one, serial 2", serial, err)
	}
}

func mustRead(t *testing.T, sc *xdsauth.SecretCertificate) {
	t.Helper()
	if err := sc.Read(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// issuer stands in for cert-manager's CA.
type issuer struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
	pool *x509.CertPool
}

func newIssuer(t *testing.T) *issuer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(100), Subject: pkix.Name{CommonName: "test issuer"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &issuer{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pool: pool}
}

// issue makes a serving certificate for dnsName with the given serial,
// PEM-encoded with its key, as cert-manager writes them.
func (i *issuer) issue(t *testing.T, serial int64, dnsName string) (crt, key []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: dnsName}, DNSNames: []string{dnsName},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, i.cert, &k.PublicKey, i.key)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd})
}
