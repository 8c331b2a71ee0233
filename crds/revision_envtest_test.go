package crds_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/rollout/engine"
	"github.com/sluicehq/sluice/rollout/manifest"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// The contract between Git and the cluster: a Rollout as rollout/manifest
// loads it equals the Rollout the API server stores for it, so its
// revision (the hash of its pod template) is the same whether gitsync
// computes it from Git (to find the stable template for a revert) or the
// controller from the cluster. The loader applies the CRD's defaults for
// this; these tests hold it to what the real API server does.

// revisionFixture is a Rollout manifest, and whether the CRD's defaults
// change its pod template's hash: if they do, a loader that skipped them
// would name a revision the cluster never runs.
type revisionFixture struct {
	name             string
	doc              string
	templateDefaults bool
}

// fixtureRollout is a controller-mode Rollout with podSpec (lines at the
// pod spec's indentation) and extra lines of its spec.
func fixtureRollout(podSpec, spec string) string {
	return `apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata:
  name: web
spec:
  service: {name: web, hosts: [web.shop.svc.cluster.local], port: 8080}
  replicas: 2
  template:
    metadata:
      labels: {app: web}
    spec:
` + podSpec + `  strategy:
    canary:
      steps: [{setWeight: 20}, {pause: {}}]
` + spec
}

const plainContainer = `      containers:
        - name: web
          image: registry.example.com/web:1
`

var revisionFixtures = []revisionFixture{{
	name:             "container ports without protocol",
	doc:              fixtureRollout(plainContainer+"          ports: [{name: http, containerPort: 8080}, {containerPort: 9090}]\n", ""),
	templateDefaults: true,
}, {
	name:             "container port protocol null or empty",
	doc:              fixtureRollout(plainContainer+"          ports: [{containerPort: 8080, protocol: null}, {containerPort: 9090, protocol: \"\"}]\n", ""),
	templateDefaults: true,
}, {
	name: "init container ports",
	doc: fixtureRollout(`      initContainers:
        - name: migrate
          image: registry.example.com/migrate:1
          ports: [{containerPort: 5432}]
`+plainContainer, ""),
	templateDefaults: true,
}, {
	name: "env from config maps and secrets without optional",
	doc: fixtureRollout(plainContainer+`          env:
            - {name: A, valueFrom: {configMapKeyRef: {name: cfg, key: a}}}
            - {name: B, valueFrom: {secretKeyRef: {key: b}}}
          envFrom:
            - configMapRef: {name: cfg}
            - secretRef: {}
`, ""),
}, {
	name: "env from a file without optional",
	doc: fixtureRollout(plainContainer+`          env:
            - {name: C, valueFrom: {fileKeyRef: {volumeName: conf, path: app.env, key: C}}}
`, ""),
	templateDefaults: true,
}, {
	name: "grpc probes without service",
	doc: fixtureRollout(plainContainer+`          livenessProbe: {grpc: {port: 9090}}
          readinessProbe: {grpc: {port: 9090}, periodSeconds: 2}
          startupProbe: {grpc: {port: 9090, service: ""}}
`, ""),
	templateDefaults: true,
}, {
	name: "volumes",
	doc: fixtureRollout(plainContainer+`      volumes:
        - {name: cfg, configMap: {}}
        - {name: projected, projected: {sources: [{secret: {}}]}}
        - {name: disk, azureDisk: {diskName: d, diskURI: "https://example.com/d"}}
        - {name: ceph, rbd: {monitors: ["10.0.0.1:6789"], image: img}}
        - {name: iscsi, iscsi: {targetPortal: "10.0.0.2:3260", iqn: "iqn.2001-04.com.example:storage", lun: 0}}
`, ""),
	templateDefaults: true,
}, {
	name: "image pull secret without name",
	doc:  fixtureRollout(plainContainer+"      imagePullSecrets: [{}]\n", ""),
}, {
	name: "spec defaults only",
	doc:  strings.Replace(fixtureRollout(plainContainer, ""), "port: 8080}", "port: 8080, sessionAffinity: {cookie: {}}}", 1),
}, {
	name: "every default written out",
	doc: fixtureRollout(plainContainer+"          ports: [{containerPort: 8080, protocol: TCP}]\n",
		"  progressDeadlineSeconds: 600\n  scaleDownDelaySeconds: 30\n  rollback: {onAnalysisFailure: Abort, onNack: Abort}\n"),
}}

// loadOne loads doc with manifest.Load and returns its one Rollout.
func loadOne(t *testing.T, doc string) *v1alpha1.Rollout {
	t.Helper()
	res, err := manifest.Load(fstest.MapFS{"rollout.yaml": {Data: []byte(doc)}}, ".")
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	if n := len(res.Rollouts()); n != 1 {
		t.Fatalf("%d Rollouts, want 1", n)
	}
	return res.Rollouts()[0]
}

