package manager_test

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/kube/manager"
)

// startSingle starts one controller replica without leader election,
// with ctrlCfg's identity (the controller's service account), for the
// Rollouts of ns: no HTTP listeners, xDS in plaintext on a free port,
// unacknowledged plans looked at every 200ms, logs under name. more is
// YAML added to its configuration. It stops when the test ends.
func startSingle(t *testing.T, ctrlCfg *rest.Config, ns, name, more string) *manager.Controller {
	t.Helper()
	c, _ := startSingleStop(t, ctrlCfg, ns, name, more)
	return c
}

// startSingleStop is startSingle for a test that stops the controller
// itself (a restart); stop returns once it has stopped.
func startSingleStop(t *testing.T, ctrlCfg *rest.Config, ns, name, more string) (*manager.Controller, func()) {
	t.Helper()
	cfg, err := manager.ParseConfig(fmt.Appendf(nil, `namespace: %s
stateDir: %s
watchNamespaces: [%s]
leaderElection: {enabled: false}
http: {metricsAddress: "0", probeAddress: "0", webhookAddress: "0"}
reconcile: {ackPollInterval: 200ms}
xds:
  address: 127.0.0.1:0
  insecurePlaintext: true
  replicaName: %s
%s`, controllerNamespace, t.TempDir(), ns, name, more))
	if err != nil {
		t.Fatal(err)
	}
	c, err := manager.New(manager.Options{
		Config: cfg, RestConfig: ctrlCfg, Log: logger(name),
		Registerer: prometheus.NewRegistry(), SkipNameValidation: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c, kubetest.Start(t, "controller", c)
}
