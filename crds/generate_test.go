package crds_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/sluicehq/sluice/internal/testbin"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// The generators and their arguments, as `make generate` runs them (keep in
// line with the Makefile). Paths are relative to the repository root.
const (
	apiPkg       = "./rollout/v1alpha1"
	deepcopyFile = "rollout/v1alpha1/zz_generated.deepcopy.go"
	trimPkg      = "./crds/internal/trim"
	bundlePkg    = "./crds/internal/bundle"
	rbacPkg      = "./kube/manager"
	rbacRole     = "sluice-controller"
	crdGlob      = "sluice.dev_*.yaml"
)

// run runs a command in dir and fails the test with its output on error.
func run(t *testing.T, dir, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// TestGeneratedFilesUpToDate regenerates the deepcopy code and the trimmed
// CRDs into a temporary directory and compares them with the committed files.
func TestGeneratedFilesUpToDate(t *testing.T) {
	dir := testbin.Require(t, "controller-gen")
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go command not found in PATH: %v", err)
	}

	tmp := t.TempDir()
	objDir := filepath.Join(tmp, "object")
	crdDir := filepath.Join(tmp, "crds")
	run(t, "..", filepath.Join(dir, "controller-gen"),
		"object", "crd:generateEmbeddedObjectMeta=true", "paths="+apiPkg,
		"output:object:dir="+objDir, "output:crd:dir="+crdDir)
	generated, err := filepath.Glob(filepath.Join(crdDir, crdGlob))
	if err != nil || len(generated) == 0 {
		t.Fatalf("controller-gen wrote no CRDs into %s (err %v)", crdDir, err)
	}
	run(t, "..", goBin, append([]string{"run", trimPkg}, generated...)...)

	committed, err := filepath.Glob(crdGlob)
	if err != nil {
		t.Fatal(err)
	}
	names := func(paths []string) []string {
		var out []string
		for _, p := range paths {
			out = append(out, filepath.Base(p))
		}
		slices.Sort(out)
		return out
	}
	if got, want := names(committed), names(generated); !slices.Equal(got, want) {
		t.Errorf("crds/ holds %v, generation gives %v: run `make generate`", got, want)
	}
	for _, p := range generated {
		name := filepath.Base(p)
		if slices.Contains(names(committed), name) {
			compareFiles(t, filepath.Join("crds", name), name, p)
		}
	}
	compareFiles(t, deepcopyFile, filepath.Join("..", deepcopyFile), filepath.Join(objDir, "zz_generated.deepcopy.go"))

	rbacDir := filepath.Join(tmp, "rbac")
	run(t, "..", filepath.Join(dir, "controller-gen"),
		"rbac:roleName="+rbacRole, "paths="+rbacPkg, "output:rbac:dir="+rbacDir)
	compareFiles(t, "crds/rbac/role.yaml", filepath.Join("rbac", "role.yaml"), filepath.Join(rbacDir, "role.yaml"))

	// The bundle is made from the committed files, so it is compared after
	// them: a stale CRD is reported as such, not as a stale bundle.
	bundle := filepath.Join(tmp, "install.yaml")
	run(t, "..", goBin, "run", bundlePkg, "crds/kustomization.yaml", bundle)
	compareFiles(t, "crds/install.yaml", "install.yaml", bundle)
}

// compareFiles fails when the committed file differs from the generated one,
// showing where.
func compareFiles(t *testing.T, label, committedPath, generatedPath string) {
	t.Helper()
	want, err := os.ReadFile(generatedPath)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(committedPath)
	if err != nil {
		t.Errorf("%s: %v: run `make generate`", label, err)
		return
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is stale: run `make generate`\n%s", label, firstDifference(got, want))
	}
}

// firstDifference describes the first differing line of two texts, with a
// little context: enough to see what changed without a diff tool.
func firstDifference(committed, generated []byte) string {
	a := strings.Split(string(committed), "\n")
	b := strings.Split(string(generated), "\n")
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "first difference at line %d (committed %d lines, generated %d lines):\n", i+1, len(a), len(b))
	for j := max(0, i-3); j < i; j++ {
		fmt.Fprintf(&sb, "  %s\n", a[j])
	}
	for j := i; j < min(len(a), i+4); j++ {
		fmt.Fprintf(&sb, "- %s\n", a[j])
	}
	for j := i; j < min(len(b), i+4); j++ {
		fmt.Fprintf(&sb, "+ %s\n", b[j])
	}
	return sb.String()
}

// lastAppliedLimit is the 262144-byte limit on all annotations of an object
// together, which kubectl's client-side apply fills with the whole object.
const lastAppliedLimit = 256 * 1024

// TestCRDsFitClientSideApply checks that each committed CRD, as kubectl
// stores it in the last-applied-configuration annotation (compact JSON),
// stays within the trim budget (200 KiB) and so well under the limit.
func TestCRDsFitClientSideApply(t *testing.T) {
	files, err := filepath.Glob(crdGlob)
	if err != nil || len(files) == 0 {
		t.Fatalf("no %s in crds/ (err %v)", crdGlob, err)
	}
	for _, f := range files {
		doc, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		var compact bytes.Buffer
		if err := json.Compact(&compact, j); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		t.Logf("%s: %d bytes of YAML, %d bytes of JSON", f, len(doc), compact.Len())
		if compact.Len() > 200*1024 {
			t.Errorf("%s is %d bytes as JSON, over the 200 KiB budget (hard limit %d): trim it further (crds/internal/trim)", f, compact.Len(), lastAppliedLimit)
		}
	}
}
