// Package testbin finds the real binaries that `make tools` builds into
// bin/ (kube-apiserver, etcd, prometheus, controller-gen) for the tests that
// start them, and holds the project's one rule about them: a test whose
// binary is missing skips on a developer's machine but fails under CI=true,
// so CI can never pass by skipping.
package testbin

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// Dir is where the binaries are: $KUBEBUILDER_ASSETS, else $SLUICE_BIN_DIR
// (`make test` sets both), else bin/ at the module root.
func Dir(t testing.TB) string {
	t.Helper()
	for _, e := range []string{"KUBEBUILDER_ASSETS", "SLUICE_BIN_DIR"} {
		if d := os.Getenv(e); d != "" {
			return d
		}
	}
	root, err := ModuleRoot()
	if err != nil {
		t.Fatalf("testbin: %v", err)
	}
	return filepath.Join(root, "bin")
}

// Require returns Dir after checking every named binary is in it; a missing
// one skips the test, or fails it under CI=true.
func Require(t testing.TB, names ...string) string {
	t.Helper()
	dir := Dir(t)
	for _, name := range names {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err != nil {
			SkipOrFail(t, fmt.Sprintf("%s is missing: run `make tools` (or `make test`), or point SLUICE_BIN_DIR/KUBEBUILDER_ASSETS at the binaries", p))
		}
	}
	return dir
}

// Path is the path of one required binary.
func Path(t testing.TB, name string) string {
	t.Helper()
	return filepath.Join(Require(t, name), name)
}

// SkipOrFail skips the test with msg, or fails it under CI=true.
func SkipOrFail(t testing.TB, msg string) {
	t.Helper()
	if InCI() {
		t.Fatal(msg + " (CI=true: not skipping)")
	}
	t.Skip(msg)
}

// InCI reports whether the CI environment variable says so.
func InCI() bool {
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	return ci
}

// ModuleRoot walks up from the working directory (a test's package
// directory) to the folder holding go.mod, so that a test finds the
// project's files (bin/, crds/) wherever its package sits.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}
