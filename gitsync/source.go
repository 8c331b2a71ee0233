package gitsync

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"github.com/go-logr/logr"
	"golang.org/x/crypto/ssh"
)

// Source says where a Syncer reads Rollouts from.
type Source struct {
	// Name identifies the source in logs and metrics (the `source` label).
	// Defaults to the URL without credentials.
	Name string
	// URL of the repository: https://, http://, ssh://, git@host:path or
	// file://.
	URL string
	// Exactly one of Branch, Tag and Commit names what to follow. Commit
	// is a full 40-character SHA; it is fetched once and never changes.
	// Write-back needs a Branch.
	Branch string
	Tag    string
	Commit string
	// Path inside the repository to read manifests from; "" or "." is
	// the whole repository. It may name a single file.
	Path string
	// Interval between polls. Default DefaultInterval.
	Interval time.Duration
	// Timeout bounds each fetch and push. Default DefaultTimeout.
	Timeout time.Duration
	// Auth holds the credentials; the zero value is anonymous.
	Auth Auth
	// FetchLimits bound what a fetch may bring; zero fields take the
	// defaults (DefaultMaxPackBytes, DefaultMaxBlobBytes,
	// DefaultMaxFiles).
	FetchLimits FetchLimits
}

// Defaults.
const (
	DefaultInterval = time.Minute
	DefaultTimeout  = 60 * time.Second
	minInterval     = time.Second
)

// Auth holds credentials for the remote. Use the HTTP fields with http(s)
// URLs and the SSH fields with ssh URLs; mixing them is a config error, so
// a secret is never sent somewhere it was not meant for.
type Auth struct {
	// HTTP basic authentication.
	Username string
	Password string
	// Token is an access token sent as the basic-auth password, which is
	// what GitHub, GitLab, Gitea and Bitbucket accept. Username defaults
	// to "git" (any non-empty name works for those hosts; GitLab also
	// accepts "oauth2").
	Token string
	// BearerToken is sent as "Authorization: Bearer" (Azure DevOps,
	// Bitbucket Server).
	BearerToken string
	// CABundle adds PEM certificates to the system pool for HTTPS.
	CABundle []byte
	// InsecureSkipTLSVerify disables TLS certificate checks. It is logged
	// as an error at start and on every fetch, and exported as
	// sluice_gitsync_insecure.
	InsecureSkipTLSVerify bool

	// SSHKey is a PEM private key.
	SSHKey           []byte
	SSHKeyPassphrase string
	// SSHUser defaults to the URL's user, else "git".
	SSHUser string
	// KnownHosts is the content of a known_hosts file that must list the
	// server's host key. Required for SSH unless
	// InsecureIgnoreHostKey is set.
	KnownHosts []byte
	// InsecureIgnoreHostKey accepts any SSH host key. It is logged as an
	// error at start and on every connection (with the key's
	// fingerprint), and exported as sluice_gitsync_insecure.
	InsecureIgnoreHostKey bool
}

var shaRE = regexp.MustCompile(`^[0-9a-f]{40}$`)

// withDefaults returns a copy with defaults filled in, or a config error.
func (s Source) withDefaults() (Source, error) {
	bad := func(format string, args ...any) (Source, error) {
		return s, newError(KindConfig, "configure source", fmt.Errorf(format, args...))
	}
	if s.URL == "" {
		return bad("url is required")
	}
	n := 0
	for _, v := range []string{s.Branch, s.Tag, s.Commit} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		return bad("exactly one of branch, tag and commit must be set")
	}
	if s.Commit != "" && !shaRE.MatchString(s.Commit) {
		return bad("commit %q: must be a full 40-character lowercase SHA", s.Commit)
	}
	for _, ref := range []string{s.Branch, s.Tag} {
		if ref != "" && !validRefName(ref) {
			return bad("%q is not a valid branch or tag name", ref)
		}
	}
	p, err := cleanRepoPath(s.Path)
	if err != nil {
		return bad("path: %v", err)
	}
	s.Path = p
	if s.Interval == 0 {
		s.Interval = DefaultInterval
	}
	if s.Interval < minInterval {
		return bad("interval %v: must be at least %v", s.Interval, minInterval)
	}
	if s.Timeout == 0 {
		s.Timeout = DefaultTimeout
	}
	if s.Timeout < 0 {
		return bad("timeout %v: must be positive", s.Timeout)
	}
	if s.Name == "" {
		s.Name = redactURL(s.URL)
	}
	if s.FetchLimits, err = s.FetchLimits.withDefaults(); err != nil {
		return bad("%v", err)
	}
	return s, nil
}

