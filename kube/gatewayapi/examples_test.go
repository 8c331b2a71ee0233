package gatewayapi

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/sluicehq/sluice/internal/kubetest"
	"github.com/sluicehq/sluice/rollout/manifest"
	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

var showExample = flag.Bool("show-example", false, "print the example HTTPRoute as Sluice leaves it at the mirror step (for docs/gateway-api.md)")

// TestExamples runs the Rollouts of examples/gateway-api on the routes
// beside them: the routes are valid for the Gateway API's CRDs, and each
// Rollout's first plan lands in its managed rule with the gateway
// accepting it; the HTTPRoute example goes on to its mirror step.
func TestExamples(t *testing.T) {
	dir := filepath.Join("..", "..", "examples", "gateway-api")
	res, err := manifest.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	c := env.Client(t)
	for _, ro := range res.Rollouts() {
		t.Run(ro.Name, func(t *testing.T) {
			ns := kubetest.Namespace(t, c, "sluice-example-")
			route := exampleRoute(t, filepath.Join(dir, map[string]string{"storefront": "httproute.yaml", "ratings": "grpcroute.yaml"}[ro.Name]))
			route.SetNamespace(ns)
			if err := c.Create(context.Background(), route); err != nil {
				t.Fatalf("the example's %s: %v", route.GetKind(), err)
			}
			ro = ro.DeepCopy()
			ro.Namespace = ns
			kind, ref := Routes(ro)[0].Kind, Routes(ro)[0].Ref
			h := newHarness(t, c, ro, kind, ref.Name)
			h.drive("healthy", h.accepting, healthy)
			managed := ref.Rules[0].Name
			rules, err := rulesOf(h.live())
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rules {
				if r.name() == managed && !bytes.Contains(r["backendRefs"], []byte(`"name":"`+ro.Spec.Service.Name+"-"+h.ro.Status.StableRevision+`"`)) {
					t.Errorf("rule %s sends to %s, want the stable revision's Service", managed, r["backendRefs"])
				}
			}
			if ro.Name != "storefront" {
				return
			}
			// Header route, then the mirror step: the picture of
			// docs/gateway-api.md.
			h.setImage("registry.example.com/shop/storefront:2.5.0")
			h.drive("at the mirror's pause", h.accepting, stepAcked(2))
			if *showExample {
				live := h.live()
				out := map[string]any{"apiVersion": live.GetAPIVersion(), "kind": live.GetKind(),
					"metadata": map[string]any{"name": live.GetName(), "namespace": "shop", "annotations": live.GetAnnotations()},
					"spec":     live.Object["spec"]}
				b, err := yaml.Marshal(out)
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("the route at the mirror step:\n%s", b)
			}
			h.now = h.now.Add(6 * time.Minute)
			h.drive("at 10%", h.accepting, func(ro *v1alpha1.Rollout) bool { return ro.Status.Traffic.CanaryWeight == 10 })
		})
	}
}

// exampleRoute is the route document of an example file.
func exampleRoute(t *testing.T, file string) *unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
			t.Fatalf("%s holds no route", file)
		} else if err != nil {
			t.Fatal(err)
		}
		if k := u.GetKind(); k == string(HTTPRoute) || k == string(GRPCRoute) {
			return u
		}
	}
}
