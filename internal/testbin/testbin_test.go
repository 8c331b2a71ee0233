package testbin

import (
	"os"
	"path/filepath"
	"testing"
)

func TestDir(t *testing.T) {
	t.Setenv("KUBEBUILDER_ASSETS", "")
	t.Setenv("SLUICE_BIN_DIR", "")
	got := Dir(t)
	if filepath.Base(got) != "bin" {
		t.Fatalf("Dir = %s, want the module's bin/", got)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(got), "go.mod")); err != nil {
		t.Fatalf("Dir = %s is not next to go.mod: %v", got, err)
	}
	t.Setenv("SLUICE_BIN_DIR", "/opt/sluice-bin")
	if got := Dir(t); got != "/opt/sluice-bin" {
		t.Fatalf("Dir with SLUICE_BIN_DIR = %s", got)
	}
	t.Setenv("KUBEBUILDER_ASSETS", "/opt/assets")
	if got := Dir(t); got != "/opt/assets" {
		t.Fatalf("KUBEBUILDER_ASSETS must win: %s", got)
	}
}

func TestInCI(t *testing.T) {
	for v, want := range map[string]bool{"true": true, "1": true, "false": false, "": false, "yes": false} {
		t.Setenv("CI", v)
		if got := InCI(); got != want {
			t.Errorf("CI=%q: InCI() = %v, want %v", v, got, want)
		}
	}
}