// exampleObjects loads every example folder and returns its objects.
func exampleObjects(t *testing.T) map[string][]manifest.Object {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join("..", "examples", "*"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]manifest.Object{}
	for _, dir := range dirs {
		if info, err := os.Stat(dir); err != nil || !info.IsDir() {
			continue
		}
		res, err := manifest.LoadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if err := res.Err(); err != nil {
			t.Fatalf("examples/%s: %v", filepath.Base(dir), err)
		}
		out[filepath.Base(dir)] = res.Objects
	}
	return out
}

// storeAndRead creates obj, renamed into namespace ns, in the API server
// and returns what the server stored. obj is not changed.
func storeAndRead[T client.Object](t *testing.T, c client.Client, obj T, ns, name string) T {
	t.Helper()
	ctx := context.Background()
	in := obj.DeepCopyObject().(T)
	in.SetNamespace(ns)
	in.SetName(name)
	if err := c.Create(ctx, in); err != nil {
		t.Fatalf("create: %v", err)
	}
	out := obj.DeepCopyObject().(T)
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, out); err != nil {
		t.Fatalf("get: %v", err)
	}
	return out
}

// assertSameSpec fails unless the loaded and stored specs are equal.
func assertSameSpec(t *testing.T, loaded, stored any) {
	t.Helper()
	if !equality.Semantic.DeepEqual(loaded, stored) {
		l, _ := json.MarshalIndent(loaded, "", "  ")
		s, _ := json.MarshalIndent(stored, "", "  ")
		t.Errorf("the loaded spec differs from the one the API server stored\nloaded: %s\nstored: %s", l, s)
	}
}

func revision(t *testing.T, spec *v1alpha1.RolloutSpec) string {
	t.Helper()
	rev, err := engine.DesiredRevision(spec)
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

// checkRevision asserts that the loaded Rollout has the revision of the
// stored one, and the same spec.
func checkRevision(t *testing.T, c client.Client, ns, name string, loaded *v1alpha1.Rollout) (stored string) {
	t.Helper()
	got := storeAndRead(t, c, loaded, ns, name)
	stored = revision(t, &got.Spec)
	if want := revision(t, &loaded.Spec); want != stored {
		t.Errorf("revision from Git %s, from the API server %s", want, stored)
	}
	assertSameSpec(t, loaded.Spec, got.Spec)
	return stored
}

func TestRevisionFromGitMatchesAPIServer(t *testing.T) {
	c := cluster(t)
	ns := namespace(t, c)
	for i, f := range revisionFixtures {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			stored := checkRevision(t, c, ns, fmt.Sprintf("fixture-%d", i), loadOne(t, f.doc))

			// The guard: decoded without the CRD's defaults, a template
			// the defaults touch hashes differently. Were the loader to
			// stop applying them, the check above would fail for these.
			var raw v1alpha1.Rollout
			if err := yaml.UnmarshalStrict([]byte(f.doc), &raw); err != nil {
				t.Fatal(err)
			}
			if changed := revision(t, &raw.Spec) != stored; changed != f.templateDefaults {
				t.Errorf("the CRD's defaults change the revision: %v, want %v (the fixture does not test what it says)", changed, f.templateDefaults)
			}
		})
	}
}

func TestExamplesFromGitMatchAPIServer(t *testing.T) {
	c := cluster(t)
	ns := namespace(t, c)
	templates := 0
	for dir, objs := range exampleObjects(t) {
		for _, o := range objs {
			name := dir + "-" + o.Meta().GetName()
			switch {
			case o.Rollout != nil && o.Rollout.Spec.Template != nil:
				templates++
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					checkRevision(t, c, ns, name, o.Rollout)
				})
			case o.AnalysisTemplate != nil:
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					got := storeAndRead(t, c, o.AnalysisTemplate, ns, name)
					assertSameSpec(t, o.AnalysisTemplate.Spec, got.Spec)
				})
			}
		}
	}
	if templates < 3 {
		t.Errorf("%d example Rollouts with a pod template, want at least 3 (canary, bluegreen, dark-release)", templates)
	}
}

// TestFieldsTheLoaderRejectsAreDropped: the loader refuses pod template
// metadata fields that the CRD lacks (metav1.ObjectMeta has them in Go),
// because the API server would drop them and Git would declare a template
// the cluster does not run.
func TestFieldsTheLoaderRejectsAreDropped(t *testing.T) {
	c := cluster(t)
	doc := strings.Replace(fixtureRollout(plainContainer, ""), "labels: {app: web}", "labels: {app: web}\n      generateName: web-", 1)
	res, err := manifest.Load(fstest.MapFS{"rollout.yaml": {Data: []byte(doc)}}, ".")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Problems) != 1 || res.Problems[0].Field != "spec.template.metadata.generateName" {
		t.Errorf("problems %v, want one about spec.template.metadata.generateName", res.Problems)
	}

	var raw v1alpha1.Rollout
	if err := yaml.UnmarshalStrict([]byte(doc), &raw); err != nil {
		t.Fatal(err)
	}
	got := storeAndRead(t, c, &raw, namespace(t, c), "dropped")
	if got.Spec.Template.GenerateName != "" || got.Spec.Template.Labels["app"] != "web" {
		t.Errorf("stored template metadata %+v, want generateName dropped and labels kept", got.Spec.Template.ObjectMeta)
	}
}
