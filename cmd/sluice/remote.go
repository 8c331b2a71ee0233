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
` + defaultServer + `. As kubectl's plugin (kubectl sluice) it is always
kubectl's cluster unless --server is given. -n defaults to the kubeconfig
context's namespace against a cluster, to "default" against a server.`

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
	fl := cmd.Flags()
	fl.StringVar(&t.server, "server", defaultServer, "address of a 'sluice run' server (env SLUICE_SERVER)")
	// The token's default is not the environment's value: help would
	// print the secret.
	fl.StringVar(&t.token, "token", "", "bearer token for a server's commands (env SLUICE_TOKEN)")
	fl.StringVarP(&t.namespace, "namespace", "n", "", `namespace of the rollout (default: the kubeconfig context's against a cluster, "default" against a server)`)
	fl.StringVar(&t.kubeconfig, "kubeconfig", "", "kubeconfig file of the cluster to talk to (env KUBECONFIG)")
	fl.StringVar(&t.context, "context", "", "kubeconfig context of the cluster to talk to")
	t.addCompletion(cmd)
}

// settleServer fills in what the flags leave to the environment when the
// target is a server: the address and the token, and the namespace.
func (t *target) settleServer() {
	if s := os.Getenv("SLUICE_SERVER"); s != "" && !t.cmd.Flags().Changed("server") {
		t.server = s
	}
	if !t.cmd.Flags().Changed("token") {
		t.token = os.Getenv("SLUICE_TOKEN")
	}
	if t.namespace == "" {
		t.namespace = "default"
	}
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
		t.settleServer()
		return &rolloutapi.Client{BaseURL: t.server, Token: t.token}, nil
	}
	kc, err := clusterapi.LoadKubeconfig(t.kubeconfig, t.context)
	if err != nil {
		return nil, exitError{code: exitUsage, msg: err.Error()}
	}
	if t.namespace == "" {
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
	case clusterFlag, isKubectlPlugin(t.cmd):
		// kubectl's plugin works on kubectl's cluster, whatever the
		// environment says about servers.
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
