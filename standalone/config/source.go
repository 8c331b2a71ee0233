package config

import (
	"errors"
	"fmt"
	"os"

	"github.com/sluicehq/sluice/gitsync"
)

// Source turns the git section into a gitsync.Source, reading every
// credential it references.
func (g Git) Source() (gitsync.Source, error) {
	src := gitsync.Source{
		URL: g.URL, Branch: g.Branch, Tag: g.Tag, Commit: g.Commit, Path: g.Path,
		Interval: g.Interval.Duration, Timeout: g.Timeout.Duration,
	}
	a := g.Auth
	var errs []error
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
