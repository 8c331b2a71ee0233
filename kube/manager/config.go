package manager

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/gitsync"
	"github.com/sluicehq/sluice/kube/xdsplane"
	"github.com/sluicehq/sluice/notify"
	"github.com/sluicehq/sluice/standalone/config"
)

// Config is the configuration file of `sluice controller` (YAML, strict:
// an unknown key is an error naming it). The git, xds and prometheus
// sections are the ones `sluice run` reads (standalone/config), so a team
// moving from one binary to a cluster keeps them as they are.
type Config struct {
	// Namespace is the controller's own: its leader-election lease lives
	// there. Default $POD_NAMESPACE, else sluice-system.
	Namespace string `json:"namespace,omitempty"`
	// WatchNamespaces limits the controller to these namespaces; empty
	// means all.
	WatchNamespaces []string `json:"watchNamespaces,omitempty"`
	// DefaultNamespace is where Rollouts and AnalysisTemplates whose
	// manifests in Git name no namespace go. Default "default".
	DefaultNamespace string `json:"defaultNamespace,omitempty"`
	// StateDir holds the Git mirrors. Default /var/lib/sluice in a pod,
	// the user's cache folder outside a cluster (statedir.go).
	StateDir string `json:"stateDir,omitempty"`

	LeaderElection LeaderElection    `json:"leaderElection,omitempty"`
	HTTP           HTTP              `json:"http,omitempty"`
	XDS            XDS               `json:"xds,omitempty"`
	Istio          Istio             `json:"istio,omitempty"`
	Prometheus     config.Prometheus `json:"prometheus,omitempty"`
	Reconcile      Reconcile         `json:"reconcile,omitempty"`
	KubeAPI        KubeAPI           `json:"kubeAPI,omitempty"`
	// Git, when set, is the source the controller applies Rollouts and
	// AnalysisTemplates from. Without it, Rollouts are applied by other
	// means (kubectl, Argo CD, Flux) and the controller only reconciles.
	Git *GitConfig `json:"git,omitempty"`
	// GitSources configures the GitSource controller.
	GitSources GitSources `json:"gitSources,omitempty"`
	// Notifications is `sluice run`'s notifications section: every
	// engine Event of a persisted status goes to the targets it selects
	// (notify.go). URLs and HMAC keys may come from Secrets in Namespace
	// (secretKeyRef).
	Notifications notify.Config `json:"notifications,omitempty"`
	// Dashboard configures the web dashboard (dashboard.go).
	Dashboard Dashboard `json:"dashboard,omitempty"`
}

// GitSources configures the GitSource controller (docs/controller.md,
// "GitSource").
type GitSources struct {
	// Enabled defaults to true. Off, GitSource objects are ignored.
	Enabled *bool `json:"enabled,omitempty"`
	// AllowFileURLs lets GitSources read file:// URLs: the controller's
	// own disk, other sources' mirrors included. Off by default; for
	// tests and single-tenant clusters with local mirrors.
	AllowFileURLs bool `json:"allowFileURLs,omitempty"`
	// Limits bound what every GitSource's fetch may bring: the fields of
	// the git section's limits, with the same defaults. They are the
	// operator's alone: a GitSource cannot set its own.
	Limits config.GitLimits `json:"limits,omitempty"`
}

// FetchLimits returns gitSources.limits for gitsync; errors name the key.
func (g GitSources) FetchLimits() (gitsync.FetchLimits, error) {
	return g.Limits.FetchLimits("gitSources.limits")
}

// GitConfig is the git section, as `sluice run` reads it.
type GitConfig = config.Git

// XDS is `sluice run`'s xds section plus what only several replicas need:
// each reports its xDS clients to the leader in a ConfigMap of its own
// (docs/controller.md, "Acknowledgements across replicas").
type XDS struct {
	config.XDS
	// ReplicaName names this replica's report (sluice-xds-<name>); it must
	// be unique among the replicas. Default $POD_NAME, else the host name.
	ReplicaName string `json:"replicaName,omitempty"`
	// ReportInterval is the least time between two writes of the report.
	// Default 250ms.
	ReportInterval config.Duration `json:"reportInterval,omitempty"`
	// ReportHeartbeat is how often an unchanged report is renewed; the
	// leader ignores one not renewed for three heartbeats. Default 10s.
	ReportHeartbeat config.Duration `json:"reportHeartbeat,omitempty"`
	// TLS says where the serving certificate comes from (docs/security.md).
	TLS XDSTLS `json:"tls,omitempty"`
	// Auth says how a stream proves its identity.
	Auth XDSAuth `json:"auth,omitempty"`
	// InsecurePlaintext serves xDS without TLS and without
	// authentication: any client may read every route and ACK or NACK
	// for any node. For a cluster where something else (a mesh) secures
	// the connection; logged at every start.
	InsecurePlaintext bool `json:"insecurePlaintext,omitempty"`
}

