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
	once sync.Once
	path string
	err  error
}

// BuildSluice builds bin/sluice from this tree (whatever it holds,
// committed or not) into a temporary folder once per process, so that the
// benchmark measures the code beside it.
func BuildSluice(ctx context.Context) (string, error) {
	sluiceBuild.once.Do(func() {
		root, err := testbin.ModuleRoot()
		if err != nil {
			sluiceBuild.err = err
			return
		}
		dir, err := os.MkdirTemp("", "peerbench-sluice-")
		if err != nil {
			sluiceBuild.err = err
			return
		}
		path := filepath.Join(dir, "sluice")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", path, "./cmd/sluice")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			sluiceBuild.err = fmt.Errorf("go build ./cmd/sluice: %v\n%s", err, out)
			return
		}
		sluiceBuild.path = path
	})
	return sluiceBuild.path, sluiceBuild.err
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
