package manager

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/sluicehq/sluice/dashboard"
	"github.com/sluicehq/sluice/gitsync"
	"github.com/sluicehq/sluice/kube/clusterapi"
	"github.com/sluicehq/sluice/kube/gitapply"
	"github.com/sluicehq/sluice/rollout/plan"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
	"github.com/sluicehq/sluice/rolloutapi"
	"github.com/sluicehq/sluice/standalone/runner"
)

// Dashboard is the dashboard section: the web dashboard every replica
// serves to people with their own Kubernetes identity (docs/dashboard.md,
// "Controller mode").
type Dashboard struct {
	// Enabled defaults to true. Off, no replica serves the dashboard.
	Enabled *bool `json:"enabled,omitempty"`
	// Path is where it is served. Default /dashboard; "off" (the
	// --dashboard-path flag's way) is enabled: false.
	Path string `json:"path,omitempty"`
	// Address gives it a listener of its own (host:port). Default: the
	// HTTP listener at http.webhookAddress, beside the Git webhooks.
	Address string `json:"address,omitempty"`
	// ReadOnly offers and runs no command, whatever RBAC allows.
	ReadOnly bool `json:"readOnly,omitempty"`
	// SecureCookie marks the session cookie Secure over plain HTTP too:
	// for a TLS-terminating ingress or proxy in front.
	SecureCookie bool `json:"secureCookie,omitempty"`
	// TLS serves its own listener over HTTPS.
	TLS *DashboardTLS `json:"tls,omitempty"`
	// AuthenticatingProxy trusts a proxy in front to name the user.
	AuthenticatingProxy *DashboardProxy `json:"authenticatingProxy,omitempty"`
}

// DashboardTLS is the dashboard's own listener's certificate, and the CA
// of an authenticating proxy's client certificates.
type DashboardTLS struct {
	CertFile string `json:"certFile"`
	KeyFile  string `json:"keyFile"`
	// ClientCAFile verifies the client certificate of an authenticating
	// proxy (authenticatingProxy.clientCertificate); other clients
	// present none.
	ClientCAFile string `json:"clientCAFile,omitempty"`
}

// DashboardProxy is an authenticating proxy in front of the dashboard
// (clusterapi.Proxy): its headers name the user and groups, and count only
// on requests that come from a trusted network or with a client
// certificate from its CA; anywhere else they are refused.
type DashboardProxy struct {
	// UserHeaders default [X-Remote-User]; GroupHeaders [X-Remote-Group].
	UserHeaders  []string `json:"userHeaders,omitempty"`
	GroupHeaders []string `json:"groupHeaders,omitempty"`
	// TrustedNetworks are the proxy's addresses as CIDRs, e.g.
	// 127.0.0.1/32 for a sidecar.
	TrustedNetworks []string `json:"trustedNetworks,omitempty"`
	// ClientCertificate trusts a request with a client certificate that
	// tls.clientCAFile verifies, whose common name or DNS name is one of
	// AllowedNames when any are given.
	ClientCertificate bool     `json:"clientCertificate,omitempty"`
	AllowedNames      []string `json:"allowedNames,omitempty"`
}

// dashboardOff is the path that serves no dashboard.
const dashboardOff = "off"

// On reports whether the dashboard is served.
func (d *Dashboard) On() bool { return (d.Enabled == nil || *d.Enabled) && d.Path != dashboardOff }

func (d *Dashboard) defaults() {
	if d.Path == "" {
		d.Path = "/dashboard"
	}
}

// check reports the section's problems, each naming its key.
func (d *Dashboard) check() []error {
	if !d.On() {
		return nil
	}
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	var reserved []string
	if d.Address == "" {
		// The Git webhooks' paths share the listener.
		reserved = []string{"/webhook"}
	} else if _, _, err := net.SplitHostPort(d.Address); err != nil {
		bad("dashboard.address", "%q: want host:port: %v", d.Address, err)
	}
	if err := dashboard.CheckPath("dashboard.path", d.Path, reserved...); err != nil {
		errs = append(errs, err)
	}
	if t := d.TLS; t != nil {
		if d.Address == "" {
			bad("dashboard.tls", "needs a listener of the dashboard's own (dashboard.address)")
		}
		if t.CertFile == "" || t.KeyFile == "" {
			bad("dashboard.tls", "certFile and keyFile are required")
		}
	}
	if p := d.AuthenticatingProxy; p != nil {
		if len(p.TrustedNetworks) == 0 && !p.ClientCertificate {
			bad("dashboard.authenticatingProxy", "say how its requests are told from others: trustedNetworks, or clientCertificate with dashboard.tls.clientCAFile")
		}
		if p.ClientCertificate && (d.TLS == nil || d.TLS.ClientCAFile == "") {
			bad("dashboard.authenticatingProxy.clientCertificate", "needs dashboard.tls.clientCAFile")
		}
		for i, n := range p.TrustedNetworks {
			if _, err := netip.ParsePrefix(n); err != nil {
				bad(fmt.Sprintf("dashboard.authenticatingProxy.trustedNetworks[%d]", i), "%q: want a CIDR such as 127.0.0.1/32: %v", n, err)
			}
		}
	}
	return errs
}