// The sources of the xDS serving certificate (xds.tls.mode).
const (
	// XDSTLSSelfSigned: a CA Sluice keeps in a Secret (the default).
	XDSTLSSelfSigned = "selfSigned"
	// XDSTLSCertManager: a kubernetes.io/tls Secret cert-manager keeps.
	XDSTLSCertManager = "certManager"
	// XDSTLSFiles: xds.certFile and xds.keyFile, reloaded when they change.
	XDSTLSFiles = "files"
)

// XDSTLS is the xds.tls section.
type XDSTLS struct {
	// Mode is selfSigned (default, or files when xds.certFile is set),
	// certManager or files.
	Mode string `json:"mode,omitempty"`
	// SelfSigned tunes the self-managed CA.
	SelfSigned XDSSelfSigned `json:"selfSigned,omitempty"`
	// CertManager names cert-manager's Secret.
	CertManager XDSCertManager `json:"certManager,omitempty"`
}

// XDSSelfSigned is the self-managed CA (kube/xdsauth.SelfSigned).
type XDSSelfSigned struct {
	// SecretName holds the CA, in the controller's namespace. Default
	// sluice-xds-ca.
	SecretName string `json:"secretName,omitempty"`
	// ConfigMapName is where the CA bundle clients trust is published
	// (key ca.crt), in the controller's namespace. Default sluice-xds-ca.
	ConfigMapName string `json:"configMapName,omitempty"`
	// ServiceName is the xDS Service; the certificate names
	// <service>, <service>.<ns>, <service>.<ns>.svc and
	// <service>.<ns>.svc.cluster.local. Default sluice-controller.
	ServiceName string `json:"serviceName,omitempty"`
	// DNSNames are added to the Service's names.
	DNSNames []string `json:"dnsNames,omitempty"`
	// CALifetime default 8760h, CertLifetime default 24h, both renewed at
	// two thirds; Propagation (default 1h) is how long a new CA is
	// published before it signs.
	CALifetime   config.Duration `json:"caLifetime,omitempty"`
	CertLifetime config.Duration `json:"certLifetime,omitempty"`
	Propagation  config.Duration `json:"propagation,omitempty"`
}

// XDSCertManager names the Secret of a cert-manager Certificate.
type XDSCertManager struct {
	// SecretName in the controller's namespace, keys tls.crt and tls.key.
	SecretName string `json:"secretName,omitempty"`
}

// XDSAuth is the xds.auth section. With both methods a stream may use
// either; a stream with neither is refused.
type XDSAuth struct {
	// ServiceAccountToken: projected service-account tokens verified with
	// TokenReview. On by default.
	ServiceAccountToken XDSTokenAuth `json:"serviceAccountToken,omitempty"`
	// Mutual TLS is on when xds.clientCAFile is set: a client certificate
	// with a SPIFFE ID, verified against that CA.
}

// XDSTokenAuth configures service-account token authentication.
type XDSTokenAuth struct {
	// Enabled defaults to true.
	Enabled *bool `json:"enabled,omitempty"`
	// Audience the token must be issued for. Default sluice.dev/xds.
	Audience string `json:"audience,omitempty"`
	// TrustDomain of the SPIFFE IDs tokens map to. Default cluster.local.
	TrustDomain string `json:"trustDomain,omitempty"`
	// CacheTTL: how long an accepted token is not asked about again
	// (never past its expiry). Default 1m.
	CacheTTL config.Duration `json:"cacheTTL,omitempty"`
}

// TokenAuthEnabled reports the effective setting.
func (a XDSAuth) TokenAuthEnabled() bool {
	return a.ServiceAccountToken.Enabled == nil || *a.ServiceAccountToken.Enabled
}

// LeaderElection: only the leader advances rollouts, measures analysis and
// applies Git; every replica serves xDS.
type LeaderElection struct {
	// Enabled defaults to true; turn it off only for a single replica.
	Enabled       *bool           `json:"enabled,omitempty"`
	ID            string          `json:"id,omitempty"`
	LeaseDuration config.Duration `json:"leaseDuration,omitempty"`
	RenewDeadline config.Duration `json:"renewDeadline,omitempty"`
	RetryPeriod   config.Duration `json:"retryPeriod,omitempty"`
}

