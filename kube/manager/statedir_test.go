package manager

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-logr/logr"
)

// Outside a cluster the Git mirrors go to the user's cache folder; a
// folder asked for by name must be writable, and the error says how to
// choose another.
func TestStateDir(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	got, err := stateDir("", logr.Discard())
	if want := filepath.Join(cache, "sluice", "controller"); err != nil || got != want {
		t.Errorf("default outside a cluster: %q, %v; want %s", got, err, want)
	}
	if fi, err := os.Stat(got); err != nil || !fi.IsDir() {
		t.Errorf("the default was not created: %v", err)
	}

	mine := filepath.Join(t.TempDir(), "state")
	if got, err := stateDir(mine, logr.Discard()); err != nil || got != mine {
		t.Errorf("named folder: %q, %v; want %s", got, err, mine)
	}

	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = stateDir(filepath.Join(file, "state"), logr.Discard())
	if err == nil || !strings.Contains(err.Error(), "--state-dir") || !strings.Contains(err.Error(), "stateDir "+file) {
		t.Errorf("unwritable named folder: %v; want an error naming it and --state-dir", err)
	}
}
