package workload

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/sluicehq/sluice/rollout/v1alpha1"
)

// LabelService carries the Rollout's spec.service.name on each revision's
// headless Service. The EndpointSlice controller copies a Service's labels
// onto its EndpointSlices, so the slices of one revision of one service
// carry this label and LabelRevision: that is how the xDS endpoint source
// (kube/xdsplane) finds them without knowing any Service name.
const LabelService = "sluice.dev/service"

// LabelManagedBy and ManagedBy mark the objects Sluice makes for itself
// (the per-revision Services), so a cache can be narrowed to them and a
// same-named object of someone else's is never taken over.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "sluice"
)

// maxNameLen is the length limit of a Service name (an RFC 1035 label).
const maxNameLen = 63

// ServiceName is the name of a revision's headless Service:
// <service>-<revision>. A name that would be longer than a Service name
// may be is cut and ends in a hash of the full name, so two long names
// that share a prefix stay apart and the same input always gives the same
// name. Service names must start with a letter (RFC 1035), which a
// spec.service.name may not; such names get an "s-" prefix.
func ServiceName(service, revision string) string {
	name := service + "-" + revision
	if name[0] < 'a' || name[0] > 'z' {
		name = "s-" + name
	}
	if len(name) <= maxNameLen {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	suffix := hex.EncodeToString(sum[:])[:8]
	return strings.TrimRight(name[:maxNameLen-len(suffix)-1], "-") + "-" + suffix
}

// Service builds the headless Service of the revision that rs runs, so that
// the cluster's EndpointSlice controller publishes exactly that revision's
// ready pods as EndpointSlices labelled with the service and revision.
//
//   - selector: the ReplicaSet's own selector (template labels plus the
//     revision label), so it selects that revision's pods and no other's;
//   - port: spec.service.port, TCP, to the same container port number. It
//     takes the name of the template's container port with that number if
//     it has one, and is unnamed otherwise: a name is a protocol claim to
//     Istio ("grpc-…", "http-…"), and an unnamed port lets the mesh detect
//     the protocol rather than contradict the user's own Service for the
//     same pods;
//   - clusterIP None: nothing ever connects through it; it exists for its
//     EndpointSlices;
//   - controller owner reference: the ReplicaSet, so the Service goes when
//     the revision's ReplicaSet is deleted.
func Service(ro *v1alpha1.Rollout, rs *appsv1.ReplicaSet) (*corev1.Service, error) {
	rev := rs.Labels[LabelRevision]
	switch {
	case rev == "":
		return nil, fmt.Errorf("ReplicaSet %s has no %s label", rs.Name, LabelRevision)
	case rs.Spec.Selector == nil || len(rs.Spec.Selector.MatchLabels) == 0:
		return nil, fmt.Errorf("ReplicaSet %s has no matchLabels selector", rs.Name)
	case len(rs.Spec.Selector.MatchExpressions) > 0:
		return nil, fmt.Errorf("ReplicaSet %s selects by expressions, which a Service cannot", rs.Name)
	case ro.Spec.Service.Name == "" || ro.Spec.Service.Port <= 0:
		return nil, errors.New("spec.service: name and port are required")
	}
	port := ro.Spec.Service.Port
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name:      ServiceName(ro.Spec.Service.Name, rev),
			Namespace: rs.Namespace,
			Labels: map[string]string{
				LabelService:   ro.Spec.Service.Name,
				LabelRevision:  rev,
				LabelManagedBy: ManagedBy,
			},
			OwnerReferences: []metav1.OwnerReference{
				*metav1.NewControllerRef(rs, appsv1.SchemeGroupVersion.WithKind("ReplicaSet")),
			},
		},
		Spec: corev1.ServiceSpec{
			Type:      corev1.ServiceTypeClusterIP,
			ClusterIP: corev1.ClusterIPNone,
			Selector:  maps.Clone(rs.Spec.Selector.MatchLabels),
			Ports: []corev1.ServicePort{{
				Name:       containerPortName(&rs.Spec.Template.Spec, port),
				Protocol:   corev1.ProtocolTCP,
				Port:       port,
				TargetPort: intstr.FromInt32(port),
			}},
		},
	}, nil
}

// containerPortName is the name of the first TCP container port numbered
// port, or "".
func containerPortName(spec *corev1.PodSpec, port int32) string {
	for _, c := range spec.Containers {
		for _, p := range c.Ports {
			if p.ContainerPort == port && (p.Protocol == "" || p.Protocol == corev1.ProtocolTCP) {
				return p.Name
			}
		}
	}
	return ""
}