// HTTP holds the manager's listeners. "0" turns one off.
type HTTP struct {
	// MetricsAddress serves /metrics. Default ":8080".
	MetricsAddress string `json:"metricsAddress,omitempty"`
	// ProbeAddress serves /healthz and /readyz. Default ":8081".
	ProbeAddress string `json:"probeAddress,omitempty"`
	// WebhookAddress serves POST /webhook for Git push events when
	// git.webhookSecret is set, GitSources' webhooks, and the dashboard
	// unless dashboard.address gives it a listener of its own. Default
	// ":8082".
	WebhookAddress string `json:"webhookAddress,omitempty"`
	// InsecurePprofAddress serves Go's /debug/pprof/ profiles, without
	// authentication (hence the name), to find where the
	// controller's CPU and memory go. Off unless set; a loopback address
	// only ("127.0.0.1:6060"), since profiles show the process's internals
	// to whoever connects: reach it with kubectl port-forward.
	InsecurePprofAddress string `json:"insecurePprofAddress,omitempty"`
}

// Istio says whether traffic plans are also written as VirtualService and
// DestinationRule objects.
type Istio struct {
	// Enabled defaults to true. Off: xDS only (a mesh of proxyless gRPC
	// clients or Envoys fed by Sluice directly).
	Enabled *bool `json:"enabled,omitempty"`
}

// Reconcile tunes the Rollout controller.
type Reconcile struct {
	// MaxConcurrent Rollouts reconciled at once. Default 10.
	MaxConcurrent int `json:"maxConcurrent,omitempty"`
	// MaxConcurrentAnalysis AnalysisRuns measured at once. Default 10.
	MaxConcurrentAnalysis int `json:"maxConcurrentAnalysis,omitempty"`
	// AckPollInterval: how often an unacknowledged plan is looked at
	// again when no proxy signals. Default 2s.
	AckPollInterval config.Duration `json:"ackPollInterval,omitempty"`
	// RevisionHistory is how many idle ReplicaSets are kept. Default 3.
	RevisionHistory int `json:"revisionHistory,omitempty"`
}

// KubeAPI is the client-side rate limit of the controller's requests to
// the Kubernetes API server. client-go applies it per API resource
// (Rollouts with their status, ReplicaSets, Services, Events, ...: one
// token bucket each), on top of the API server's own priority and
// fairness. client-go's default of 5 per second would hold a rollout of
// many Rollouts at once to a crawl: each takes about a dozen status
// writes.
type KubeAPI struct {
	// QPS is the sustained rate of requests per second, per resource.
	// Default 50; negative turns client-side limiting off and leaves the
	// API server's priority and fairness alone in charge.
	QPS float32 `json:"qps,omitempty"`
	// Burst is how many requests may go out at once before QPS paces
	// them. Default 1,000: a wave of Rollouts moving in step.
	Burst int `json:"burst,omitempty"`
}

// Apply returns a copy of cfg with the rate limit, unless cfg carries a
// limit of its own (QPS, Burst or a RateLimiter set by whoever built it).
// Configurations loaded from a kubeconfig never do.
func (k KubeAPI) Apply(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	if cfg.QPS == 0 && cfg.Burst == 0 && cfg.RateLimiter == nil {
		cfg.QPS, cfg.Burst = k.QPS, k.Burst
	}
	return cfg
}

