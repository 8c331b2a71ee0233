package config

import (
	"errors"
	"fmt"
	"os"

	"github.com/sluicehq/sluice/gitsync"
)

// GitLimits is git.limits: what one fetch may bring (gitsync.FetchLimits).
// Unset or 0 takes the default.
type GitLimits struct {
	// MaxPackBytes bounds the bytes one fetch receives. Default 256 MiB.
	MaxPackBytes int64 `json:"maxPackBytes,omitempty"`
	// MaxBlobBytes bounds every file (any object) of the repository,
	// inside the path or not. Default 16 MiB.
	MaxBlobBytes int64 `json:"maxBlobBytes,omitempty"`
	// MaxFiles bounds the files and folders of a commit. Default 20,000.
	MaxFiles int `json:"maxFiles,omitempty"`
}

// FetchLimits checks the section; errors name the key.
func (l GitLimits) FetchLimits(key string) (gitsync.FetchLimits, error) {
	var errs []error
	for name, v := range map[string]int64{gitsync.LimitMaxPackBytes: l.MaxPackBytes,
		gitsync.LimitMaxBlobBytes: l.MaxBlobBytes, gitsync.LimitMaxFiles: int64(l.MaxFiles)} {
		if v < 0 {
			errs = append(errs, fmt.Errorf("%s.%s: %d: must not be negative (unset or 0 takes the default)", key, name, v))
		}
	}
	return gitsync.FetchLimits{MaxPackBytes: l.MaxPackBytes, MaxBlobBytes: l.MaxBlobBytes, MaxFiles: l.MaxFiles},
		errors.Join(errs...)
}

// Source turns the git section into a gitsync.Source, reading every
// credential it references.
func (g Git) Source() (gitsync.Source, error) {
	src := gitsync.Source{
		URL: g.URL, Branch: g.Branch, Tag: g.Tag, Commit: g.Commit, Path: g.Path,
		Interval: g.Interval.Duration, Timeout: g.Timeout.Duration,
	}
	a := g.Auth
	var errs []error
	limits, err := g.Limits.FetchLimits("git.limits")
	if err != nil {
		errs = append(errs, err)
	}
	src.FetchLimits = limits
	read := func(key string, v *ValueFrom) string {
		s, err := v.Read(key)
		if err != nil {
			errs = append(errs, err)
		}
		return s
	}
	file := func(key, path string) []byte {
		if path == "" {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
		}
		return b
	}
	src.Auth = gitsync.Auth{
		Username:              a.Username,
		Password:              read("git.auth.password", a.Password),
		Token:                 read("git.auth.token", a.Token),
		BearerToken:           read("git.auth.bearerToken", a.BearerToken),
		CABundle:              file("git.auth.caBundleFile", a.CABundleFile),
		InsecureSkipTLSVerify: a.InsecureSkipTLSVerify,
		SSHKey:                file("git.auth.sshKeyFile", a.SSHKeyFile),
		SSHKeyPassphrase:      read("git.auth.sshKeyPassphrase", a.SSHKeyPassphrase),
		SSHUser:               a.SSHUser,
		KnownHosts:            file("git.auth.knownHostsFile", a.KnownHostsFile),
		InsecureIgnoreHostKey: a.InsecureIgnoreHostKey,
	}
	return src, errors.Join(errs...)
}
