package manager_test

import (
	"context"
	"fmt"
	"maps"
	"net"
	"strconv"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	discoveryv1ac "k8s.io/client-go/applyconfigurations/discovery/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluicehq/sluice/internal/grpcecho"
	"github.com/sluicehq/sluice/kube/workload"
)

// kubelet plays the parts of a cluster that envtest lacks, and only those
// the controller depends on:
//
//   - the ReplicaSet controller and the kubelet: every replica a
//     ReplicaSet asks for is available at once;
//   - the EndpointSlice controller: each headless Service the controller
//     makes for a revision gets an EndpointSlice carrying the Service's
//     labels (sluice.dev/service, sluice.dev/revision), with one ready
//     endpoint per available replica of the revision's ReplicaSet (the
//     Service's owner). The "pods" are the real gRPC backend running the
//     ReplicaSet's image tag, on this machine's address (podIP).
//
// It polls rather than watches: it is test scaffolding, and a poll every
// 100 ms is well inside every step of the rollout.
type kubelet struct {
	c  client.Client
	ns string
	// backends run the images, by tag.
	backends map[string]*grpcecho.Backend

	mu      sync.Mutex
	applied map[string]string // slice name → what was last applied, to skip no-ops
	lastErr error
	errAt   time.Time
}

// fieldOwner is the kubelet's server-side apply field manager, as the
// real EndpointSlice controller has its own.
const fieldOwner = "e2e-endpointslice-controller"

func (k *kubelet) run(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		if err := k.sync(ctx); err != nil && ctx.Err() == nil {
			k.mu.Lock()
			k.lastErr, k.errAt = err, time.Now()
			k.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// err is the last error the kubelet met, for a failing test to print.
func (k *kubelet) err() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.lastErr == nil {
		return "none"
	}
	return fmt.Sprintf("%v (at %s)", k.lastErr, k.errAt.Format(time.StampMilli))
}

func (k *kubelet) sync(ctx context.Context) error {
	var rss appsv1.ReplicaSetList
	if err := k.c.List(ctx, &rss, client.InNamespace(k.ns)); err != nil {
		return fmt.Errorf("list ReplicaSets: %w", err)
	}
	byUID := map[string]*appsv1.ReplicaSet{}
	for i := range rss.Items {
		rs := &rss.Items[i]
		byUID[string(rs.UID)] = rs
		if err := k.markAvailable(ctx, rs); err != nil {
			return err
		}
	}
	var svcs corev1.ServiceList
	if err := k.c.List(ctx, &svcs, client.InNamespace(k.ns), client.MatchingLabels{workload.LabelManagedBy: workload.ManagedBy}); err != nil {
		return fmt.Errorf("list Services: %w", err)
	}
	for i := range svcs.Items {
		svc := &svcs.Items[i]
		var rs *appsv1.ReplicaSet
		if ref := metav1.GetControllerOf(svc); ref != nil && ref.Kind == "ReplicaSet" {
			rs = byUID[string(ref.UID)]
		}
		if err := k.publish(ctx, svc, rs); err != nil {
			return err
		}
	}
	return nil
}

// markAvailable: every replica the ReplicaSet asks for is available.
func (k *kubelet) markAvailable(ctx context.Context, rs *appsv1.ReplicaSet) error {
	n := *rs.Spec.Replicas
	st := rs.Status
	if st.Replicas == n && st.ReadyReplicas == n && st.AvailableReplicas == n && st.ObservedGeneration == rs.Generation {
		return nil
	}
	rs.Status.Replicas, rs.Status.ReadyReplicas, rs.Status.AvailableReplicas = n, n, n
	rs.Status.FullyLabeledReplicas = n
	rs.Status.ObservedGeneration = rs.Generation
	if err := k.c.Status().Update(ctx, rs); err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
		return fmt.Errorf("mark ReplicaSet %s available: %w", rs.Name, err)
	}
	return nil
}

// publish applies the Service's EndpointSlice: its labels, the port of
// the backend running the ReplicaSet's image, and one ready endpoint at
// the backend's address per available replica.
func (k *kubelet) publish(ctx context.Context, svc *corev1.Service, rs *appsv1.ReplicaSet) error {
	name := svc.Name + "-e2e"
	labels := maps.Clone(svc.Labels)
	labels[discoveryv1.LabelServiceName] = svc.Name
	labels[discoveryv1.LabelManagedBy] = fieldOwner
	es := discoveryv1ac.EndpointSlice(name, svc.Namespace).
		WithLabels(labels).
		WithOwnerReferences(metav1ac.OwnerReference().
			WithAPIVersion("v1").WithKind("Service").WithName(svc.Name).WithUID(svc.UID).WithController(true)).
		WithAddressType(discoveryv1.AddressTypeIPv4)
	var port int64
	var ready int32
	if len(svc.Spec.Ports) != 1 {
		return fmt.Errorf("Service %s has %d ports; the controller makes revision Services with one", svc.Name, len(svc.Spec.Ports))
	}
	if rs != nil && len(rs.Spec.Template.Spec.Containers) > 0 {
		image := rs.Spec.Template.Spec.Containers[0].Image
		b := k.backends[tagOf(image)]
		if b == nil {
			return fmt.Errorf("ReplicaSet %s runs image %s, for which the test has no backend", rs.Name, image)
		}
		host, portText, err := net.SplitHostPort(b.Addr)
		if err != nil {
			return fmt.Errorf("backend %s address %s: %w", b.Version, b.Addr, err)
		}
		if port, err = strconv.ParseInt(portText, 10, 32); err != nil {
			return fmt.Errorf("backend %s port %s: %w", b.Version, portText, err)
		}
		es.WithPorts(discoveryv1ac.EndpointPort().WithName(svc.Spec.Ports[0].Name).WithProtocol(corev1.ProtocolTCP).WithPort(int32(port)))
		ready = rs.Status.AvailableReplicas
		for i := range ready {
			es.WithEndpoints(discoveryv1ac.Endpoint().
				WithAddresses(host).
				WithConditions(discoveryv1ac.EndpointConditions().WithReady(true).WithServing(true).WithTerminating(false)).
				WithTargetRef(corev1ac.ObjectReference().WithKind("Pod").WithNamespace(rs.Namespace).WithName(fmt.Sprintf("%s-%d", rs.Name, i))))
		}
	}
	key := fmt.Sprintf("%v port %d ready %d", labels, port, ready)
	k.mu.Lock()
	same := k.applied[name] == key
	k.mu.Unlock()
	if same {
		return nil
	}
	if err := k.c.Apply(ctx, es, client.FieldOwner(fieldOwner), client.ForceOwnership); err != nil {
		return fmt.Errorf("apply EndpointSlice %s: %w", name, err)
	}
	k.mu.Lock()
	k.applied[name] = key
	k.mu.Unlock()
	return nil
}
