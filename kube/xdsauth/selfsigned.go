package xdsauth

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// SelfSigned is the xDS server's certificate when no one else issues
// one: a CA kept in a Secret of the controller's namespace, created if
// absent and rotated with overlap by the leader (Writer), its bundle
// published in a ConfigMap that clients mount, and on every replica a
// serving certificate for the xDS Service's DNS names issued from it in
// memory and renewed at two thirds of its life (GetCertificate). The
// serving key never leaves the replica that made it.
type SelfSigned struct {
	Client    kubernetes.Interface
	Namespace string
	// SecretName holds the CA (keys ca.crt, ca.key; next.* while a new CA
	// is staged; retired.crt; bundle.crt).
	SecretName string
	// ConfigMapName receives the bundle clients trust, under "ca.crt".
	ConfigMapName string
	// DNSNames of the serving certificate (ServiceDNSNames).
	DNSNames  []string
	Lifetimes Lifetimes
	// Resync is how often the leader checks whether to rotate and a
	// replica re-reads the Secret; default one minute.
	Resync time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	Log logr.Logger

	once sync.Once
	mu   sync.Mutex
	st   caState
	has  bool
	cert *tls.Certificate
	// signer is the CA certificate (DER) that signed cert.
	signer []byte
}

// ServiceDNSNames are the names a client in the cluster may dial a
// Service by.
func ServiceDNSNames(service, namespace string) []string {
	return []string{
		service,
		service + "." + namespace,
		service + "." + namespace + ".svc",
		service + "." + namespace + ".svc.cluster.local",
	}
}

func (s *SelfSigned) init() {
	s.once.Do(func() {
		s.Lifetimes = s.Lifetimes.WithDefaults()
		if s.Resync <= 0 {
			s.Resync = time.Minute
		}
		if s.Now == nil {
			s.Now = time.Now
		}
	})
}

// Check reports configuration errors before anything runs.
func (s *SelfSigned) Check() error {
	s.init()
	switch {
	case s.Client == nil:
		return errors.New("self-signed xds CA: no Kubernetes client")
	case s.Namespace == "" || s.SecretName == "" || s.ConfigMapName == "":
		return errors.New("self-signed xds CA: namespace, secret and configMap names are required")
	case len(s.DNSNames) == 0:
		return errors.New("self-signed xds CA: no DNS names for the serving certificate")
	}
	return s.Lifetimes.Check()
}

// GetCertificate is the xDS server's tls.Config.GetCertificate: the
// current serving certificate, renewed first if it is due or was signed
// by a CA that no longer signs.
func (s *SelfSigned) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.has {
		return nil, fmt.Errorf("xds serving certificate not ready: waiting for the CA in Secret %s/%s", s.Namespace, s.SecretName)
	}
	now := s.Now()
	if s.cert == nil || !bytes.Equal(s.signer, s.st.current.cert.Raw) || !now.Before(renewAt(s.cert.Leaf)) {
		cert, err := issueServing(s.st.current, s.DNSNames, now, s.Lifetimes.Serving)
		if err != nil {
			if s.cert != nil && now.Before(s.cert.Leaf.NotAfter) {
				s.Log.Error(err, "renewing the xds serving certificate; serving the current one")
				return s.cert, nil
			}
			return nil, err
		}
		s.cert, s.signer = cert, s.st.current.cert.Raw
		s.Log.Info("issued xds serving certificate", "notAfter", cert.Leaf.NotAfter, "dnsNames", s.DNSNames)
	}
	return s.cert, nil
}

