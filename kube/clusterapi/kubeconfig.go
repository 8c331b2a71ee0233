package clusterapi

import (
	"fmt"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Kubeconfig is what the CLI takes from the user's kubeconfig.
type Kubeconfig struct {
	Config *rest.Config
	// Namespace is the context's namespace: "default" when it names none,
	// the pod's own namespace in a cluster.
	Namespace string
	// User is the name of the context's user entry, for Options.User;
	// empty in a cluster.
	User string
}

// LoadKubeconfig reads the kubeconfig as kubectl does: path if given, else
// the files $KUBECONFIG lists (merged), else ~/.kube/config, else the pod's
// service account when running in a cluster. A non-empty context replaces
// the current context.
func LoadKubeconfig(path, context string) (Kubeconfig, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = path
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: context})
	cfg, err := cc.ClientConfig()
	if err != nil {
		return Kubeconfig{}, fmt.Errorf("kubeconfig: %w", err)
	}
	ns, _, err := cc.Namespace()
	if err != nil {
		return Kubeconfig{}, fmt.Errorf("kubeconfig namespace: %w", err)
	}
	kc := Kubeconfig{Config: cfg, Namespace: ns}
	// The raw config is already loaded; in a cluster it is empty and the
	// service account has no user entry to name.
	if raw, err := cc.RawConfig(); err == nil {
		name := context
		if name == "" {
			name = raw.CurrentContext
		}
		if c, ok := raw.Contexts[name]; ok {
			kc.User = c.AuthInfo
		}
	}
	return kc, nil
}
