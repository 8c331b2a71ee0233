package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/sluicehq/sluice/kube/clusterapi"
	"github.com/sluicehq/sluice/rolloutapi"
)

// Exit codes of the verbs that talk to a server, beyond exitOK, exitFailure
// (a refused command, a rollout that ended Degraded) and exitUsage.
const (
	exitNotFound    = 3 // the named rollout does not exist
	exitUnavailable = 4 // the server could not be reached, or refused the credentials
)

const defaultServer = "http://127.0.0.1:8080"

// targetHelp is the rule target.backend follows, for every verb's --help.
const targetHelp = `

Which Sluice: --server names a 'sluice run' server; --kubeconfig or
--context a Kubernetes cluster, where sluice reads Rollouts and their Events
and sends commands as the sluice.dev/command annotation with your own
credentials ('sluice controller' applies them and records who you are).
Without these flags: $SLUICE_SERVER if set, else the cluster of $KUBECONFIG
or ~/.kube/config, or the pod's own cluster when run in one, else
` + defaultServer + `. Against a cluster, -n defaults to the kubeconfig
context's namespace.`

// target holds the flags that say which Sluice to talk to.
type target struct {
	server     string
	token      string
	namespace  string
	kubeconfig string
	context    string
	// allNamespaces makes List look in every namespace of a cluster; only
	// status offers it (-A), since a server always lists everything.
	allNamespaces bool
	cmd           *cobra.Command
}

func (t *target) addFlags(cmd *cobra.Command) {
	t.cmd = cmd
	if cmd.Long == "" {
		cmd.Long = cmd.Short + "."
	}
	cmd.Long += targetHelp
	cmd.Flags().StringVar(&t.server, "server", defaultServer, "address of a `sluice run` server (env SLUICE_SERVER)")
	cmd.Flags().StringVar(&t.token, "token", os.Getenv("SLUICE_TOKEN"), "bearer token for a server's commands (env SLUICE_TOKEN)")
	cmd.Flags().StringVarP(&t.namespace, "namespace", "n", "default", "namespace of the rollout (against a cluster, default: the kubeconfig context's)")
	cmd.Flags().StringVar(&t.kubeconfig, "kubeconfig", "", "kubeconfig file of the cluster to talk to (env KUBECONFIG)")
	cmd.Flags().StringVar(&t.context, "context", "", "kubeconfig context of the cluster to talk to")
}

// backend returns the Backend the flags and the environment select (see
// targetHelp). Against a cluster it also settles the namespace, so call it
// before reading t.namespace.
func (t *target) backend() (rolloutapi.Backend, error) {
	cluster, err := t.useCluster(os.Getenv, fileExists)
	if err != nil {
		return nil, err
	}
	if !cluster {
		server := t.server
		if s := os.Getenv("SLUICE_SERVER"); s != "" && !t.cmd.Flags().Changed("server") {
			server = s
		}
		return &rolloutapi.Client{BaseURL: server, Token: t.token}, nil
	}
	kc, err := clusterapi.LoadKubeconfig(t.kubeconfig, t.context)
	if err != nil {
		return nil, exitError{code: exitUsage, msg: err.Error()}
	}
	if !t.cmd.Flags().Changed("namespace") {
		t.namespace = kc.Namespace
	}
	o := clusterapi.Options{ListNamespace: t.namespace, User: kc.User, Warnings: t.cmd.ErrOrStderr()}
	if t.allNamespaces {
		o.ListNamespace = ""
	}
	b, err := clusterapi.New(kc.Config, o)
	if err != nil {
		return nil, exitError{code: exitUsage, msg: err.Error()}
	}
	return b, nil
}

// inClusterToken is where a pod's service account token is mounted.
const inClusterToken = "/var/run/secrets/kubernetes.io/serviceaccount/token"

// useCluster applies the rule of targetHelp: a flag beats an environment
// variable, which beats a file found in its usual place. getenv and exists
// are the environment, passed in for tests.
func (t *target) useCluster(getenv func(string) string, exists func(string) bool) (bool, error) {
	serverFlag := t.cmd.Flags().Changed("server")
	clusterFlag := t.cmd.Flags().Changed("kubeconfig") || t.cmd.Flags().Changed("context")
	switch {
	case serverFlag && clusterFlag:
		return false, usageError{errors.New("--server names a sluice run server, --kubeconfig and --context a cluster: give one or the other")}
	case serverFlag:
		return false, nil
	case clusterFlag:
		return true, t.noToken()
	case getenv("SLUICE_SERVER") != "":
		return false, nil
	}
	cluster := getenv("KUBECONFIG") != "" || exists(clientcmd.RecommendedHomeFile) ||
		(getenv("KUBERNETES_SERVICE_HOST") != "" && getenv("KUBERNETES_SERVICE_PORT") != "" && exists(inClusterToken))
	if cluster {
		return true, t.noToken()
	}
	return false, nil
}

// noToken refuses --token against a cluster, where the kubeconfig holds
// the credentials: a token given on the command line and silently ignored
// would send the command under someone else's name.
func (t *target) noToken() error {
	if t.cmd.Flags().Changed("token") {
		return usageError{fmt.Errorf("--token is for a sluice run server (--server); against a cluster the kubeconfig's credentials are used")}
	}
	return nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// backendError turns a Backend error into the exit code scripts rely on.
func backendError(err error) error {
	switch {
	case errors.Is(err, rolloutapi.ErrNotFound):
		return exitError{code: exitNotFound, msg: err.Error()}
	case errors.Is(err, rolloutapi.ErrUnavailable), errors.Is(err, rolloutapi.ErrUnauthorized), errors.Is(err, rolloutapi.ErrForbidden):
		return exitError{code: exitUnavailable, msg: err.Error()}
	case errors.Is(err, rolloutapi.ErrBadRequest):
		return exitError{code: exitUsage, msg: err.Error()}
	}
	return exitError{code: exitFailure, msg: err.Error()}
}

func checkOutput(o string) error {
	if o != "text" && o != "json" {
		return usageError{fmt.Errorf("--output must be text or json, not %q", o)}
	}
	return nil
}
