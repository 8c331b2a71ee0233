// Package config reads the configuration of `sluice run`: one YAML file,
// checked strictly (an unknown key is an error naming it), with defaults
// that run a local setup out of the box. Secrets are never written in the
// file itself: they are read from environment variables or files.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/notify"
	"github.com/sluicehq/sluice/rolloutapi"
	"github.com/sluicehq/sluice/xds"
)

// Config is the whole file. Field names are the YAML keys.
type Config struct {
	// StateDir holds the state database and the Git mirror. Default
	// ./sluice-state.
	StateDir string `json:"stateDir,omitempty"`
	// Namespace names Rollouts whose manifests have none. Default "default".
	Namespace     string            `json:"namespace,omitempty"`
	Git           Git               `json:"git"`
	XDS           XDS               `json:"xds,omitempty"`
	HTTP          HTTP              `json:"http,omitempty"`
	Prometheus    Prometheus        `json:"prometheus,omitempty"`
	Secrets       map[string]Secret `json:"secrets,omitempty"`
	Notifications notify.Config     `json:"notifications,omitempty"`
	Shutdown      Shutdown          `json:"shutdown,omitempty"`
}

// Git is the source of Rollouts.
type Git struct {
	URL string `json:"url"`
	// Exactly one of Branch, Tag and Commit; default branch "main".
	Branch string `json:"branch,omitempty"`
	Tag    string `json:"tag,omitempty"`
	Commit string `json:"commit,omitempty"`
	// Path inside the repository. Default: the whole repository.
	Path     string   `json:"path,omitempty"`
	Interval Duration `json:"interval,omitempty"`
	Timeout  Duration `json:"timeout,omitempty"`
	Auth     GitAuth  `json:"auth,omitempty"`
	// WebhookSecret enables POST /webhook for push events.
	WebhookSecret *ValueFrom `json:"webhookSecret,omitempty"`
	// WriteBack signs revert commits after automatic rollbacks.
	WriteBack WriteBack `json:"writeBack,omitempty"`
	// Limits bound what a fetch may bring (docs/gitsync.md).
	Limits GitLimits `json:"limits,omitempty"`
}

// GitAuth holds references to credentials.
type GitAuth struct {
	Username              string     `json:"username,omitempty"`
	Password              *ValueFrom `json:"password,omitempty"`
	Token                 *ValueFrom `json:"token,omitempty"`
	BearerToken           *ValueFrom `json:"bearerToken,omitempty"`
	CABundleFile          string     `json:"caBundleFile,omitempty"`
	InsecureSkipTLSVerify bool       `json:"insecureSkipTLSVerify,omitempty"`
	SSHKeyFile            string     `json:"sshKeyFile,omitempty"`
	SSHKeyPassphrase      *ValueFrom `json:"sshKeyPassphrase,omitempty"`
	SSHUser               string     `json:"sshUser,omitempty"`
	KnownHostsFile        string     `json:"knownHostsFile,omitempty"`
	InsecureIgnoreHostKey bool       `json:"insecureIgnoreHostKey,omitempty"`
}

// WriteBack names the author of revert commits.
type WriteBack struct {
	AuthorName  string `json:"authorName,omitempty"`
	AuthorEmail string `json:"authorEmail,omitempty"`
}

// XDS is the control-plane listener.
type XDS struct {
	// Address to listen on. Default 127.0.0.1:18000.
	Address      string `json:"address,omitempty"`
	CertFile     string `json:"certFile,omitempty"`
	KeyFile      string `json:"keyFile,omitempty"`
	ClientCAFile string `json:"clientCAFile,omitempty"`
	// AckWithoutClients counts a plan as acknowledged when no proxy
	// subscribes to its service. Off: a step never completes unseen.
	AckWithoutClients bool `json:"ackWithoutClients,omitempty"`
	// Authorization says which services each verified node may see: its
	// own namespace by default, plus grants (docs/xds.md,
	// "Authorization"). xds.New checks it, naming the bad key.
	Authorization xds.Authorization `json:"authorization,omitempty"`
}

// HTTP is the API's listener and the listeners beside it. The API, the
// Git webhook and metrics each have their own, so exposing the webhook to
// a Git host never exposes the commands.
type HTTP struct {
	// Address of the API. Default 127.0.0.1:8080.
	Address string `json:"address,omitempty"`
	// Tokens may call the API (and scrape metrics). Without any, `sluice
	// run` refuses to start unless --insecure-no-auth is given.
	Tokens []APIToken `json:"tokens,omitempty"`
	// Token is one more token, read from the environment or a file: an
	// operator named "api".
	Token *ValueFrom `json:"token,omitempty"`
	// MetricsAddress serves /metrics (with a token) and /healthz and
	// /readyz. Default 127.0.0.1:8081.
	MetricsAddress string `json:"metricsAddress,omitempty"`
	// WebhookAddress serves POST /webhook when git.webhookSecret is set.
	// Default 127.0.0.1:8082.
	WebhookAddress string `json:"webhookAddress,omitempty"`
	// TLS, when set, serves all three listeners over TLS.
	TLS *TLS `json:"tls,omitempty"`
}

// APIToken is one caller of the API. The file holds the SHA-256 of the
// token, not the token: `sluice token NAME` makes both.
type APIToken struct {
	Name string `json:"name"`
	// Role is read (list, status, history, metrics) or operate (also
	// promote, abort, retry, pause, resume).
	Role   string `json:"role"`
	SHA256 string `json:"sha256"`
}

// TLS names a serving certificate.
type TLS struct {
	CertFile string `json:"certFile"`
	KeyFile  string `json:"keyFile"`
}

