package manager

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/go-logr/logr"
)

// DefaultStateDir is stateDir's default: in a cluster, the Deployment's
// volume (crds/controller/deployment.yaml).
const DefaultStateDir = "/var/lib/sluice"

// stateDir makes the state folder exist and checks that this process can
// write in it, before anything runs: a Git mirror that cannot be created
// would only fail later, in the middle of a sync. The default falls back
// to the user's cache folder when it cannot be written (the controller
// run outside a cluster, as a user): what it holds, Git mirrors, is a
// cache that is fetched again when lost. A folder that was asked for by
// name is an error that says how to choose another.
func stateDir(dir string, log logr.Logger) (string, error) {
	err := writable(dir)
	if err == nil {
		return dir, nil
	}
	if dir != DefaultStateDir {
		return "", fmt.Errorf("stateDir %s: %w: choose a folder this user can write with --state-dir or stateDir in the configuration file", dir, err)
	}
	cache, cerr := os.UserCacheDir()
	if cerr != nil {
		return "", fmt.Errorf("stateDir %s: %w, and there is no user cache folder to use instead (%v): choose a folder with --state-dir or stateDir in the configuration file", dir, err, cerr)
	}
	alt := filepath.Join(cache, "sluice", "controller")
	if aerr := writable(alt); aerr != nil {
		return "", fmt.Errorf("stateDir %s: %w, nor %s: %v: choose a folder with --state-dir or stateDir in the configuration file", dir, err, alt, aerr)
	}
	log.Info("the default state folder cannot be written; keeping the Git mirrors in the user's cache folder instead (choose another with --state-dir)",
		"default", dir, "reason", err.Error(), "stateDir", alt)
	return alt, nil
}

// writable creates dir if need be and writes a file in it.
func writable(dir string) error {
	if dir == "" {
		return errors.New("empty path")
	}
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