// Start reads the CA Secret on every replica until ctx ends: at once,
// then every Resync.
func (s *SelfSigned) Start(ctx context.Context) error {
	s.init()
	t := time.NewTicker(s.Resync)
	defer t.Stop()
	for {
		if err := s.read(ctx); err != nil && ctx.Err() == nil {
			s.Log.Error(err, "reading the xds CA; keeping the one loaded", "secret", s.Namespace+"/"+s.SecretName)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// NeedLeaderElection is false: every replica serves xDS.
func (s *SelfSigned) NeedLeaderElection() bool { return false }

func (s *SelfSigned) read(ctx context.Context) error {
	sec, err := s.Client.CoreV1().Secrets(s.Namespace).Get(ctx, s.SecretName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil // the leader creates it
	}
	if err != nil {
		return fmt.Errorf("get secret: %w", err)
	}
	st, err := decodeState(sec.Data)
	if err != nil {
		return fmt.Errorf("secret %s/%s: %w", s.Namespace, s.SecretName, err)
	}
	if st.current == nil {
		return nil
	}
	s.load(st)
	return nil
}

func (s *SelfSigned) load(st caState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st, s.has = st, true
}

// Writer is the leader's part: it creates the CA, rotates it and
// publishes the bundle.
func (s *SelfSigned) Writer() *CAWriter { return &CAWriter{s: s} }

// CAWriter keeps the CA Secret and the bundle ConfigMap; leader only.
type CAWriter struct{ s *SelfSigned }

// NeedLeaderElection is true: one writer, no racing CAs.
func (w *CAWriter) NeedLeaderElection() bool { return true }

// Start reconciles at once, then every Resync, until ctx ends.
func (w *CAWriter) Start(ctx context.Context) error {
	s := w.s
	s.init()
	t := time.NewTicker(s.Resync)
	defer t.Stop()
	for {
		if err := w.Reconcile(ctx); err != nil && ctx.Err() == nil {
			s.Log.Error(err, "keeping the xds CA", "secret", s.Namespace+"/"+s.SecretName)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Reconcile creates or rotates the CA as due and publishes its bundle. A
// Secret it cannot read is left alone: replacing a CA clients trust would
// cut them all off.
func (w *CAWriter) Reconcile(ctx context.Context) error {
	s := w.s
	s.init()
	secrets := s.Client.CoreV1().Secrets(s.Namespace)
	sec, err := secrets.Get(ctx, s.SecretName, metav1.GetOptions{})
	exists := err == nil
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("get secret %s: %w", s.SecretName, err)
	}
	var st caState
	if exists {
		if st, err = decodeState(sec.Data); err != nil {
			return fmt.Errorf("secret %s/%s is not a Sluice CA (delete it to start a new CA): %w", s.Namespace, s.SecretName, err)
		}
	}
	st, changed, err := rotate(st, s.Now(), s.Lifetimes, newCA)
	if err != nil {
		return err
	}
	if changed || !exists {
		data, err := st.encode()
		if err != nil {
			return err
		}
		if !exists {
			sec = &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: s.SecretName, Namespace: s.Namespace, Labels: labels()},
				Type:       corev1.SecretTypeOpaque,
				Data:       data,
			}
			// AlreadyExists: another leader was quicker; next round reads it.
			if _, err := secrets.Create(ctx, sec, metav1.CreateOptions{}); err != nil {
				return fmt.Errorf("create secret %s: %w", s.SecretName, err)
			}
			s.Log.Info("created the xds CA", "secret", s.Namespace+"/"+s.SecretName, "notAfter", st.current.cert.NotAfter)
		} else {
			// The read resourceVersion makes a concurrent write a
			// conflict, retried next round, not a lost CA.
			sec.Data = data
			if _, err := secrets.Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
				return fmt.Errorf("update secret %s: %w", s.SecretName, err)
			}
			s.Log.Info("rotated the xds CA", "secret", s.Namespace+"/"+s.SecretName, "staged", st.next != nil, "retired", len(st.retired))
		}
	}
	s.load(st)
	return w.publish(ctx, st.bundle())
}

func (w *CAWriter) publish(ctx context.Context, bundle []byte) error {
	s := w.s
	cms := s.Client.CoreV1().ConfigMaps(s.Namespace)
	cm, err := cms.Get(ctx, s.ConfigMapName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		cm = &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: s.ConfigMapName, Namespace: s.Namespace, Labels: labels()},
			Data:       map[string]string{configMapKey: string(bundle)},
		}
		if _, err := cms.Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create configmap %s: %w", s.ConfigMapName, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("get configmap %s: %w", s.ConfigMapName, err)
	}
	if cm.Data[configMapKey] == string(bundle) {
		return nil
	}
	// A merge patch of the one key: the role grants patch, not update,
	// on ConfigMaps.
	patch, err := json.Marshal(map[string]any{"data": map[string]string{configMapKey: string(bundle)}})
	if err != nil {
		return fmt.Errorf("configmap %s: %w", s.ConfigMapName, err)
	}
	if _, err := cms.Patch(ctx, s.ConfigMapName, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("patch configmap %s: %w", s.ConfigMapName, err)
	}
	return nil
}

func labels() map[string]string {
	return map[string]string{"app.kubernetes.io/name": "sluice", "app.kubernetes.io/component": "xds-ca"}
}
