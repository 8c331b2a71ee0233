package xdsauth

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// SecretCertificate serves the certificate of a kubernetes.io/tls Secret
// that someone else keeps, such as cert-manager's Certificate: keys
// tls.crt and tls.key (ca.crt is for clients). Every replica reads it at
// start and every Resync, so a renewal is served from the next handshake
// on without a restart; a Secret that fails to parse keeps the last good
// certificate.
type SecretCertificate struct {
	Client    kubernetes.Interface
	Namespace string
	Name      string
	// Resync is how often the Secret is read; default one minute
	// (cert-manager renews a third of a lifetime ahead).
	Resync time.Duration
	Log    logr.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	version string
}

// GetCertificate is the xDS server's tls.Config.GetCertificate.
func (c *SecretCertificate) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cert == nil {
		return nil, fmt.Errorf("xds serving certificate not ready: waiting for Secret %s/%s", c.Namespace, c.Name)
	}
	return c.cert, nil
}

// NeedLeaderElection is false: every replica serves xDS.
func (c *SecretCertificate) NeedLeaderElection() bool { return false }

// Start reads the Secret until ctx ends.
func (c *SecretCertificate) Start(ctx context.Context) error {
	resync := c.Resync
	if resync <= 0 {
		resync = time.Minute
	}
	t := time.NewTicker(resync)
	defer t.Stop()
	for {
		if err := c.Read(ctx); err != nil && ctx.Err() == nil {
			c.Log.Error(err, "reading the xds serving certificate; keeping the loaded one")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Read loads the Secret's certificate if it changed.
func (c *SecretCertificate) Read(ctx context.Context) error {
	sec, err := c.Client.CoreV1().Secrets(c.Namespace).Get(ctx, c.Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get secret %s/%s: %w", c.Namespace, c.Name, err)
	}
	c.mu.Lock()
	same := sec.ResourceVersion == c.version && c.cert != nil
	c.mu.Unlock()
	if same {
		return nil
	}
	cert, err := tls.X509KeyPair(sec.Data[corev1.TLSCertKey], sec.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		return fmt.Errorf("secret %s/%s keys %s and %s: %w", c.Namespace, c.Name, corev1.TLSCertKey, corev1.TLSPrivateKeyKey, err)
	}
	c.mu.Lock()
	c.cert, c.version = &cert, sec.ResourceVersion
	c.mu.Unlock()
	c.Log.Info("loaded the xds serving certificate", "secret", c.Namespace+"/"+c.Name, "notAfter", cert.Leaf.NotAfter)
	return nil
}
