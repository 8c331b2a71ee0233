package manager

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/sluicehq/sluice/kube/xdsauth"
	"github.com/sluicehq/sluice/standalone/config"
	"github.com/sluicehq/sluice/xds"
)

// defaults fills the xds section's security keys.
func (x *XDS) defaults(def func(*string, string), defDur func(*config.Duration, time.Duration)) {
	if !x.InsecurePlaintext {
		if x.CertFile != "" {
			def(&x.TLS.Mode, XDSTLSFiles)
		}
		def(&x.TLS.Mode, XDSTLSSelfSigned)
	}
	ss := &x.TLS.SelfSigned
	def(&ss.SecretName, "sluice-xds-ca")
	def(&ss.ConfigMapName, "sluice-xds-ca")
	def(&ss.ServiceName, "sluice-controller")
	l := xdsauth.Lifetimes{}.WithDefaults()
	defDur(&ss.CALifetime, l.CA)
	defDur(&ss.CertLifetime, l.Serving)
	defDur(&ss.Propagation, l.Propagation)
	t := &x.Auth.ServiceAccountToken
	def(&t.Audience, xdsauth.DefaultAudience)
	def(&t.TrustDomain, xdsauth.DefaultTrustDomain)
	defDur(&t.CacheTTL, time.Minute)
}

// checkSecurity reports the xds section's security problems, each
// naming its key.
func (x *XDS) checkSecurity() []error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if x.InsecurePlaintext {
		if x.TLS.Mode != "" || x.CertFile != "" || x.ClientCAFile != "" {
			bad("xds.insecurePlaintext", "turns TLS off; remove xds.tls.mode, xds.certFile and xds.clientCAFile, or this key")
		}
		return errs
	}
	if (x.CertFile == "") != (x.KeyFile == "") {
		bad("xds", "certFile and keyFile go together")
	}
	switch x.TLS.Mode {
	case XDSTLSFiles:
		if x.CertFile == "" {
			bad("xds.tls.mode", "%s needs xds.certFile and xds.keyFile", XDSTLSFiles)
		}
	case XDSTLSSelfSigned, XDSTLSCertManager:
		if x.CertFile != "" {
			bad("xds.certFile", "used only with xds.tls.mode %s, not %s", XDSTLSFiles, x.TLS.Mode)
		}
		if x.TLS.Mode == XDSTLSCertManager && x.TLS.CertManager.SecretName == "" {
			bad("xds.tls.certManager.secretName", "required with xds.tls.mode %s", XDSTLSCertManager)
		}
	default:
		bad("xds.tls.mode", "%q: want %s, %s or %s", x.TLS.Mode, XDSTLSSelfSigned, XDSTLSCertManager, XDSTLSFiles)
	}
	ss := x.TLS.SelfSigned
	for key, name := range map[string]string{
		"xds.tls.selfSigned.secretName": ss.SecretName, "xds.tls.selfSigned.configMapName": ss.ConfigMapName,
		"xds.tls.selfSigned.serviceName": ss.ServiceName, "xds.tls.certManager.secretName": x.TLS.CertManager.SecretName,
	} {
		if name == "" {
			continue
		}
		for _, msg := range validation.IsDNS1123Subdomain(name) {
			bad(key, "%q: %s", name, msg)
		}
	}
	for i, n := range ss.DNSNames {
		for _, msg := range validation.IsDNS1123Subdomain(n) {
			bad(fmt.Sprintf("xds.tls.selfSigned.dnsNames[%d]", i), "%q: %s", n, msg)
		}
	}
	if x.TLS.Mode == XDSTLSSelfSigned {
		if err := x.lifetimes().Check(); err != nil {
			bad("xds.tls.selfSigned", "%v", err)
		}
	}
	if !x.Auth.TokenAuthEnabled() && x.ClientCAFile == "" {
		bad("xds.auth", "no way for a client to prove who it is: keep serviceAccountToken enabled or set xds.clientCAFile for mutual TLS (xds.insecurePlaintext turns authentication off)")
	}
	if x.Auth.ServiceAccountToken.CacheTTL.Duration < 0 {
		bad("xds.auth.serviceAccountToken.cacheTTL", "must not be negative")
	}
	return errs
}