// Secret was the stand-in for a Kubernetes Secret that templates read;
// kept only to refuse the secrets section with a reason (Check).
type Secret map[string]ValueFrom

// Shutdown bounds a graceful stop.
type Shutdown struct {
	// DrainTimeout is how long xDS keeps serving after SIGTERM while
	// proxies disconnect. Default 30s.
	DrainTimeout Duration `json:"drainTimeout,omitempty"`
}

// ValueFrom reads a secret from an environment variable or a file.
type ValueFrom struct {
	Env  string `json:"env,omitempty"`
	File string `json:"file,omitempty"`
}

// Duration is a time.Duration written as "30s", "5m".
type Duration struct{ time.Duration }

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration such as \"30s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalJSON writes a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// Load reads and checks a configuration file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes YAML strictly and applies defaults. Call Check after flags
// have overridden what they override.
func Parse(data []byte) (*Config, error) {
	var c Config
	if len(bytes.TrimSpace(data)) > 0 {
		if err := yaml.UnmarshalStrict(data, &c); err != nil {
			return nil, err
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
	def(&c.StateDir, "sluice-state")
	def(&c.Namespace, "default")
	if c.Git.Tag == "" && c.Git.Commit == "" {
		def(&c.Git.Branch, "main")
	}
	def(&c.XDS.Address, "127.0.0.1:18000")
	def(&c.HTTP.Address, "127.0.0.1:8080")
	def(&c.HTTP.MetricsAddress, "127.0.0.1:8081")
	def(&c.HTTP.WebhookAddress, "127.0.0.1:8082")
	if c.Shutdown.DrainTimeout.Duration == 0 {
		c.Shutdown.DrainTimeout.Duration = 30 * time.Second
	}
}

// Check reports every problem, each naming its key.
func (c *Config) Check() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if c.Git.URL == "" {
		bad("git.url", "required (or --git-url)")
	}
	refs := 0
	for _, s := range []string{c.Git.Branch, c.Git.Tag, c.Git.Commit} {
		if s != "" {
			refs++
		}
	}
	if refs != 1 {
		bad("git", "set exactly one of branch, tag and commit")
	}
	for key, addr := range map[string]string{"xds.address": c.XDS.Address, "http.address": c.HTTP.Address,
		"http.metricsAddress": c.HTTP.MetricsAddress, "http.webhookAddress": c.HTTP.WebhookAddress} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			bad(key, "%q: want host:port: %v", addr, err)
		}
	}
	if (c.XDS.CertFile == "") != (c.XDS.KeyFile == "") {
		bad("xds", "certFile and keyFile go together")
	}
	if c.XDS.ClientCAFile != "" && c.XDS.CertFile == "" {
		bad("xds.clientCAFile", "mutual TLS needs certFile and keyFile")
	}
	if t := c.HTTP.TLS; t != nil && (t.CertFile == "" || t.KeyFile == "") {
		bad("http.tls", "certFile and keyFile are both required")
	}
	seen := map[string]bool{}
	for i, t := range c.HTTP.Tokens {
		key := fmt.Sprintf("http.tokens[%d]", i)
		if _, err := rolloutapi.ParseToken(key, t.Name, rolloutapi.Role(t.Role), t.SHA256); err != nil {
			errs = append(errs, err)
		}
		if seen[t.Name] {
			bad(key+".name", "%q is used twice: a name is the actor of its commands", t.Name)
		}
		seen[t.Name] = true
	}
	if len(c.Secrets) > 0 {
		bad("secrets", "no longer read: any AnalysisTemplate in Git could send them to an address of its own; give the Prometheus and its credentials a name under prometheus.providers and name it in the templates (docs/analysis.md, \"Providers\")")
	}
	errs = append(errs, c.Prometheus.Check())
	return errors.Join(errs...)
}

// APITokens returns the configured tokens, http.token (an operator named
// "api") included. A token that is configured but empty is an error: it
// must never turn authentication off.
func (h *HTTP) APITokens() ([]rolloutapi.Token, error) {
	var out []rolloutapi.Token
	for i, t := range h.Tokens {
		tok, err := rolloutapi.ParseToken(fmt.Sprintf("http.tokens[%d]", i), t.Name, rolloutapi.Role(t.Role), t.SHA256)
		if err != nil {
			return nil, err
		}
		out = append(out, tok)
	}
	if h.Token != nil {
		secret, err := h.Token.Read("http.token")
		if err != nil {
			return nil, err
		}
		if secret == "" {
			return nil, errors.New("http.token: the value is empty; an empty token would let anyone in")
		}
		tok, err := rolloutapi.ParseToken("http.token", "api", rolloutapi.RoleOperate, rolloutapi.HashToken(secret))
		if err != nil {
			return nil, err
		}
		out = append(out, tok)
	}
	return out, nil
}

// Read returns the value, or "" for a nil reference.
func (v *ValueFrom) Read(key string) (string, error) {
	switch {
	case v == nil:
		return "", nil
	case v.Env != "" && v.File != "":
		return "", fmt.Errorf("%s: set one of env and file, not both", key)
	case v.Env != "":
		s, ok := os.LookupEnv(v.Env)
		if !ok {
			return "", fmt.Errorf("%s: environment variable %s is not set", key, v.Env)
		}
		return s, nil
	case v.File != "":
		b, err := os.ReadFile(v.File)
		if err != nil {
			return "", fmt.Errorf("%s: %w", key, err)
		}
		return strings.TrimRight(string(b), " \t\r\n"), nil
	}
	return "", fmt.Errorf("%s: set env or file", key)
}
