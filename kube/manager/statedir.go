package manager

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/go-logr/logr"
)

// DefaultStateDir is stateDir's default in a pod: the Deployment's volume
// (crds/controller/deployment.yaml).
const DefaultStateDir = "/var/lib/sluice"

// stateDir chooses the state folder, makes it exist and checks that this
// process can write in it, before anything runs: a Git mirror that cannot
// be created would only fail later, in the middle of a sync.
//
// Without one configured, it is DefaultStateDir in a pod and the user's
// cache folder outside a cluster ($XDG_CACHE_HOME or ~/.cache, then
// sluice/controller): what it holds, Git mirrors, is a cache, fetched
// again when lost. DefaultStateDir falls back to the cache folder too
// when it cannot be written. A folder that was asked for by name is an
// error that says how to choose another.
func stateDir(dir string, log logr.Logger) (string, error) {
	if dir != "" {
		if err := writable(dir); err != nil {
			return "", fmt.Errorf("stateDir %s: %w: choose a folder this user can write with --state-dir or stateDir in the configuration file", dir, err)
		}
		return dir, nil
	}
	var tried []string
	if inPod() {
		err := writable(DefaultStateDir)
		if err == nil {
			return DefaultStateDir, nil
		}
		tried = append(tried, fmt.Sprintf("%s: %v", DefaultStateDir, err))
	}
	cache, err := os.UserCacheDir()
	if err == nil {
		alt := filepath.Join(cache, "sluice", "controller")
		if err = writable(alt); err == nil {
			if len(tried) > 0 {
				log.Info("the default state folder cannot be written; keeping the Git mirrors in the user's cache folder instead (choose another with --state-dir)",
					"tried", tried, "stateDir", alt)
			}
			return alt, nil
		}
		err = fmt.Errorf("%s: %w", alt, err)
	}
	tried = append(tried, err.Error())
	return "", fmt.Errorf("stateDir: no writable folder for the Git mirrors (%v): choose one with --state-dir or stateDir in the configuration file", tried)
}

// inPod reports whether the process runs in a Kubernetes pod, which the
// kubelet tells every container through the environment.
func inPod() bool { return os.Getenv("KUBERNETES_SERVICE_HOST") != "" }

// writable creates dir if need be and writes a file in it.
func writable(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".write-check-*")
	if err != nil {
		return err
	}
	name := f.Name()
	return errors.Join(f.Close(), os.Remove(name))
}