func (x *XDS) lifetimes() xdsauth.Lifetimes {
	ss := x.TLS.SelfSigned
	return xdsauth.Lifetimes{CA: ss.CALifetime.Duration, Serving: ss.CertLifetime.Duration, Propagation: ss.Propagation.Duration}
}

// xdsSecurity is how the xDS server proves itself and checks its clients,
// and what keeps its certificate.
type xdsSecurity struct {
	tls       *xds.TLSFiles
	authn     xds.Authenticator
	runnables []manager.Runnable
	// ready fails until a serving certificate is available.
	ready func(*http.Request) error
}

// xdsSecurity builds the xds section's TLS and authentication
// (docs/security.md, "Controller mode's xDS").
func (c *Controller) xdsSecurity() (xdsSecurity, error) {
	x := &c.cfg.XDS
	if x.InsecurePlaintext {
		c.log.Error(nil, "INSECURE: xds.insecurePlaintext serves xDS without TLS and without authentication; any client that reaches the port reads every route and its ACKs and NACKs count")
		return xdsSecurity{}, nil
	}
	cs, err := kubernetes.NewForConfig(c.mgr.GetConfig())
	if err != nil {
		return xdsSecurity{}, fmt.Errorf("xds: kubernetes client: %w", err)
	}
	var sec xdsSecurity
	ns := c.cfg.Namespace
	switch x.TLS.Mode {
	case XDSTLSFiles:
		sec.tls = &xds.TLSFiles{CertFile: x.CertFile, KeyFile: x.KeyFile}
	case XDSTLSSelfSigned:
		ss := x.TLS.SelfSigned
		s := &xdsauth.SelfSigned{
			Client:        cs,
			Namespace:     ns,
			SecretName:    ss.SecretName,
			ConfigMapName: ss.ConfigMapName,
			DNSNames:      append(xdsauth.ServiceDNSNames(ss.ServiceName, ns), ss.DNSNames...),
			Lifetimes:     x.lifetimes(),
			Log:           c.log.WithName("xds-ca"),
		}
		if err := s.Check(); err != nil {
			return xdsSecurity{}, fmt.Errorf("xds.tls.selfSigned: %w", err)
		}
		sec.tls = &xds.TLSFiles{GetCertificate: s.GetCertificate}
		sec.runnables = []manager.Runnable{s, s.Writer()}
	case XDSTLSCertManager:
		s := &xdsauth.SecretCertificate{Client: cs, Namespace: ns, Name: x.TLS.CertManager.SecretName, Log: c.log.WithName("xds-certificate")}
		sec.tls = &xds.TLSFiles{GetCertificate: s.GetCertificate}
		sec.runnables = []manager.Runnable{s}
	default:
		return xdsSecurity{}, fmt.Errorf("xds.tls.mode %q", x.TLS.Mode)
	}
	if get := sec.tls.GetCertificate; get != nil {
		sec.ready = func(*http.Request) error { _, err := get(nil); return err }
	}
	var auths []xds.Authenticator
	if x.ClientCAFile != "" {
		sec.tls.ClientCAFile = x.ClientCAFile
		auths = append(auths, xds.MutualTLS())
	}
	if x.Auth.TokenAuthEnabled() {
		// A token client brings no certificate; one that does must
		// still present a valid one.
		sec.tls.ClientCertOptional = true
		t := x.Auth.ServiceAccountToken
		auths = append(auths, xds.BearerToken(&xdsauth.TokenReview{
			Reviews:     cs.AuthenticationV1().TokenReviews(),
			Audience:    t.Audience,
			TrustDomain: t.TrustDomain,
			CacheTTL:    t.CacheTTL.Duration,
		}))
	}
	if len(auths) == 0 {
		return xdsSecurity{}, errors.New("xds.auth: no authentication method")
	}
	sec.authn = xds.FirstOf(auths...)
	return sec, nil
}
