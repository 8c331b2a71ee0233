package peerbench

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// cleanedKinds are what a run leaves in its namespace. envtest runs no
// namespace controller, so deleting the namespace would leave them all in
// etcd and in the next controller's informers (which watch every
// namespace): each is deleted here, finalizers first.
var cleanedKinds = []struct{ apiVersion, kind string }{
	{argoAPI, "Rollout"},
	{"sluice.dev/v1alpha1", "Rollout"},
	{"networking.istio.io/v1", "VirtualService"},
	{"networking.istio.io/v1", "DestinationRule"},
	{"apps/v1", "ReplicaSet"},
	{"v1", "Service"},
	{"v1", "Event"},
	{"v1", "ConfigMap"},
}

// cleanup deletes every object of cleanedKinds in ns, then ns.
func cleanup(tb testing.TB, c client.Client, ns string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, k := range cleanedKinds {
		if err := deleteAll(ctx, c, ns, k.apiVersion, k.kind); err != nil {
			tb.Logf("cleanup of %s: %v", ns, err)
		}
	}
	if err := c.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		tb.Logf("cleanup: %v", err)
	}
}

func deleteAll(ctx context.Context, c client.Client, ns, apiVersion, kind string) error {
	list := &unstructured.UnstructuredList{}
	list.SetAPIVersion(apiVersion)
	list.SetKind(kind + "List")
	if err := c.List(ctx, list, client.InNamespace(ns)); err != nil {
		return fmt.Errorf("list %s: %w", kind, err)
	}
	for i := range list.Items {
		it := &list.Items[i]
		if len(it.GetFinalizers()) > 0 {
			patch := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`))
			if err := client.IgnoreNotFound(c.Patch(ctx, it, patch)); err != nil {
				return err
			}
		}
	}
	obj := unstructuredOf(apiVersion, kind, ns, "")
	if err := c.DeleteAllOf(ctx, obj, client.InNamespace(ns)); err != nil {
		// Services have no deletecollection: one by one.
		for i := range list.Items {
			if err := client.IgnoreNotFound(c.Delete(ctx, &list.Items[i])); err != nil {
				return err
			}
		}
	}
	return nil
}

// execIn runs a command in dir and returns its output.
func execIn(dir, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.Output()
	return string(out), err
}
