package xdsauth

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"
)

// The CA's state, as kept in its Secret. Rotation keeps clients working
// throughout: a new CA is first only trusted (published in the bundle
// next to the current one) and signs nothing until Propagation has
// passed, time for the kubelet to refresh every mounted bundle and for
// clients to reload it; then it becomes the signer, and the old one
// stays in the bundle until it expires, since serving certificates it
// signed may still be in use.
type caState struct {
	current *keyPair
	// next is staged: trusted, not yet signing; nextSince is when.
	next      *keyPair
	nextSince time.Time
	// retired CAs, trusted until they expire.
	retired []*x509.Certificate
}

type keyPair struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// Lifetimes configure issuance and rotation. Certificates are renewed at
// two thirds of their lifetime, like kubelet and cert-manager do.
type Lifetimes struct {
	// CA is the CA certificate's lifetime; default one year.
	CA time.Duration
	// Serving is the xDS server certificate's; default 24 hours.
	Serving time.Duration
	// Propagation is how long a new CA is trusted before it signs;
	// default one hour (kubelet refreshes a mounted ConfigMap within a
	// minute or two; grpc-go reloads its CA file every 10 minutes).
	Propagation time.Duration
}

func (l Lifetimes) WithDefaults() Lifetimes {
	if l.CA <= 0 {
		l.CA = 365 * 24 * time.Hour
	}
	if l.Serving <= 0 {
		l.Serving = 24 * time.Hour
	}
	if l.Propagation <= 0 {
		l.Propagation = time.Hour
	}
	return l
}

// Check refuses lifetimes that cannot rotate safely: the staged CA must
// start signing before the current one has to be replaced, and a serving
// certificate must not outlive the CA that signed it by much.
func (l Lifetimes) Check() error {
	if l.Propagation >= l.CA/3 {
		return fmt.Errorf("propagation %s must be shorter than a third of the CA lifetime %s", l.Propagation, l.CA)
	}
	if l.Serving >= l.CA/3 {
		return fmt.Errorf("serving certificate lifetime %s must be shorter than a third of the CA lifetime %s", l.Serving, l.CA)
	}
	return nil
}

// renewAt is when a certificate made here should be replaced: two
// thirds through its life, counted from when it was issued (NotBefore is
// backdated).
func renewAt(c *x509.Certificate) time.Time {
	issued := c.NotBefore.Add(backdate)
	return issued.Add(c.NotAfter.Sub(issued) * 2 / 3)
}

// backdate covers clock skew between Sluice and its clients.
const backdate = 5 * time.Minute

// rotate returns the state at now: a CA created if there is none, a
// new one staged at two thirds of the current one's life, the staged one
// promoted after Propagation (or at once if the current one has
// expired), expired retired CAs dropped. changed says whether it differs.
func rotate(st caState, now time.Time, l Lifetimes, newCA func(time.Time, time.Duration) (*keyPair, error)) (caState, bool, error) {
	changed := false
	if st.current == nil {
		kp, err := newCA(now, l.CA)
		if err != nil {
			return st, false, err
		}
		st.current, changed = kp, true
	}
	if st.next == nil && !now.Before(renewAt(st.current.cert)) {
		kp, err := newCA(now, l.CA)
		if err != nil {
			return st, false, err
		}
		st.next, st.nextSince, changed = kp, now, true
	}
	if st.next != nil && (!now.Before(st.nextSince.Add(l.Propagation)) || !now.Before(st.current.cert.NotAfter)) {
		st.retired = append(st.retired, st.current.cert)
		st.current, st.next, st.nextSince, changed = st.next, nil, time.Time{}, true
	}
	kept := st.retired[:0:0]
	for _, c := range st.retired {
		if now.Before(c.NotAfter) {
			kept = append(kept, c)
		}
	}
	if len(kept) != len(st.retired) {
		changed = true
	}
	st.retired = kept
	return st, changed, nil
}

