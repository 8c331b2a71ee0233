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
// The benchmarks are BenchmarkControllerSameWork (bench_test.go, against
// Argo Rollouts), BenchmarkXDSSameClients (bench_xds_test.go, against
// istiod), and BenchmarkPushToTraffic and BenchmarkSLOBreach
// (bench_traffic_test.go: `sluice run` and `sluice controller` against
// Argo Rollouts + istiod, with proxyless gRPC clients and Prometheus);
// `make bench-peers` runs them all. Sizes and settings come from the
// environment:
//
//	PEERBENCH_ROLLOUTS   Rollouts in the controller benchmark (1000)
//	PEERBENCH_QPS        "none": both controllers without a client-side rate limit
//	PEERBENCH_CLIENTS    ADS clients, a list (100,1000,5000)
//	PEERBENCH_SERVICES   services served to them, a list (4)
//	PEERBENCH_CHANGES    weight changes per xDS run (10)
//	PEERBENCH_GRPC_CLIENTS       proxyless gRPC clients in the traffic benchmarks (10)
//	PEERBENCH_GRPC_RATE          calls a second of each (100)
//	PEERBENCH_ANALYSIS_INTERVAL  the SLO breach analysis's interval (2s)
//	PEERBENCH_SCRAPE_INTERVAL    Prometheus's scrape interval in the traffic benchmarks (1s)
//	PEERBENCH_RATE_WINDOW        the SLO breach query's rate window (5s)
//	PEERBENCH_TRAFFIC_SIDES      a list of sluice-run, sluice-controller, argo-istiod (all)
//	PEERBENCH_PPROF      Sluice controller's pprof address, e.g. 127.0.0.1:6060 (none)
//	PEERBENCH_SLUICE     "tree": build Sluice from the working tree, not HEAD
//	PEERBENCH_LOGDIR     where each product's output is kept (/tmp/peerbench)
//
// This package's non-test code holds the measuring parts, with unit tests
// that need no binaries.
package peerbench
