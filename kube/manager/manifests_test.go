package manager_test

import (
	"fmt"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/manifest"
)

// The repository the test's controllers apply: one Rollout of the echo
// service (controller mode: a pod template, two replicas), the analysis
// gating its steps, and the Istio objects it names. Paths are relative to
// the repository's root; the controllers read the deploy/ folder. The
// manifests name no namespace: the controllers' defaultNamespace, the
// test's own, holds them.
const (
	deployPath   = "deploy"
	rolloutFile  = deployPath + "/rollout.yaml"
	analysisFile = deployPath + "/analysis.yaml"
	istioFile    = deployPath + "/istio.yaml"

	rolloutName = "echo"
	// imageRepo:tag is each revision's image; the tag names the backend
	// (grpcecho.Backend.Version) that the test's kubelet runs for it.
	imageRepo = "registry.example.com/shop/echo"
)

// manifests writes the repository's files for one namespace.
type manifests struct {
	// host is the Rollout's one host, the VirtualService's, and the xDS
	// target the client dials: echo.<namespace>.svc.cluster.local. No two
	// Rollouts may route one host, so each run of the test has its own.
	host string
}

func manifestsFor(namespace string) manifests {
	return manifests{host: rolloutName + "." + namespace + ".svc.cluster.local"}
}

// rollout is the Rollout running imageRepo:tag. Canary 10% → analysis →
// 50% → analysis → promotion; the old ReplicaSet is kept 2 s after
// promotion; an analysis failure aborts and reverts Git.
func (m manifests) rollout(tag string) string {
	return fmt.Sprintf(`apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata:
  name: %[1]s
spec:
  service:
    name: %[1]s
    hosts:
      - %[2]s
    port: 50051
    virtualService:
      name: %[1]s
      routes:
        - primary
    destinationRule:
      name: %[1]s
  replicas: 2
  template:
    metadata:
      labels:
        app: %[1]s
    spec:
      containers:
        - name: echo
          image: %[3]s:%[4]s
          # No protocol: the CRD defaults it to TCP, which the revision
          # (a hash of the template as the API server stores it) includes.
          ports:
            - name: grpc
              containerPort: 50051
  strategy:
    canary:
      steps:
        - setWeight: 10
        - analysis:
            templates:
              - name: echo-success-rate
        - setWeight: 50
        - analysis:
            templates:
              - name: echo-success-rate
  scaleDownDelaySeconds: 2
  rollback:
    onAnalysisFailure: Abort
    gitRevert: true
`, rolloutName, m.host, imageRepo, tag)
}

// Analysis timings: each run measures measurements times, interval apart,
// after initialDelay (for the canary's first calls to reach Prometheus,
// which scrapes every second, and a rate window of 5 s to fill).
const (
	measurements = 4
	interval     = "1s"
	initialDelay = "2s"
)

// analysisYAML is the success ratio of the canary revision's calls, from
// the backends' counters scraped by the real Prometheus. The backends
// label their counter with the revision (a hash of the pod template), as
// a pod reading its own sluice.dev/revision label through the downward
// API would.
var analysisYAML = fmt.Sprintf(`apiVersion: sluice.dev/v1alpha1
kind: AnalysisTemplate
metadata:
  name: echo-success-rate
spec:
  args:
    - name: window
      value: 5s
  metrics:
    - name: success-rate
      interval: %[1]s
      count: %[2]d
      initialDelay: %[3]s
      successCondition: result[0] >= 0.95
      failureCondition: result[0] < 0.9
      provider:
        prometheus:
          timeout: 2s
          query: |
            sum(rate(demo_rpcs_total{service="{{args.service}}", revision="{{args.canaryRevision}}", code="OK"}[{{args.window}}]))
            /
            sum(rate(demo_rpcs_total{service="{{args.service}}", revision="{{args.canaryRevision}}"}[{{args.window}}]))
`, interval, measurements, initialDelay)

// admin is the VirtualService's unmanaged route: requests under /admin go
// to the stable subset, with timeout. Sluice must leave it as Git
// declares it.
func (m manifests) admin(timeout string) string {
	return fmt.Sprintf(`    - name: admin
      match:
        - uri:
            prefix: /admin
      route:
        - destination:
            host: %[1]s
            subset: stable
      timeout: %[2]s
`, m.host, timeout)
}

// istio is the VirtualService (routes admin, unmanaged, and primary,
// which Sluice manages) and the DestinationRule (Sluice sets the
// subsets' labels).
func (m manifests) istio(adminTimeout string) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: %[1]s
spec:
  hosts:
    - %[2]s
  http:
%[3]s    - name: primary
      route:
        - destination:
            host: %[2]s
            subset: stable
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: %[1]s
spec:
  host: %[2]s
  subsets:
    - name: stable
    - name: canary
`, rolloutName, m.host, m.admin(adminTimeout))
}

// initial is the first commit: v1 serving.
func (m manifests) initial() map[string]string {
	return map[string]string{
		rolloutFile:  m.rollout("v1"),
		analysisFile: analysisYAML,
		istioFile:    m.istio("5s"),
	}
}

// revisionOf is the revision of the Rollout of tag as Sluice reads it
// from Git: the hash of its pod template with the CRD's defaults. The
// backends are labelled with it before anything runs; the test checks
// that the controller, hashing the template the API server stored, agrees.
func (m manifests) revisionOf(t testing.TB, tag string) string {
	t.Helper()
	res, err := manifest.Load(fstest.MapFS{rolloutFile: {Data: []byte(m.rollout(tag))}}, rolloutFile)
	if err != nil {
		t.Fatalf("rollout of %s: %v", tag, err)
	}
	if err := res.Err(); err != nil || len(res.Rollouts()) != 1 {
		t.Fatalf("rollout of %s: %d Rollouts, %v", tag, len(res.Rollouts()), err)
	}
	rev, err := engine.DesiredRevision(&res.Rollouts()[0].Spec)
	if err != nil {
		t.Fatalf("revision of %s: %v", tag, err)
	}
	return rev
}

// tagOf is the tag of an image of imageRepo; "" for anything else.
func tagOf(image string) string {
	tag, ok := strings.CutPrefix(image, imageRepo+":")
	if !ok {
		return ""
	}
	return tag
}