// LoadConfig reads and defaults a configuration file; "" gives the
// defaults. Call Check after flags have overridden what they override.
func LoadConfig(path string) (*Config, error) {
	var data []byte
	if path != "" {
		var err error
		if data, err = os.ReadFile(path); err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
	}
	c, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// ParseConfig decodes YAML strictly and applies defaults.
func ParseConfig(data []byte) (*Config, error) {
	var c Config
	if len(bytes.TrimSpace(data)) > 0 {
		js, err := yaml.YAMLToJSON(data)
		if err != nil {
			return nil, err
		}
		// sigs.k8s.io/json names the full path of an unknown or duplicate
		// key ("xds.adress"), as the API server does.
		strict, err := kjson.UnmarshalStrict(js, &c, kjson.DisallowUnknownFields, kjson.DisallowDuplicateFields)
		if err != nil {
			if key := failingKey(js); key != "" {
				return nil, fmt.Errorf("%s: %w", key, err)
			}
			return nil, err
		}
		if len(strict) > 0 {
			return nil, errors.Join(strict...)
		}
	}
	c.Default()
	return &c, nil
}

// Default fills in what is not set.
func (c *Config) Default() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.Namespace, os.Getenv("POD_NAMESPACE"))
	def(&c.Namespace, "sluice-system")
	def(&c.DefaultNamespace, "default")
	def(&c.LeaderElection.ID, "sluice-controller")
	defDur := func(d *config.Duration, v time.Duration) {
		if d.Duration == 0 {
			d.Duration = v
		}
	}
	// controller-runtime's defaults.
	defDur(&c.LeaderElection.LeaseDuration, 15*time.Second)
	defDur(&c.LeaderElection.RenewDeadline, 10*time.Second)
	defDur(&c.LeaderElection.RetryPeriod, 2*time.Second)
	def(&c.HTTP.MetricsAddress, ":8080")
	def(&c.HTTP.ProbeAddress, ":8081")
	def(&c.HTTP.WebhookAddress, ":8082")
	def(&c.XDS.Address, ":18000")
	def(&c.XDS.ReplicaName, os.Getenv("POD_NAME"))
	if c.XDS.ReplicaName == "" {
		// A pod's host name is its name; outside a cluster, the machine's.
		host, _ := os.Hostname()
		c.XDS.ReplicaName = strings.ToLower(host)
	}
	defDur(&c.XDS.ReportInterval, 250*time.Millisecond)
	defDur(&c.XDS.ReportHeartbeat, 10*time.Second)
	c.XDS.defaults(def, defDur)
	if c.Reconcile.MaxConcurrent == 0 {
		c.Reconcile.MaxConcurrent = 10
	}
	if c.Reconcile.MaxConcurrentAnalysis == 0 {
		c.Reconcile.MaxConcurrentAnalysis = 10
	}
	defDur(&c.Reconcile.AckPollInterval, 2*time.Second)
	// Flux's controllers default to 50 (burst 300), Argo Rollouts to 40
	// (burst 80); controller-runtime's own config loader turns the limit
	// off. 50 a second keeps one controller from flooding a shared API
	// server with sustained traffic. The burst is large because Sluice's
	// writes come in waves: Rollouts changed by one commit move in step,
	// and each step is one status write per Rollout, all at once. With a
	// burst of 100, a wave of 200 Rollouts queued its second half for two
	// seconds at every step (reconcile p99 2.5 s, against 0.7 s without
	// the limit; docs/performance.md, "Controller, same work"). 1,000
	// lets a wave of up to a thousand go out at once, for the API server's
	// priority and fairness to queue, and still paces a flood to 50 a
	// second once the bucket is empty.
	if c.KubeAPI.QPS == 0 {
		c.KubeAPI.QPS = 50
	}
	if c.KubeAPI.Burst == 0 {
		c.KubeAPI.Burst = 1000
	}
	if c.Git != nil && c.Git.Tag == "" && c.Git.Commit == "" {
		def(&c.Git.Branch, "main")
	}
	c.Dashboard.defaults()
}

// LeaderElectionEnabled reports the effective setting.
func (c *Config) LeaderElectionEnabled() bool {
	return c.LeaderElection.Enabled == nil || *c.LeaderElection.Enabled
}

// IstioEnabled reports the effective setting.
func (c *Config) IstioEnabled() bool { return c.Istio.Enabled == nil || *c.Istio.Enabled }

// GitSourcesEnabled reports whether the GitSource controller runs.
func (c *Config) GitSourcesEnabled() bool {
	return c.GitSources.Enabled == nil || *c.GitSources.Enabled
}

