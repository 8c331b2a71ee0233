// Package deploy holds what installs and watches Sluice outside the
// repository's own install manifests (crds/): the Helm chart in
// helm/sluice and the Grafana dashboard in grafana/. It has no code; its
// tests keep both honest:
//
//   - chart_test.go lints and renders the chart with `helm` (bin/helm, built
//     by `make tools`), applies what it renders to a real API server with a
//     server-side dry run, and checks it against crds/: the same CRDs, the
//     same RBAC rules, the same controller configuration, probes, ports,
//     PodDisruptionBudget and NetworkPolicy.
//   - dashboard_test.go parses every PromQL expression of the dashboard
//     with Prometheus' parser and checks the metrics and labels it names
//     against what a running `sluice run` exports after a real rollout.
//
// The chart reads the CRDs, the controller's RBAC rules and the dashboard
// from copies under helm/sluice/files/ that `make generate` refreshes; the
// tests fail when a copy is stale.
package deploy