// proxy is the clusterapi.Proxy the section describes, nil without one.
func (d *Dashboard) proxy() *clusterapi.Proxy {
	p := d.AuthenticatingProxy
	if p == nil {
		return nil
	}
	var trust []func(*http.Request) bool
	if len(p.TrustedNetworks) > 0 {
		var nets []netip.Prefix
		for _, n := range p.TrustedNetworks {
			if pfx, err := netip.ParsePrefix(n); err == nil { // check refused the others
				nets = append(nets, pfx)
			}
		}
		trust = append(trust, clusterapi.TrustNetworks(nets))
	}
	if p.ClientCertificate {
		trust = append(trust, clusterapi.TrustClientCertificate(p.AllowedNames))
	}
	return &clusterapi.Proxy{UserHeaders: p.UserHeaders, GroupHeaders: p.GroupHeaders, Trusted: clusterapi.TrustEither(trust...)}
}

// kubernetesLoginHelp is the login form's text in controller mode.
const kubernetesLoginHelp = "Paste a Kubernetes bearer token: yours (an OIDC ID token the cluster accepts) or a service account's " +
	"(kubectl create token NAME). You see the rollouts of the namespaces where RBAC lets you list them, and may steer those you may patch."

// setupDashboard serves the dashboard: on mux, the HTTP listener's, unless
// it has a listener of its own. It reports whether it took mux. With the
// HTTP listener off (http.webhookAddress "0") and none of its own, it is
// off too.
func (c *Controller) setupDashboard(opts Options, mux *http.ServeMux) (bool, error) {
	d := c.cfg.Dashboard
	shared := d.Address == "" && opts.DashboardListener == nil
	if !d.On() || (shared && c.cfg.HTTP.WebhookAddress == "0") {
		return false, nil
	}
	h, err := c.dashboardHandler()
	if err != nil {
		return false, err
	}
	addr := d.Address
	if shared {
		addr = c.cfg.HTTP.WebhookAddress
	} else if opts.DashboardListener != nil {
		addr = opts.DashboardListener.Addr().String()
	}
	c.log.Info("web dashboard: viewers log in with a Kubernetes token or come through the authenticating proxy; RBAC decides what each sees and steers",
		"address", addr, "path", d.Path, "tls", d.TLS != nil, "authenticatingProxy", d.AuthenticatingProxy != nil, "readOnly", d.ReadOnly)
	if shared {
		dashboard.Mount(mux, d.Path, h)
		return true, nil
	}
	own := http.NewServeMux()
	dashboard.Mount(own, d.Path, h)
	srv := &manager.Server{Name: "dashboard", Listener: opts.DashboardListener, Server: &http.Server{
		Addr: d.Address, Handler: own, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 45 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
	}}
	if d.TLS != nil {
		conf, err := d.TLS.config()
		if err != nil {
			return false, err
		}
		l := srv.Listener
		if l == nil {
			if l, err = net.Listen("tcp", d.Address); err != nil {
				return false, fmt.Errorf("dashboard.address: %w", err)
			}
		}
		srv.Listener = tls.NewListener(l, conf)
	}
	return false, c.mgr.Add(srv)
}