// Check reports every problem, each naming its key.
func (c *Config) Check() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	dns := func(key, v string) {
		for _, msg := range validation.IsDNS1123Label(v) {
			bad(key, "%q: %s", v, msg)
		}
	}
	dns("namespace", c.Namespace)
	dns("defaultNamespace", c.DefaultNamespace)
	for i, ns := range c.WatchNamespaces {
		dns(fmt.Sprintf("watchNamespaces[%d]", i), ns)
	}
	for key, addr := range map[string]string{
		"http.metricsAddress": c.HTTP.MetricsAddress, "http.probeAddress": c.HTTP.ProbeAddress,
		"http.webhookAddress": c.HTTP.WebhookAddress, "xds.address": c.XDS.Address,
	} {
		if addr == "0" && key != "xds.address" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			bad(key, "%q: want host:port (or \"0\" to turn it off): %v", addr, err)
		}
	}
	if a := c.HTTP.InsecurePprofAddress; a != "" && a != "0" {
		host, _, err := net.SplitHostPort(a)
		ip := net.ParseIP(host)
		switch {
		case err != nil:
			bad("http.insecurePprofAddress", "%q: want a loopback host:port such as 127.0.0.1:6060: %v", a, err)
		case host != "localhost" && (ip == nil || !ip.IsLoopback()):
			bad("http.insecurePprofAddress", "%q: want a loopback address (127.0.0.1, ::1 or localhost): profiles show the process's internals; reach it with kubectl port-forward", a)
		}
	}
	le := c.LeaderElection
	if !(le.LeaseDuration.Duration > le.RenewDeadline.Duration && le.RenewDeadline.Duration > le.RetryPeriod.Duration) {
		bad("leaderElection", "want leaseDuration > renewDeadline > retryPeriod, have %s, %s, %s",
			le.LeaseDuration.Duration, le.RenewDeadline.Duration, le.RetryPeriod.Duration)
	}
	if c.XDS.ReplicaName == "" {
		bad("xds.replicaName", "required: set it, $POD_NAME or a host name")
	} else {
		for _, msg := range validation.IsDNS1123Subdomain(xdsplane.ReportName(c.XDS.ReplicaName)) {
			bad("xds.replicaName", "%q: the report ConfigMap %s: %s", c.XDS.ReplicaName, xdsplane.ReportName(c.XDS.ReplicaName), msg)
		}
	}
	if c.XDS.ReportInterval.Duration <= 0 || c.XDS.ReportHeartbeat.Duration < c.XDS.ReportInterval.Duration {
		bad("xds", "want 0 < reportInterval <= reportHeartbeat, have %s, %s", c.XDS.ReportInterval.Duration, c.XDS.ReportHeartbeat.Duration)
	}
	if (c.XDS.CertFile == "") != (c.XDS.KeyFile == "") {
		bad("xds", "certFile and keyFile go together")
	}
	errs = append(errs, c.XDS.checkSecurity()...)
	errs = append(errs, c.Dashboard.check()...)
	if c.KubeAPI.QPS > 0 && c.KubeAPI.Burst < 1 {
		bad("kubeAPI.burst", "%d: want at least 1 while qps is positive", c.KubeAPI.Burst)
	}
	errs = append(errs, c.Prometheus.Check())
	if c.Reconcile.MaxConcurrent < 1 || c.Reconcile.MaxConcurrentAnalysis < 1 {
		bad("reconcile", "maxConcurrent and maxConcurrentAnalysis must be at least 1")
	}
	if _, err := c.GitSources.FetchLimits(); err != nil {
		errs = append(errs, err)
	}
	if g := c.Git; g != nil {
		if _, err := g.Limits.FetchLimits("git.limits"); err != nil {
			errs = append(errs, err)
		}
		if g.URL == "" {
			bad("git.url", "required when a git section is given: set it, or pass --git-url")
		}
		refs := 0
		for _, s := range []string{g.Branch, g.Tag, g.Commit} {
			if s != "" {
				refs++
			}
		}
		if refs != 1 {
			bad("git", "set exactly one of branch, tag and commit")
		}
	}
	return errors.Join(errs...)
}

// failingKey finds the deepest key whose value alone fails to decode, for
// errors that carry no path of their own (a value's own UnmarshalJSON, such
// as a duration, reports only the value). It decodes the one branch leading
// to each key in turn; the configuration is small, so this costs nothing.
func failingKey(js []byte) string {
	var doc map[string]any
	if json.Unmarshal(js, &doc) != nil {
		return ""
	}
	fails := func(branch map[string]any) bool {
		b, err := json.Marshal(branch)
		if err != nil {
			return false
		}
		var c Config
		return json.Unmarshal(b, &c) != nil
	}
	var path []string
	// wrap puts v under the keys of path and then key.
	wrap := func(key string, v any) map[string]any {
		m := map[string]any{key: v}
		for i := len(path) - 1; i >= 0; i-- {
			m = map[string]any{path[i]: m}
		}
		return m
	}
	level := doc
	for level != nil {
		var next map[string]any
		found := ""
		for k, v := range level {
			if fails(wrap(k, v)) {
				found = k
				next, _ = v.(map[string]any)
				break
			}
		}
		if found == "" {
			break
		}
		path = append(path, found)
		level = next
	}
	return strings.Join(path, ".")
}
