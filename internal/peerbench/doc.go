// Package peerbench measures Sluice side by side with its peers, Argo
// Rollouts and istiod, on the same machine, in the same run and against the
// same kube-apiserver (issue 17; figures in docs/performance.md, "Peers").
//
// Every product runs as a process of its own, built from source (the peers
// by `make peers` from tools/argo-rollouts and tools/istiod, Sluice by the
// benchmark from this tree), and is measured from the outside in the same
// way: CPU time and peak RSS from /proc, Kubernetes API requests at a
// counting proxy between the process and the API server, reconcile latency
// from what the product itself exposes. The harness around them (the
// ReplicaSet controller and kubelet stand-in, the clients) is the same code
// for both sides of a comparison.
//
// The benchmarks are in bench_test.go; `make bench-peers` runs them all.
// This package's non-test code holds the measuring parts, with unit tests
// that need no binaries.
package peerbench