// config loads the certificate and the proxy's CA.
func (t *DashboardTLS) config() (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("dashboard.tls: %w", err)
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if t.ClientCAFile != "" {
		pem, err := os.ReadFile(t.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("dashboard.tls.clientCAFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("dashboard.tls.clientCAFile: no PEM certificate in it")
		}
		// Browsers present none; the proxy does, and only a verified one
		// makes its headers count.
		conf.ClientCAs, conf.ClientAuth = pool, tls.VerifyClientCertIfGiven
	}
	return conf, nil
}

// dashboardHandler is the dashboard over the controller's cache, with the
// viewers' own rights (clusterapi.Access): reads of Rollouts, AnalysisRuns
// and GitSources from the cache, Events and commands through the API
// server with the controller's credentials, every one first authorized for
// the viewer with a SubjectAccessReview.
func (c *Controller) dashboardHandler() (*dashboard.Dashboard, error) {
	mgr := c.mgr
	b, err := clusterapi.New(mgr.GetConfig(), clusterapi.Options{
		Reader: mgr.GetClient(), StatedActor: true,
		Git: gitDetail{c.sources}, DataPlane: planeDetail{c},
	})
	if err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	changes := clusterapi.NewChanges()
	for _, obj := range []client.Object{&v1alpha1.Rollout{}, &v1alpha1.AnalysisRun{}} {
		inf, err := mgr.GetCache().GetInformer(c.base, obj)
		if err != nil {
			return nil, fmt.Errorf("dashboard: informer: %w", err)
		}
		if _, err := inf.AddEventHandler(changes.Handler()); err != nil {
			return nil, fmt.Errorf("dashboard: informer: %w", err)
		}
	}
	access, err := clusterapi.NewAccess(b, mgr.GetClient(), clusterapi.AccessOptions{Proxy: c.cfg.Dashboard.proxy(), Changed: changes.Changed})
	if err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	d := c.cfg.Dashboard
	return dashboard.New(nil, dashboard.Options{
		Access: access, ReadOnly: d.ReadOnly, SecureCookie: d.SecureCookie, LoginHelp: kubernetesLoginHelp,
		// Changes of Rollouts and AnalysisRuns wake the pages at once;
		// this is for the rest (Events without a status change).
		Refresh: 5 * time.Second,
	})
}

// gitDetail is what the Git sources of this replica know of a Rollout's
// commits (clusterapi.GitDetailer): the author and message of the commit
// in force, and the commit the source rejected. Their mirrors run on the
// leader; on a follower the page shows the status's provenance only.
type gitDetail struct{ s *gitapply.Sources }

func (g gitDetail) GitDetail(ro *v1alpha1.Rollout) (*rolloutapi.Commit, []rolloutapi.RejectedCommit) {
	a := g.s.Get(gitapply.SourceOf(ro))
	if a == nil {
		return nil, nil
	}
	st := a.State().Git
	var commit *rolloutapi.Commit
	if snap := st.Applied; snap != nil {
		author, msg := rolloutapi.CommitText(snap.Commit.Author, snap.Commit.Message)
		commit = &rolloutapi.Commit{SHA: snap.Commit.SHA, Author: author, Message: msg, Time: snap.Commit.Time}
	}
	var ge *gitsync.Error
	if !errors.As(st.Err, &ge) || ge.Commit == "" || (ge.Kind != gitsync.KindInvalidCommit && ge.Kind != gitsync.KindLimit) {
		return commit, nil
	}
	// A commit with invalid manifests, or past a limit: the last good
	// one stays in force.
	rc := rolloutapi.RejectedCommit{SHA: ge.Commit, At: st.LastAttempt}
	for _, p := range ge.Problems {
		rc.Problems = append(rc.Problems, rolloutapi.ErrorText(p.String()))
	}
	if len(rc.Problems) == 0 && ge.Err != nil {
		rc.Error = rolloutapi.ErrorText(ge.Err.Error())
	}
	return commit, []rolloutapi.RejectedCommit{rc}
}

// planeDetail is how the proxies connected to this replica answered a
// plan (clusterapi.DataPlaneDetailer), worded as `sluice run` words its
// own (runner.XDSPlane.Detail). Every replica serves xDS to its own
// proxies; the Rollout's status counts those of all.
type planeDetail struct{ c *Controller }

func (p planeDetail) DataPlaneDetail(_ *v1alpha1.Rollout, pl plan.Plan) *rolloutapi.DataPlaneDetail {
	if p.c.xds == nil {
		return nil
	}
	d := runner.NewXDSPlane(p.c.base, p.c.xds, nil).Detail(pl)
	d.Replica = p.c.cfg.XDS.ReplicaName
	return &d
}