// bundle is every CA a client should trust now, PEM, signer first.
func (st caState) bundle() []byte {
	var b bytes.Buffer
	certs := []*x509.Certificate{st.current.cert}
	if st.next != nil {
		certs = append(certs, st.next.cert)
	}
	for _, c := range slices.Backward(st.retired) {
		certs = append(certs, c)
	}
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

// newCA makes a self-signed ECDSA P-256 CA valid from now-backdate.
func newCA(now time.Time, lifetime time.Duration) (*keyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("ca key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"sluice"}, CommonName: "sluice xds CA " + now.UTC().Format(time.RFC3339)},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(lifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("ca certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca certificate: %w", err)
	}
	return &keyPair{cert: cert, key: key}, nil
}

// issueServing signs a serving certificate for dnsNames with ca, valid
// for lifetime but never past the CA.
func issueServing(ca *keyPair, dnsNames []string, now time.Time, lifetime time.Duration) (*tls.Certificate, error) {
	if len(dnsNames) == 0 {
		return nil, errors.New("serving certificate: no DNS names")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("serving key: %w", err)
	}
	notAfter := now.Add(lifetime)
	if ca.cert.NotAfter.Before(notAfter) {
		notAfter = ca.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{Organization: []string{"sluice"}, CommonName: dnsNames[0]},
		DNSNames:     dnsNames,
		NotBefore:    now.Add(-backdate),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, fmt.Errorf("serving certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("serving certificate: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		// crypto/rand does not fail on supported platforms.
		panic(fmt.Sprintf("serial number: %v", err))
	}
	return n
}

// Secret keys of the CA's state.
const (
	keyCACert     = "ca.crt"
	keyCAKey      = "ca.key"
	keyNextCert   = "next.crt"
	keyNextKey    = "next.key"
	keyNextSince  = "next.since"
	keyRetired    = "retired.crt"
	keyBundle     = "bundle.crt"
	configMapKey  = "ca.crt"
	pemCert       = "CERTIFICATE"
	pemPrivateKey = "PRIVATE KEY"
)

// encode writes the state into Secret data.
func (st caState) encode() (map[string][]byte, error) {
	data := map[string][]byte{}
	put := func(certKey, keyKey string, kp *keyPair) error {
		data[certKey] = pem.EncodeToMemory(&pem.Block{Type: pemCert, Bytes: kp.cert.Raw})
		der, err := x509.MarshalPKCS8PrivateKey(kp.key)
		if err != nil {
			return fmt.Errorf("encode CA key: %w", err)
		}
		data[keyKey] = pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: der})
		return nil
	}
	if err := put(keyCACert, keyCAKey, st.current); err != nil {
		return nil, err
	}
	if st.next != nil {
		if err := put(keyNextCert, keyNextKey, st.next); err != nil {
			return nil, err
		}
		data[keyNextSince] = []byte(st.nextSince.UTC().Format(time.RFC3339Nano))
	}
	if len(st.retired) > 0 {
		var b bytes.Buffer
		for _, c := range st.retired {
			_ = pem.Encode(&b, &pem.Block{Type: pemCert, Bytes: c.Raw})
		}
		data[keyRetired] = b.Bytes()
	}
	data[keyBundle] = st.bundle()
	return data, nil
}

// decodeState reads Secret data; empty data is no state. Anything
// malformed is an error naming the key: the CA is not silently replaced,
// which would break every client that trusts it.
func decodeState(data map[string][]byte) (caState, error) {
	var st caState
	if len(data[keyCACert]) == 0 && len(data[keyCAKey]) == 0 {
		return st, nil
	}
	var err error
	if st.current, err = decodePair(data, keyCACert, keyCAKey); err != nil {
		return st, err
	}
	if len(data[keyNextCert]) > 0 {
		if st.next, err = decodePair(data, keyNextCert, keyNextKey); err != nil {
			return st, err
		}
		if st.nextSince, err = time.Parse(time.RFC3339Nano, string(data[keyNextSince])); err != nil {
			return st, fmt.Errorf("key %s: %w", keyNextSince, err)
		}
	}
	if st.retired, err = parseCerts(data[keyRetired]); err != nil {
		return st, fmt.Errorf("key %s: %w", keyRetired, err)
	}
	return st, nil
}

func decodePair(data map[string][]byte, certKey, keyKey string) (*keyPair, error) {
	certs, err := parseCerts(data[certKey])
	if err != nil || len(certs) != 1 {
		return nil, fmt.Errorf("key %s: want one certificate (%v)", certKey, err)
	}
	block, _ := pem.Decode(data[keyKey])
	if block == nil || block.Type != pemPrivateKey {
		return nil, fmt.Errorf("key %s: want a PEM %q block", keyKey, pemPrivateKey)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", keyKey, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key %s: not a signing key", keyKey)
	}
	if !publicKeysEqual(signer.Public(), certs[0].PublicKey) {
		return nil, fmt.Errorf("key %s does not match the certificate in %s", keyKey, certKey)
	}
	return &keyPair{cert: certs[0], key: signer}, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}

func parseCerts(p []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, p = pem.Decode(p)
		if block == nil {
			return out, nil
		}
		if block.Type != pemCert {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
}
