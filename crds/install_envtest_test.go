package crds_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// TestInstallBundleApplies applies crds/install.yaml to a real API server,
// as `kubectl apply -f crds/install.yaml` would, and then asks the API
// server's RBAC authorizer what the controller's service account may do:
// everything the controller needs, and nothing it does not.
func TestInstallBundleApplies(t *testing.T) {
	c := cluster(t)
	ctx := context.Background()
	data, err := os.ReadFile("install.yaml")
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("install.yaml: %v", err)
		}
		if len(u.Object) == 0 {
			continue
		}
		kinds[u.GetKind()]++
		if err := c.Patch(ctx, u, client.Apply, client.FieldOwner("install-test"), client.ForceOwnership); err != nil {
			t.Fatalf("install.yaml: apply %s %s: %v", u.GetKind(), u.GetName(), err)
		}
	}
	for kind, want := range map[string]int{
		"Namespace": 1, "CustomResourceDefinition": 4, "ServiceAccount": 1, "ClusterRole": 2, "Role": 1,
		"ClusterRoleBinding": 1, "RoleBinding": 1, "ConfigMap": 1, "Deployment": 1, "Service": 1, "PodDisruptionBudget": 1,
	} {
		if kinds[kind] != want {
			t.Errorf("install.yaml has %d %s, want %d", kinds[kind], kind, want)
		}
	}

	const sa = "system:serviceaccount:sluice-system:sluice-controller"
	tests := []struct {
		group, resource, sub, verb, ns string
		allowed                        bool
	}{
		{"sluice.dev", "rollouts", "", "watch", "shop", true},
		{"sluice.dev", "rollouts", "status", "patch", "shop", true},
		{"sluice.dev", "analysisruns", "status", "update", "shop", true},
		{"apps", "replicasets", "", "create", "shop", true},
		{"", "services", "", "create", "shop", true},
		{"discovery.k8s.io", "endpointslices", "", "list", "shop", true},
		{"networking.istio.io", "virtualservices", "", "patch", "shop", true},
		// The Istio writer's cache (kube/istio.CacheByObject): every
		// namespace, narrowed by label.
		{"networking.istio.io", "virtualservices", "", "watch", "", true},
		{"networking.istio.io", "destinationrules", "", "list", "", true},
		{"", "secrets", "", "get", "shop", true},
		// GitSources: watched, a finalizer, status; the webhook's
		// requested-sync annotation.
		{"sluice.dev", "gitsources", "", "watch", "", true},
		{"sluice.dev", "gitsources", "", "patch", "shop", true},
		{"sluice.dev", "gitsources", "status", "patch", "shop", true},
		{"sluice.dev", "gitsources", "finalizers", "update", "shop", true},
		{"", "events", "", "create", "shop", true},
		{"coordination.k8s.io", "leases", "", "update", "sluice-system", true},
		{"", "configmaps", "", "patch", "sluice-system", true},
		{"", "configmaps", "", "watch", "sluice-system", true},
		{"", "configmaps", "", "delete", "sluice-system", true},
		// Least privilege: no listing Secrets, no Pods, no Deployments,
		// leases and ConfigMaps only in its own namespace, no RBAC
		// escalation.
		{"", "secrets", "", "list", "shop", false},
		{"", "pods", "", "delete", "shop", false},
		{"apps", "deployments", "", "update", "shop", false},
		{"coordination.k8s.io", "leases", "", "update", "shop", false},
		// The xDS reports: ConfigMaps of its own namespace only.
		{"", "configmaps", "", "get", "shop", false},
		{"", "configmaps", "", "list", "", false},
		{"", "configmaps", "", "update", "sluice-system", false},
		{"rbac.authorization.k8s.io", "clusterroles", "", "escalate", "", false},
		{"sluice.dev", "rollouts", "", "deletecollection", "shop", false},
		// GitSources belong to their teams: the controller neither
		// creates nor deletes them.
		{"sluice.dev", "gitsources", "", "create", "shop", false},
		{"sluice.dev", "gitsources", "", "delete", "shop", false},
	}
	for _, tc := range tests {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:   sa,
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:sluice-system", "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Group: tc.group, Resource: tc.resource, Subresource: tc.sub, Verb: tc.verb, Namespace: tc.ns,
			},
		}}
		if err := c.Create(ctx, sar); err != nil {
			t.Fatal(err)
		}
		if sar.Status.Allowed != tc.allowed {
			t.Errorf("%s %s %s/%s in %q: allowed=%v, want %v (%s)", sa, tc.verb, tc.group, tc.resource+"/"+tc.sub, tc.ns, sar.Status.Allowed, tc.allowed, sar.Status.Reason)
		}
	}
}