// cleanRepoPath turns a user's path into an fs.FS-style path, refusing
// anything that could leave the repository.
func cleanRepoPath(p string) (string, error) {
	if p == "" || p == "." || p == "/" {
		return ".", nil
	}
	if strings.HasPrefix(p, "/") || strings.Contains(p, `\`) {
		return "", fmt.Errorf("%q: must be relative to the repository root, with forward slashes", p)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return "", fmt.Errorf("%q: must not contain \"..\"", p)
		}
	}
	return path.Clean(p), nil
}

// validRefName applies the parts of git-check-ref-format that matter for a
// name we put into a refspec.
func validRefName(r string) bool {
	if r == "" || strings.HasPrefix(r, "-") || strings.HasPrefix(r, "/") || strings.HasSuffix(r, "/") ||
		strings.HasSuffix(r, ".lock") || strings.Contains(r, "..") || strings.Contains(r, "//") || strings.Contains(r, "@{") {
		return false
	}
	for _, c := range r {
		if c <= ' ' || c == 0x7f || strings.ContainsRune("~^:?*[\\", c) {
			return false
		}
	}
	return true
}

// redactURL drops credentials from a URL so it can be logged.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return raw // scp-like git@host:path carries no password
	}
	return u.Redacted()
}

// transportAuth builds the go-git auth method for the URL's protocol.
// knownHostsFile is where KnownHosts is written, since the known_hosts
// reader takes files.
func (a Auth) transportAuth(rawURL, knownHostsFile string, log logr.Logger) (transport.AuthMethod, error) {
	ep, err := transport.NewEndpoint(rawURL)
	if err != nil {
		return nil, newError(KindConfig, "configure source", fmt.Errorf("url: %w", err))
	}
	httpSet := a.Username != "" || a.Password != "" || a.Token != "" || a.BearerToken != ""
	sshSet := len(a.SSHKey) > 0 || len(a.KnownHosts) > 0 || a.InsecureIgnoreHostKey
	cfgErr := func(format string, args ...any) error {
		return newError(KindConfig, "configure auth", fmt.Errorf(format, args...))
	}
	switch ep.Protocol {
	case "http", "https":
		if sshSet {
			return nil, cfgErr("SSH credentials given for a %s URL", ep.Protocol)
		}
		if ep.Protocol == "http" && httpSet {
			log.Info("WARNING: credentials are sent over plain http; use https", "url", redactURL(rawURL))
		}
		switch {
		case a.BearerToken != "":
			if a.Token != "" || a.Password != "" {
				return nil, cfgErr("set only one of bearerToken, token and password")
			}
			return &githttp.TokenAuth{Token: a.BearerToken}, nil
		case a.Token != "":
			if a.Password != "" {
				return nil, cfgErr("set only one of token and password")
			}
			user := a.Username
			if user == "" {
				user = "git"
			}
			return &githttp.BasicAuth{Username: user, Password: a.Token}, nil
		case a.Username != "" || a.Password != "":
			return &githttp.BasicAuth{Username: a.Username, Password: a.Password}, nil
		}
		return nil, nil
	case "ssh":
		if httpSet || len(a.CABundle) > 0 || a.InsecureSkipTLSVerify {
			return nil, cfgErr("HTTP credentials or TLS settings given for an ssh URL")
		}
		return a.sshAuth(ep, knownHostsFile, log)
	case "file":
		if httpSet || sshSet {
			return nil, cfgErr("credentials given for a file URL")
		}
		return nil, nil
	}
	return nil, cfgErr("unsupported protocol %q", ep.Protocol)
}

func (a Auth) sshAuth(ep *transport.Endpoint, knownHostsFile string, log logr.Logger) (transport.AuthMethod, error) {
	cfgErr := func(format string, args ...any) error {
		return newError(KindConfig, "configure auth", fmt.Errorf(format, args...))
	}
	if len(a.SSHKey) == 0 {
		return nil, cfgErr("sshKey is required for an ssh URL")
	}
	user := a.SSHUser
	if user == "" {
		user = ep.User
	}
	if user == "" {
		user = "git"
	}
	keys, err := gitssh.NewPublicKeys(user, a.SSHKey, a.SSHKeyPassphrase)
	if err != nil {
		return nil, cfgErr("sshKey: %v", err)
	}
	port := ep.Port
	if port == 0 {
		port = 22
	}
	hostPort := net.JoinHostPort(ep.Host, strconv.Itoa(port))
	switch {
	case a.InsecureIgnoreHostKey:
		if len(a.KnownHosts) > 0 {
			return nil, cfgErr("set either knownHosts or insecureIgnoreHostKey, not both")
		}
		keys.HostKeyCallback = func(hostname string, remote net.Addr, key ssh.PublicKey) error {
			log.Error(nil, "INSECURE: accepting SSH host key without verification (insecureIgnoreHostKey is set)",
				"host", hostname, "fingerprint", ssh.FingerprintSHA256(key))
			return nil
		}
	case len(a.KnownHosts) == 0:
		return nil, cfgErr("knownHosts is required for an ssh URL: host keys are always verified " +
			"(ssh-keyscan HOST gives the lines; set insecureIgnoreHostKey only for tests)")
	default:
		if err := os.MkdirAll(filepath.Dir(knownHostsFile), 0o700); err != nil {
			return nil, newError(KindStorage, "configure auth", err)
		}
		if err := os.WriteFile(knownHostsFile, a.KnownHosts, 0o600); err != nil {
			return nil, newError(KindStorage, "configure auth", err)
		}
		db, err := gitssh.NewKnownHostsDb(knownHostsFile)
		if err != nil {
			return nil, cfgErr("knownHosts: %v", err)
		}
		keys.HostKeyCallback = db.HostKeyCallback()
		// Offer only the algorithms of the keys we know, or the server may
		// present another key of its own that is not in the list.
		keys.HostKeyAlgorithms = db.HostKeyAlgorithms(hostPort)
		if len(keys.HostKeyAlgorithms) == 0 {
			return nil, cfgErr("knownHosts has no key for %s", hostPort)
		}
	}
	return keys, nil
}

// insecure reports whether an option turns off a security check.
func (a Auth) insecure() bool { return a.InsecureSkipTLSVerify || a.InsecureIgnoreHostKey }
