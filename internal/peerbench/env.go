package peerbench

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/internal/testbin"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// NewEnv is the one envtest control plane of a benchmark run, with the
// CRDs of every product installed: Sluice's, Argo Rollouts' (from the
// argo-rollouts module that tools/argo-rollouts pins) and Istio's.
func NewEnv() *kubetest.Env {
	return &kubetest.Env{
		Scheme: []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1alpha1.AddToScheme},
		CRDs: func() ([]string, error) {
			files, err := kubetest.SluiceCRDs()
			if err != nil {
				return nil, err
			}
			istio, err := kubetest.IstioCRDs()
			if err != nil {
				return nil, err
			}
			argo, err := ArgoCRDs()
			if err != nil {
				return nil, err
			}
			return append(append(files, istio), argo...), nil
		},
	}
}

// ArgoCRDs lists the CRD manifests of the Argo Rollouts release that
// tools/argo-rollouts pins (manifests/crds in its module).
func ArgoCRDs() ([]string, error) {
	dir, err := ToolModuleDir("argo-rollouts", "github.com/argoproj/argo-rollouts")
	if err != nil {
		return nil, err
	}
	files, err := filepath.Glob(filepath.Join(dir, "manifests", "crds", "*-crd.yaml"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("argo rollouts CRDs: none in %s/manifests/crds (err %v)", dir, err)
	}
	return files, nil
}

// ToolModuleDir is where the module cache holds module at the version
// the tools module tools/<tool> pins.
func ToolModuleDir(tool, module string) (string, error) {
	root, err := testbin.ModuleRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "list", "-m", "-json", module)
	cmd.Dir = filepath.Join(root, "tools", tool)
	cmd.Env = append(os.Environ(), "GOWORK=off")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("locating %s in tools/%s: %w", module, tool, err)
	}
	var mod struct{ Dir, Version string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		return "", fmt.Errorf("%s is not in the module cache (cd tools/%s && go mod download): %v", module, tool, err)
	}
	return mod.Dir, nil
}

// ToolModuleVersion is the version of module that tools/<tool> pins.
func ToolModuleVersion(tool, module string) string {
	root, err := testbin.ModuleRoot()
	if err != nil {
		return "?"
	}
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Version}}", module)
	cmd.Dir = filepath.Join(root, "tools", tool)
	cmd.Env = append(os.Environ(), "GOWORK=off")
	out, err := cmd.Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

var sluiceBuild struct {
	once    sync.Once
	path    string
	version string
	err     error
}

// BuildSluice builds cmd/sluice once per process, from the commit HEAD
// names (exported with git archive, so that other work in progress in the
// checkout is not measured), or from the working tree as it is when
// PEERBENCH_SLUICE=tree. It returns the binary and what it was built from.
func BuildSluice(ctx context.Context) (path, version string, err error) {
	sluiceBuild.once.Do(func() {
		sluiceBuild.path, sluiceBuild.version, sluiceBuild.err = buildSluice(ctx, "./cmd/sluice", "sluice")
	})
	return sluiceBuild.path, sluiceBuild.version, sluiceBuild.err
}

// buildSluice builds pkg of this module into a new temporary folder as
// name, from HEAD or (PEERBENCH_SLUICE=tree) the working tree.
func buildSluice(ctx context.Context, pkg, name string) (path, version string, err error) {
	root, err := testbin.ModuleRoot()
	if err != nil {
		return "", "", err
	}
	dir, err := os.MkdirTemp("", "peerbench-"+name+"-")
	if err != nil {
		return "", "", err
	}
	src := root
	rev, err := execIn(root, "git", "rev-parse", "--short", "HEAD")
	if err != nil {
		return "", "", fmt.Errorf("git rev-parse: %w", err)
	}
	version = strings.TrimSpace(rev)
	if os.Getenv("PEERBENCH_SLUICE") == "tree" {
		version += " + working tree"
	} else {
		src = filepath.Join(dir, "src")
		if err := os.Mkdir(src, 0o755); err != nil {
			return "", "", err
		}
		export := exec.CommandContext(ctx, "sh", "-c", `git archive HEAD | tar -x -C "$1"`, "sh", src)
		export.Dir = root
		if out, err := export.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("git archive HEAD: %v\n%s", err, out)
		}
	}
	path = filepath.Join(dir, name)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", path, pkg)
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
	}
	return path, version, nil
}

// FreePort is a loopback port nothing listens on right now.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
